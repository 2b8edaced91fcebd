"""format/esechk.py: the checkpoint file of a real Windows ESE instance.

There is no real sample checkpoint (tests/data/ese/README.md): each test builds one from the CHECKPOINT_FIXED
layout of research/ese.md §4.2 with format/esechk.py's declaration and a valid XOR checksum in each copy, with
the signature of the real sample logs.
"""

from __future__ import annotations

import pytest

from shadowstore.errors import CheckpointCorruptError, InvalidParameterError
from shadowstore.format.esechk import CHECKPOINT_COPY_SIZE, CHECKPOINT_FIXED, read_checkpoint
from shadowstore.format.esetypes import EseLgPos, EseSignature, xor_checksum
from tests.format.esesamples import LOG_1, LOG_RAND, build_checkpoint, sample

CHECKPOINT_OFFSET = 12  # le_lgposCheckpoint: covered by the checksum


def signature() -> EseSignature:
    return EseSignature.unpack_from(sample(LOG_1), 44)


def test_a_built_checkpoint_reads_back_from_the_primary() -> None:
    data = build_checkpoint(signature(), EseLgPos(1, 8, 0))
    read = read_checkpoint(data, "edb.chk")
    assert (CHECKPOINT_FIXED.size, len(data)) == (2727, 8192)
    assert (read.copy_used, read.problems, read.shadow_differs) == (0, (None, None), False)
    assert read.checkpoint.checkpoint == EseLgPos(1, 8, 0)
    assert str(read.checkpoint.checkpoint) == "(0x1,8,0)"
    assert read.checkpoint.signature.random == LOG_RAND
    assert read.checkpoint.checksum == xor_checksum(data[:CHECKPOINT_COPY_SIZE])


def test_a_damaged_primary_is_read_from_the_shadow() -> None:
    data = bytearray(build_checkpoint(signature(), EseLgPos(1, 8, 0)))
    data[CHECKPOINT_OFFSET] ^= 0xFF
    read = read_checkpoint(bytes(data), "edb.chk")
    assert read.copy_used == 1
    assert read.checkpoint.checkpoint == EseLgPos(1, 8, 0)
    assert read.problems[0] is not None
    assert read.problems[0].startswith("header checksum mismatch")


def test_both_copies_damaged_raise_533_naming_file_and_offsets() -> None:
    data = bytearray(build_checkpoint(signature(), EseLgPos(1, 8, 0)))
    data[CHECKPOINT_OFFSET] ^= 0xFF
    data[CHECKPOINT_COPY_SIZE + CHECKPOINT_OFFSET] ^= 0xFF
    with pytest.raises(CheckpointCorruptError) as caught:
        read_checkpoint(bytes(data), "/x/edb.chk")
    assert caught.value.code == -533
    assert "/x/edb.chk: both checkpoint copies are damaged: copy 0 (primary, offset 0)" in caught.value.message
    assert "copy 1 (shadow, offset 4096)" in caught.value.message


def test_a_checkpoint_without_its_shadow_is_read_with_the_shadow_reported() -> None:
    read = read_checkpoint(build_checkpoint(signature(), EseLgPos(2, 1, 0), shadow=False), "edb.chk")
    assert read.copy_used == 0
    assert read.problems[1] == "the file ends at 4096 bytes, inside this copy"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "it is empty"),
        (bytes(8192), "it is zero-filled (all of its 8192 bytes)"),
        (b"x" * 300, "it is 300 bytes, too short"),
        (sample(LOG_1)[:8192], "le_filetype at offset 667 is 3, not 4"),
    ],
)
def test_files_that_are_not_checkpoints_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(InvalidParameterError, match="is not a Windows ESE checkpoint file") as caught:
        read_checkpoint(data, "/x/edb.chk")
    assert why in caught.value.message
