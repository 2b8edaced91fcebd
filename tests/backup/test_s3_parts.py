"""S3 part sizes: the pure schedule that lets objects up to S3's 5 TiB limit be written in at most 10,000
parts, and what a real (moto) S3 server receives when the schedule is shrunk to show in a small object."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from shadowstore.backup import fsspectarget
from shadowstore.backup.fsspectarget import PART_SIZE
from shadowstore.errors import BackupTargetError, InvalidParameterError
from tests.backup.test_targets import MiB, payload, pieces, s3_target


def part_sizes(client: Any, bucket: str, key: str) -> list[int]:
    """The size of each part of the object ``key``, as the store reports it (HeadObject with PartNumber)."""
    first = client.head_object(Bucket=bucket, Key=key, PartNumber=1)
    sizes = [first["ContentLength"]]
    for number in range(2, first.get("PartsCount", 1) + 1):
        sizes.append(client.head_object(Bucket=bucket, Key=key, PartNumber=number)["ContentLength"])
    return sizes


@pytest.fixture
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts of S3's minimum, 5 MiB, doubling every 2 parts: the schedule shows in a small object."""
    monkeypatch.setattr(fsspectarget, "PART_SIZE", 5 * MiB)
    monkeypatch.setattr(fsspectarget, "PART_GROWTH", 2)


@pytest.mark.usefixtures("small_parts")
def test_s3_parts_grow_as_the_schedule_says(s3_server: Any) -> None:
    target, client = s3_target(s3_server), s3_server.client()
    key = f"{target.url.split('/', 3)[3]}/db.edb"
    data = payload(33 * MiB + 17, 11)
    target.write_file("db.edb", pieces(data, seed=12, largest=3 * MiB))  # chunks that straddle part boundaries
    assert part_sizes(client, s3_server.bucket, key) == [5 * MiB, 5 * MiB, 10 * MiB, 10 * MiB, 3 * MiB + 17]
    assert client.head_object(Bucket=s3_server.bucket, Key=key)["ETag"].strip('"').endswith("-5")
    assert target.read_bytes("db.edb") == data


@pytest.mark.usefixtures("small_parts")
def test_s3_first_parts_are_sized_from_the_hint_and_grow_past_it(
    s3_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, client = s3_target(s3_server), s3_server.client()
    key = f"{target.url.split('/', 3)[3]}/db.edb"
    data = payload(37 * MiB, 13)  # more than the hint said
    target.write_file("db.edb", pieces(data, seed=14, largest=2 * MiB), size_hint=12 * MiB)
    # 12 MiB grown by zstd's worst case fits in the 2 parts before growth only if they are 7 MiB
    assert part_sizes(client, s3_server.bucket, key) == [7 * MiB, 7 * MiB, 10 * MiB, 10 * MiB, 3 * MiB]
    assert target.read_bytes("db.edb") == data


def test_s3_refuses_a_hint_above_5_tib_before_uploading(s3_server: Any) -> None:
    target, client = s3_target(s3_server), s3_server.client()
    pulled: list[bytes] = []

    def chunks() -> Iterator[bytes]:
        pulled.append(b"x")
        yield b"x"

    with pytest.raises(BackupTargetError, match="5 TiB") as info:
        target.write_file("huge.edb", chunks(), size_hint=(5 << 40) + 1)
    assert "'huge.edb'" in str(info.value)
    assert "directory target" in info.value.hint
    assert pulled == []
    prefix = target.url.split("/", 3)[3]
    assert client.list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix)["KeyCount"] == 0
    assert client.list_multipart_uploads(Bucket=s3_server.bucket, Prefix=prefix).get("Uploads", []) == []
    target.write_file("max.edb", [b"y"], size_hint=5 << 40)  # the limit itself is allowed
    assert target.read_bytes("max.edb") == b"y"


# --- the pure schedule ---------------------------------------------------------------------------------------

TiB, GiB = 1 << 40, 1 << 30


def parts_holding(size: int, first: int) -> list[int]:
    """The sizes of the parts an upload of ``size`` bytes whose first parts are ``first`` bytes is cut into
    (stops after MAX_PARTS + 1 parts: more than S3 takes)."""
    sizes: list[int] = []
    left = size
    while left > 0 and len(sizes) <= fsspectarget.MAX_PARTS:
        part = fsspectarget.part_size(first, len(sizes))
        sizes.append(min(part, left))
        left -= part
    return sizes


def test_every_size_up_to_5_tib_fits_in_10000_parts_whatever_was_expected() -> None:
    rng = random.Random(15)
    sizes = [0, 1, PART_SIZE, 78 * GiB, 79 * GiB, TiB, 5 * TiB - 1, 5 * TiB]
    sizes += [rng.randrange(5 * TiB) for _ in range(12)]
    for size in sizes:
        for hint in (None, 0, size // 100, size, 5 * TiB):
            first = fsspectarget.part_size_for(hint)
            parts = parts_holding(size, first)
            where = f"size {size}, hint {hint}, first part {first}"
            assert len(parts) <= 10_000, where
            assert all(5 * MiB <= part <= 5 * GiB for part in parts[:-1]), where
            assert sum(parts) == size, where


def test_first_part_size_for_a_hint() -> None:
    assert fsspectarget.part_size_for(None) == fsspectarget.part_size_for(0) == PART_SIZE == 8 * MiB
    hints = (1, 7 * GiB, 8 * GiB, 70 * GiB, 100 * GiB, TiB, 5 * TiB)
    firsts = [fsspectarget.part_size_for(hint) for hint in hints]
    assert firsts == sorted(firsts)
    assert all(first % MiB == 0 and 8 * MiB <= first <= 5 * GiB for first in firsts)
    assert firsts[-1] < 800 * MiB  # what s3fs holds in memory for a 5 TiB file
    with pytest.raises(BackupTargetError, match="5 TiB"):
        fsspectarget.part_size_for(5 * TiB + 1)
    with pytest.raises(InvalidParameterError):
        fsspectarget.part_size_for(-1)


def test_a_hinted_file_compressed_at_worst_is_written_in_equal_parts() -> None:
    """Random data grows when compressed; the backup writes one zstd frame per 8 MiB read. The hint is the
    original size: a compressed copy of that size must not need the larger parts meant for files that grew."""
    import zstandard

    original = payload(8 * MiB, 16)
    growth = len(zstandard.ZstdCompressor(level=3).compress(original)) - len(original)
    assert growth > 0
    for hint in (8 * MiB, 8 * GiB, 78 * GiB, 100 * GiB, TiB, 5 * TiB):
        stored = hint + -(-hint // (8 * MiB)) * growth
        first = fsspectarget.part_size_for(hint)
        parts = parts_holding(stored, first)
        assert set(parts[:-1]) <= {first}, hint
        assert len(parts) <= 7_000, hint  # and parts to spare for a file that grew
