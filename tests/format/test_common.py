"""Shared structures (format/common.py): log positions, signatures, backup info, attach lists, checksums.

Also home of the corruption helpers every format test uses: ``flip_byte`` damages one byte at a fixed offset
and ``reseal_checksum`` stores a correct checksum again, so that the check *after* the checksum is the one a
test exercises.
"""

from __future__ import annotations

import struct
import time

import pytest

from shadowstore.format.common import (
    ATTACHINFO,
    BACKUP_SNAPSHOT,
    BACKUP_STREAMING,
    BKINFO,
    EMPTY_BACKUP_INFO,
    LGPOS,
    LGPOS_ZERO,
    SIGNATURE,
    ZERO_SIGNATURE,
    AttachInfo,
    BackupInfo,
    LgPos,
    Signature,
    crc32c,
    format_time,
    iso_time,
    iso_us,
    pack_attach_list,
    seal_checksum,
    stored_and_computed_checksum,
    unpack_attach_list,
)

# --- corruption helpers (imported by the other format tests) --------------------------------------------------


def flip_byte(buf: bytes | bytearray, offset: int, mask: int = 0xFF) -> bytearray:
    """A copy of ``buf`` with the byte at ``offset`` XOR-ed with ``mask`` (never a no-op)."""
    if not mask & 0xFF:
        raise ValueError("a zero mask would not change the byte")
    out = bytearray(buf)
    out[offset] ^= mask
    return out


def reseal_checksum(buf: bytearray, offset: int = 0, length: int | None = None) -> bytearray:
    """Store the CRC-32C of ``buf[offset+4 : offset+length]`` in the u32 at ``offset``; returns ``buf``.

    Every ShadowStore checksum has this shape: a u32 at the start of the structure covering the rest of it
    (the whole buffer from ``offset`` when ``length`` is None).
    """
    end = len(buf) if length is None else offset + length
    struct.pack_into("<I", buf, offset, crc32c(bytes(buf[offset + 4 : end])))
    return buf


def checksum_message(buf: bytes | bytearray, offset: int = 0, length: int | None = None) -> tuple[int, int]:
    """(stored, computed) checksum of the structure at ``offset``, as the readers report them."""
    end = len(buf) if length is None else offset + length
    (stored,) = struct.unpack_from("<I", buf, offset)
    return stored, crc32c(bytes(buf[offset + 4 : end]))


SIG = Signature(0x1234_5678, 1_700_000_000_123_456, "MAILSRV01")


# --- helpers themselves -----------------------------------------------------------------------------------------


def test_flip_byte_changes_exactly_one_byte_and_copies() -> None:
    original = bytes(range(16))
    flipped = flip_byte(original, 5)
    assert original == bytes(range(16))
    assert [i for i in range(16) if flipped[i] != original[i]] == [5]
    with pytest.raises(ValueError, match="zero mask"):
        flip_byte(original, 5, 0x100)


def test_reseal_checksum_matches_seal_checksum() -> None:
    buf = bytearray(b"\0\0\0\0" + bytes(range(60)))
    expected = bytearray(buf)
    seal_checksum(expected)
    assert reseal_checksum(bytearray(buf)) == expected
    stored, computed = stored_and_computed_checksum(expected)
    assert stored == computed


# --- crc32c and sealing -------------------------------------------------------------------------------------


def test_crc32c_is_castagnoli_and_continues() -> None:
    # The standard CRC-32C check value (RFC 3720, appendix B.4 lists the polynomial).
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"56789", crc32c(b"1234")) == crc32c(b"123456789")


def test_stored_and_computed_checksum_report_a_flipped_byte() -> None:
    buf = bytearray(64)
    buf[10:20] = b"abcdefghij"
    seal_checksum(buf)
    damaged = flip_byte(buf, 15)
    stored, computed = stored_and_computed_checksum(damaged)
    assert stored == struct.unpack_from("<I", buf, 0)[0]
    assert computed == crc32c(bytes(damaged[4:]))
    assert stored != computed


def test_seal_checksum_with_a_later_start_ignores_bytes_before_it() -> None:
    buf = bytearray(32)
    seal_checksum(buf, start=8)
    damaged = flip_byte(buf, 6)  # before ``start``: not covered
    assert stored_and_computed_checksum(damaged, start=8) == stored_and_computed_checksum(buf, start=8)


# --- LGPOS --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pos", [LgPos(1, 4096), LgPos(0x7FFFF800, 0), LgPos(3, 512 * 0xFFFF + 511), LGPOS_ZERO])
def test_lgpos_round_trips_through_u64(pos: LgPos) -> None:
    raw = LGPOS.pack(pos.pack_u64())
    assert len(raw) == 8
    assert LgPos.from_u64(LGPOS.unpack(raw)[0]) == pos


def test_lgpos_u64_orders_like_the_stream() -> None:
    positions = [LgPos(2, 0), LgPos(1, 65535), LgPos(1, 512), LgPos(1, 511), LgPos(3, 4096)]
    assert sorted(positions, key=LgPos.pack_u64) == sorted(positions)


def test_lgpos_prints_like_eseutil() -> None:
    pos = LgPos(0x1A, 5 * 512 + 0x1F)
    assert (pos.isec, pos.ib) == (5, 0x1F)
    assert str(pos) == "(0x1A,5,1F)"


# --- times, signatures, backup info ---------------------------------------------------------------------------


def test_format_time_of_zero_is_the_ese_never_value() -> None:
    assert format_time(0) == "00/00/1900 00:00:00.000"
    assert iso_time(0) is None
    assert format_time(1_700_000_000_123_456) == "11/14/2023 22:13:20.123"


def test_signature_round_trips_and_truncates_the_computer_name_to_16_bytes() -> None:
    raw = SIG.pack()
    assert len(raw) == SIGNATURE.size == 28
    assert Signature.unpack_from(raw) == SIG
    long_name = Signature(1, 2, "A-VERY-LONG-COMPUTER-NAME")
    assert Signature.unpack_from(long_name.pack()).computer == "A-VERY-LONG-COMP"
    assert Signature.unpack_from(b"\xff" * 4 + SIG.pack(), 4) == SIG


def test_zero_signature_is_zero_and_a_new_one_is_not() -> None:
    assert ZERO_SIGNATURE.is_zero
    assert Signature.unpack_from(bytes(28)).is_zero
    assert not Signature.new().is_zero


def test_a_new_signature_is_created_after_the_stream_it_follows_even_when_the_clock_is_behind() -> None:
    ahead = time.time_ns() // 1000 + 86_400_000_000  # the stream followed was made with a clock a day ahead
    assert Signature.new(after_us=ahead).created_us == ahead + 1
    before = time.time_ns() // 1000
    assert Signature.new(after_us=1_000).created_us >= before  # an older stream leaves the clock's time


def test_iso_us_reads_back_what_iso_time_wrote_and_nothing_else() -> None:
    for us in (1, 1_700_000_000_123_456, 253_402_300_799_999_999):
        assert iso_us(iso_time(us)) == us
    assert iso_us(None) == iso_us("yesterday") == iso_us("2026-12-07T10:00:00") == 0


@pytest.mark.parametrize("kind", [BACKUP_STREAMING, BACKUP_SNAPSHOT])
def test_backup_info_round_trips(kind: int) -> None:
    info = BackupInfo(LgPos(7, 4608), 1_700_000_000_000_000, 3, 7, kind)
    raw = info.pack()
    assert len(raw) == BKINFO.size == 28
    assert BackupInfo.unpack_from(raw) == info
    assert not info.is_empty
    assert info.to_dict() == {
        "mark": "(0x7,9,0)",
        "time": "2023-11-14T22:13:20.000000+00:00",
        "gen_low": 3,
        "gen_high": 7,
        "kind": "snapshot" if kind == BACKUP_SNAPSHOT else "streaming",
    }


def test_empty_backup_info_is_all_zero_and_prints_as_none() -> None:
    assert EMPTY_BACKUP_INFO.pack() == bytes(28)
    assert BackupInfo.unpack_from(bytes(28)).is_empty
    assert EMPTY_BACKUP_INFO.to_dict() is None


# --- attach lists ---------------------------------------------------------------------------------------------

ATTACHED = [
    AttachInfo(1, SIG, LgPos(1, 4096), "priv1.edb"),
    AttachInfo(2, SIG._replace(random=99), LgPos(1, 4608), "pub1.edb"),
    AttachInfo(3, SIG, LgPos(2, 4096), "magasin-ü.edb"),
]


def test_attach_list_round_trips_and_ends_with_a_zero_byte() -> None:
    raw = pack_attach_list(ATTACHED, 4000)
    assert raw[-1] == 0
    assert len(raw) == sum(ATTACHINFO.size + len(a.name.encode()) for a in ATTACHED) + 1
    assert unpack_attach_list(raw + bytes(100), 0, len(raw) + 100) == ATTACHED


def test_empty_attach_list_is_one_zero_byte() -> None:
    assert pack_attach_list([], 1) == b"\0"
    assert unpack_attach_list(bytes(50), 0, 50) == []


def test_attach_list_that_does_not_fit_raises() -> None:
    need = len(pack_attach_list(ATTACHED, 4000))
    with pytest.raises(ValueError, match=f"attach list needs {need} bytes, {need - 1} available"):
        pack_attach_list(ATTACHED, need - 1)


def test_attach_entry_cut_by_the_end_of_its_area_names_its_offset() -> None:
    raw = pack_attach_list(ATTACHED, 4000)
    second = ATTACHINFO.size + len(b"priv1.edb")
    with pytest.raises(ValueError, match=f"^attach entry at offset {second} runs past the end of its area$"):
        unpack_attach_list(raw, 0, second + ATTACHINFO.size - 1)


def test_attach_name_length_flipped_past_the_area_names_the_name_offset() -> None:
    raw = pack_attach_list(ATTACHED[:1], 4000)
    damaged = flip_byte(raw, 3, 0x10)  # high byte of the name length: 9 -> 4105
    with pytest.raises(ValueError, match=f"^attach name at offset {ATTACHINFO.size} runs past the end of its area$"):
        unpack_attach_list(damaged, 0, len(damaged))


def test_attach_info_to_dict_names_everything() -> None:
    assert ATTACHED[0].to_dict() == {
        "dbid": 1,
        "name": "priv1.edb",
        "signature": SIG.to_dict(),
        "attached_at": "(0x1,8,0)",
    }
