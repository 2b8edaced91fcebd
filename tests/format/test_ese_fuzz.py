"""Fuzzing the readers of real ESE files: mutated sample headers and random bytes go into every parser (and the
dumps that read files), and only our own ShadowStoreError subclasses may escape, never struct.error, IndexError,
ValueError or UnicodeDecodeError. Hypothesis runs derandomized (a fixed seed per test); a failing example is
printed by hypothesis itself.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowstore.errors import ShadowStoreError
from shadowstore.format.esechk import CHECKPOINT_FILE_SIZE, read_checkpoint
from shadowstore.format.esedb import read_db_header
from shadowstore.format.eselog import LOG_HEADER_SIZE, read_log_header
from shadowstore.format.esenames import parse_log_name
from shadowstore.format.esetypes import EseLgPos, EseSignature, seal_xor_checksum
from shadowstore.tools.esekind import is_real_ese
from shadowstore.tools.esereal import dump_ese_checkpoint, dump_ese_database, dump_ese_logs
from tests.format.esesamples import LOG_1, LOG_2, build_checkpoint, sample

FUZZ = settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MUTATIONS = st.lists(st.tuples(st.integers(0, 8191), st.integers(1, 255)), min_size=1, max_size=12)


def mutate(data: bytes, changes: list[tuple[int, int]], reseal: int | None) -> bytes:
    """XOR each (offset, mask) into ``data``; with ``reseal``, make the checksum of the first ``reseal`` bytes
    valid again so the mutation reaches the field decoders instead of stopping at the checksum."""
    buf = bytearray(data)
    for offset, mask in changes:
        buf[offset % len(buf)] ^= mask
    if reseal:
        block = buf[:reseal]
        seal_xor_checksum(block)
        buf[:reseal] = block
    return bytes(buf)


def only_ours(parse: object, *args: object) -> None:
    with contextlib.suppress(ShadowStoreError):  # anything else fails the test
        parse(*args)  # type: ignore[operator]


@FUZZ
@given(changes=MUTATIONS, reseal=st.booleans(), cut=st.integers(0, 65536))
def test_database_header_parser(changes: list[tuple[int, int]], reseal: bool, cut: int) -> None:
    data = mutate(sample("dissect-basic.edb")[:65536], changes, 4096 if reseal else None)
    only_ours(read_db_header, data[:cut] if cut < 748 else data, "fuzz.edb")


@FUZZ
@given(changes=MUTATIONS, reseal=st.booleans(), which=st.sampled_from([LOG_1, LOG_2]), size=st.integers(0, 1 << 22))
def test_log_header_parser(changes: list[tuple[int, int]], reseal: bool, which: str, size: int) -> None:
    head = mutate(sample(which)[:LOG_HEADER_SIZE], changes, LOG_HEADER_SIZE if reseal else None)
    only_ours(read_log_header, head, "fuzz.log", size)


@FUZZ
@given(changes=MUTATIONS, reseal=st.booleans())
def test_checkpoint_parser(changes: list[tuple[int, int]], reseal: bool) -> None:
    data = build_checkpoint(EseSignature.unpack_from(sample(LOG_1), 44), EseLgPos(1, 8, 0))
    only_ours(read_checkpoint, mutate(data, changes, 4096 if reseal else None), "fuzz.chk")


@FUZZ
@given(data=st.binary(min_size=0, max_size=CHECKPOINT_FILE_SIZE + 16))
def test_random_bytes_into_every_parser(data: bytes) -> None:
    only_ours(read_db_header, data, "random.edb")
    only_ours(read_log_header, data[:LOG_HEADER_SIZE], "random.log", len(data))
    only_ours(read_checkpoint, data, "random.chk")


@FUZZ
@given(name=st.text(max_size=20))
def test_log_name_parser(name: str) -> None:
    parsed = parse_log_name(name)
    assert parsed is None or len(parsed.base) == 3


@settings(max_examples=40, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=MUTATIONS, reseal=st.booleans(), mode=st.sampled_from(["mh", "ml", "mk", "k"]))
def test_dumps_of_mutated_files(changes: list[tuple[int, int]], reseal: bool, mode: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "edb.log"
        log.write_bytes(mutate(sample(LOG_2)[:16384], changes, LOG_HEADER_SIZE if reseal else None))
        db = Path(folder) / "x.edb"
        db.write_bytes(mutate(sample("dissect-basic.edb")[:16384], changes, 4096 if reseal else None))
        for target in (str(log), str(db), folder):
            only_ours(is_real_ese, target, mode)
        only_ours(dump_ese_logs, folder)
        only_ours(dump_ese_database, str(db))
        only_ours(dump_ese_checkpoint, str(log))
