"""The checkpoint file E00.chk (format/checkpoint.py, engine/checkpointfile.py): two copies, newest valid wins."""

from __future__ import annotations

import struct

import pytest

from shadowstore.engine.checkpointfile import CheckpointFile, read_checkpoint
from shadowstore.errors import CheckpointCorruptError, CheckpointNotFoundError
from shadowstore.format.checkpoint import (
    CHECKPOINT,
    CHECKPOINT_COPY_SIZE,
    CHECKPOINT_FILE_SIZE,
    CHECKPOINT_MAGIC,
    Checkpoint,
    CheckpointCopyError,
    choose_checkpoint,
    unpack_checkpoint_copy,
)
from shadowstore.format.common import ATTACHINFO, AttachInfo, LgPos, Signature
from shadowstore.format.logfile import FLAG_CIRCULAR
from shadowstore.io.faulty import FaultFileSystem
from tests.format.test_common import checksum_message, flip_byte, reseal_checksum

SIG = Signature(0xBEEF, 1_700_000_000_000_000, "MAILSRV01")
PRIMARY, SHADOW = 0, CHECKPOINT_COPY_SIZE
OFF_MAGIC, OFF_MAJOR, OFF_SEQUENCE = 4, 12, 16
CHK_PATH = "/sg/E00.chk"


def sample(sequence: int = 9, **changes: object) -> Checkpoint:
    checkpoint = Checkpoint(
        sequence=sequence,
        checkpoint=LgPos(0x2A, 4096 + 7 * 512 + 12),
        signature=SIG,
        base="E00",
        full_backup=LgPos(0x20, 4096),
        full_backup_us=1_700_000_100_000_000,
        inc_backup=LgPos(0x28, 4608),
        inc_backup_us=1_700_000_200_000_000,
        written_us=1_700_000_300_000_000,
        log_file_size=1 << 20,
        flags=FLAG_CIRCULAR,
        attached=[
            AttachInfo(1, SIG._replace(random=1), LgPos(0x29, 4096), "priv1.edb"),
            AttachInfo(2, SIG._replace(random=2), LgPos(0x29, 4608), "pub1.edb"),
        ],
    )
    return checkpoint._replace(**changes)


def checkpoint_file(primary: Checkpoint, shadow: Checkpoint) -> bytes:
    return primary.pack() + shadow.pack()


# --- round trip -------------------------------------------------------------------------------------------------


def test_copy_round_trips_with_every_field() -> None:
    raw = sample().pack()
    assert len(raw) == CHECKPOINT_COPY_SIZE == CHECKPOINT_FILE_SIZE // 2
    assert raw[4:12] == CHECKPOINT_MAGIC
    assert unpack_checkpoint_copy(raw) == sample()


def test_copy_without_stores_round_trips() -> None:
    empty = sample(attached=[])
    assert unpack_checkpoint_copy(empty.pack()) == empty
    assert empty.pack()[CHECKPOINT.size] == 0


def test_fields_sit_at_their_documented_offsets() -> None:
    raw = sample().pack()
    assert struct.unpack_from("<Q", raw, OFF_SEQUENCE) == (9,)
    assert struct.unpack_from("<Q", raw, 24) == (LgPos(0x2A, 4096 + 7 * 512 + 12).pack_u64(),)
    assert raw[60:64] == b"E00\0"
    assert struct.unpack_from("<II", raw, 104) == (1 << 20, FLAG_CIRCULAR)


# --- choosing a copy ----------------------------------------------------------------------------------------------


def test_newest_copy_wins_wherever_it_is() -> None:
    older, newer = sample(8, checkpoint=LgPos(3, 4096)), sample(9)
    assert choose_checkpoint(checkpoint_file(newer, older)) == (newer, [])
    # A crash after the primary write, before its sync, can leave the older sequence in the primary.
    assert choose_checkpoint(checkpoint_file(older, newer)) == (newer, [])


def test_damaged_primary_falls_back_to_the_shadow_and_reports_offset_0() -> None:
    data = flip_byte(checkpoint_file(sample(10), sample(9)), PRIMARY + 200)
    chosen, errors = choose_checkpoint(bytes(data))
    assert chosen == sample(9)
    stored, computed = checksum_message(data, PRIMARY, CHECKPOINT_COPY_SIZE)
    assert [(e.offset, str(e)) for e in errors] == [
        (0, f"checksum mismatch at offset 0: stored 0x{stored:08x}, computed 0x{computed:08x}")
    ]


def test_damaged_shadow_falls_back_to_the_primary_and_reports_offset_4096() -> None:
    data = flip_byte(checkpoint_file(sample(10), sample(10)), SHADOW + 4095)
    chosen, errors = choose_checkpoint(bytes(data))
    assert chosen == sample(10)
    assert [e.offset for e in errors] == [SHADOW]
    assert str(errors[0]).startswith("checksum mismatch at offset 4096: stored 0x")


def test_both_copies_damaged_names_both_offsets() -> None:
    data = flip_byte(flip_byte(checkpoint_file(sample(10), sample(9)), PRIMARY + 30), SHADOW + 30)
    p_stored, p_computed = checksum_message(data, PRIMARY, CHECKPOINT_COPY_SIZE)
    s_stored, s_computed = checksum_message(data, SHADOW, CHECKPOINT_COPY_SIZE)
    with pytest.raises(CheckpointCopyError) as info:
        choose_checkpoint(bytes(data))
    assert info.value.offset == 0
    assert str(info.value) == (
        f"copy at offset 0: checksum mismatch at offset 0: stored 0x{p_stored:08x}, computed 0x{p_computed:08x}; "
        f"copy at offset 4096: checksum mismatch at offset 4096: stored 0x{s_stored:08x}, "
        f"computed 0x{s_computed:08x}"
    )


def test_truncated_file_loses_its_shadow_copy() -> None:
    data = checkpoint_file(sample(10), sample(9))[: CHECKPOINT_COPY_SIZE + 100]
    chosen, errors = choose_checkpoint(data)
    assert chosen == sample(10)
    assert [(e.offset, str(e)) for e in errors] == [(SHADOW, "copy is 100 bytes, expected 4096")]


# --- the checks behind the checksum -------------------------------------------------------------------------------


@pytest.mark.parametrize("base", [PRIMARY, SHADOW])
def test_bad_magic_behind_a_valid_checksum_names_its_file_offset(base: int) -> None:
    data = reseal_checksum(flip_byte(checkpoint_file(sample(), sample()), base + OFF_MAGIC), base, 4096)
    with pytest.raises(CheckpointCopyError) as info:
        unpack_checkpoint_copy(data[base : base + 4096], base)
    assert info.value.offset == base + OFF_MAGIC
    assert str(info.value) == f"not a ShadowStore checkpoint (magic {bytes(data[base + 4 : base + 12])!r})"


def test_unsupported_major_version_names_offset_12() -> None:
    data = bytearray(sample().pack())
    struct.pack_into("<H", data, OFF_MAJOR, 2)
    reseal_checksum(data)
    with pytest.raises(CheckpointCopyError) as info:
        unpack_checkpoint_copy(data, SHADOW)
    assert (info.value.offset, str(info.value)) == (SHADOW + OFF_MAJOR, "checkpoint format version 2 is not supported")


def test_damaged_attach_list_names_the_start_of_the_list() -> None:
    data = reseal_checksum(flip_byte(sample().pack(), CHECKPOINT.size + 3, 0x40))
    with pytest.raises(CheckpointCopyError) as info:
        unpack_checkpoint_copy(data, SHADOW)
    assert info.value.offset == SHADOW + CHECKPOINT.size == SHADOW + 112
    name_at = CHECKPOINT.size + ATTACHINFO.size
    assert str(info.value) == f"attach name at offset {name_at} runs past the end of its area"


# --- the file on disk ---------------------------------------------------------------------------------------------


def disk_with(data: bytes) -> FaultFileSystem:
    fs = FaultFileSystem(seed=2)
    fs.makedirs("/sg")
    fs.write_bytes(CHK_PATH, data)
    return fs


def test_read_checkpoint_returns_the_newest_copy_and_the_other_copy_problem() -> None:
    fs = disk_with(bytes(flip_byte(checkpoint_file(sample(11), sample(10)), 77)))
    chosen, damaged = read_checkpoint(fs, CHK_PATH)
    assert chosen == sample(10)
    assert [e.offset for e in damaged] == [0]


def test_read_checkpoint_with_both_copies_damaged_raises_533_naming_the_file() -> None:
    fs = disk_with(bytes(flip_byte(flip_byte(checkpoint_file(sample(), sample()), 8), SHADOW + 8)))
    with pytest.raises(CheckpointCorruptError) as info:
        read_checkpoint(fs, CHK_PATH)
    assert info.value.code == -533
    assert info.value.details == {"file": CHK_PATH}
    assert info.value.message.startswith(f"{CHK_PATH}: both checkpoint copies are damaged: copy at offset 0: ")
    assert "; copy at offset 4096: checksum mismatch at offset 4096" in info.value.message


def test_read_checkpoint_of_a_missing_file_raises_542() -> None:
    fs = disk_with(b"")
    with pytest.raises(CheckpointNotFoundError) as info:
        read_checkpoint(fs, "/sg/E01.chk")
    assert info.value.code == -542
    assert info.value.message == "checkpoint file /sg/E01.chk does not exist"


def test_checkpoint_file_writes_both_copies_with_rising_sequence_numbers() -> None:
    fs = disk_with(b"")
    chk = CheckpointFile.create(fs, CHK_PATH, sample(0))
    assert fs.read_bytes(CHK_PATH) == sample(1).pack() * 2
    written = chk.write(sample(0, checkpoint=LgPos(0x30, 4096)))
    chk.close()
    assert written.sequence == 2
    assert fs.read_bytes(CHK_PATH) == written.pack() * 2
    assert read_checkpoint(fs, CHK_PATH) == (written, [])
