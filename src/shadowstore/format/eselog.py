"""The header of a real Windows ESE log file (LGFILEHDR_FIXED, research/ese.md §4.1).

A log file starts with a 4096-byte header (8 sectors of 512 bytes on older systems and Exchange 2003, 1 sector of
4096 bytes on modern ones), checksummed with the old-format XOR over all 4096 bytes. It has no magic: it is told
from other files by that checksum and le_filetype 3 at offset 667. The records after the header are not decoded
here (their formats changed with every log version).

    off size field (Microsoft's name)
      0   4  le_ulChecksum
      4   4  le_lGeneration
      8   2  le_cbSec                 bytes per sector (512 or 4096)
     10   2  le_csecHeader            header sectors (8 x 512 or 1 x 4096)
     12   2  le_csecLGFile            file size in sectors
     14   2  le_cbPageSize            database page size
     16   8  tmCreate                 LOGTIME
     24   8  tmPrevGen                LOGTIME: tmCreate of the generation before (zero for the first)
     32  12  le_ulMajor, le_ulMinor, le_ulUpdateMajor
     44  28  signLog                  SIGNATURE of the log stream
     72 567  dbms_param               DBMS_PARAM
    639   1  fLGFlags                 0x01 made from a reserve log, 0x02 circular logging now, 0x04 before
    640   8  le_lgposCheckpoint       the checkpoint when this file was made
    648   4  le_ulUpdateMinor
    652   1  bDiskSecSizeMismatch
    653   8  checksumPrevLogAllSegments
    661   4  le_efvEngineCurrentDiagnostic
    665   2  (not described)
    667   4  le_filetype              3
    671 2048 rgbAttach                ATTACHINFO list, ended by a zero dbid
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from shadowstore.errors import InvalidParameterError, LogFileCorruptError
from shadowstore.format.esetypes import (
    DBMS_PARAM,
    FILETYPE_CHECKPOINT,
    FILETYPE_LOG,
    LGPOS,
    LOGTIME,
    SIGNATURE,
    AttachListError,
    DbmsParam,
    EseAttachInfo,
    EseLgPos,
    EseSignature,
    LogTime,
    checksum_problem,
    filetype_of,
    unpack_attach_list,
)

LOG_HEADER_SIZE = 4096  # cbLogFileHeader
LGFILEHDR = struct.Struct(
    f"<IiHHHH{LOGTIME.size}s{LOGTIME.size}sIII{SIGNATURE.size}s{DBMS_PARAM.size}sB{LGPOS.size}sIBQI2sI2048s"
)
assert LGFILEHDR.size == 2719
ATTACH_AREA = (671, 671 + 2048)
SECTOR_SIZES = (512, 1024, 2048, 4096)

LG_FLAG_RESERVE = 0x01
LG_FLAG_CIRCULAR = 0x02
LG_FLAG_CIRCULAR_PAST = 0x04


class EseLogHeader(NamedTuple):
    generation: int
    sector_size: int
    header_sectors: int
    file_sectors: int
    page_size: int
    created: LogTime
    prev_created: LogTime
    major: int
    minor: int
    update_major: int
    signature: EseSignature
    params: DbmsParam
    flags: int
    checkpoint: EseLgPos  # at creation of this file
    update_minor: int
    sector_size_mismatch: int
    prev_segments_checksum: int
    engine_version: int
    attached: list[EseAttachInfo]
    checksum: int

    @property
    def file_size(self) -> int:
        return self.file_sectors * self.sector_size

    @property
    def version(self) -> str:
        parts = (self.major, self.minor, self.update_major) + ((self.update_minor,) if self.update_minor else ())
        return ".".join(map(str, parts))

    @property
    def from_reserve(self) -> bool:
        return bool(self.flags & LG_FLAG_RESERVE)

    @property
    def circular(self) -> bool:
        return bool(self.flags & LG_FLAG_CIRCULAR)

    @property
    def circular_past(self) -> bool:
        return bool(self.flags & LG_FLAG_CIRCULAR_PAST)

    def pack(self) -> bytearray:
        """The 4096-byte header with these fields, unsealed (seal it with esetypes.seal_xor_checksum): for tests."""
        attach = b"".join(item.pack() for item in self.attached) + b"\0"
        fields = (
            *(self.checksum, self.generation, self.sector_size, self.header_sectors, self.file_sectors),
            *(self.page_size, self.created.pack(), self.prev_created.pack(), self.major, self.minor),
            *(self.update_major, self.signature.pack(), self.params.pack(), self.flags, self.checkpoint.pack()),
            *(self.update_minor, self.sector_size_mismatch, self.prev_segments_checksum, self.engine_version),
            *(b"", FILETYPE_LOG, attach),
        )
        block = bytearray(LOG_HEADER_SIZE)
        LGFILEHDR.pack_into(block, 0, *fields)
        return block


def filled_with(block: bytes) -> int | None:
    """The byte ``block`` repeats throughout (0 for a zero-filled one), or None."""
    return block[0] if block and block.count(block[0]) == len(block) else None


def not_a_log(head: bytes, path: str, file_size: int) -> str | None:
    """Why a file of ``file_size`` bytes starting with ``head`` cannot be read as an ESE log (the rest of a
    sentence after its name), or None when it may be one (le_filetype 3, whatever its checksum)."""
    if file_size == 0:
        return "is empty"
    if len(head) < LOG_HEADER_SIZE:
        return f"is {len(head)} bytes, shorter than a log file header ({LOG_HEADER_SIZE} bytes): truncated or not a log"
    fill = filled_with(head[:LOG_HEADER_SIZE])
    if fill is not None:
        pattern = "zero-filled" if fill == 0 else f"filled with the byte 0x{fill:02X} (ESE's old log-extend pattern)"
        return (
            f"is {pattern} where the header should be: a reserve log or a log prepared ahead (edbtmp.log), "
            "never a log generation"
        )
    filetype = filetype_of(head)
    if filetype == FILETYPE_LOG:
        return None
    if filetype == FILETYPE_CHECKPOINT and checksum_problem(head[:LOG_HEADER_SIZE]) is None:
        return "is a Windows ESE checkpoint file, not a log file (dump it with 'eseutil /mk')"
    return f"is not a Windows ESE log file: le_filetype at offset 667 is {filetype}, not {FILETYPE_LOG}"


def read_log_header(head: bytes, path: str, file_size: int) -> EseLogHeader:
    """The verified header of the ESE log ``path`` (``head``: its first 4096 bytes or fewer; ``file_size``: its
    length).

    Raises InvalidParameterError when the file cannot be a log (empty, shorter than a header, zero-filled such as
    a reserve log, another file type), LogFileCorruptError (-501) naming the file and offset when it is a log
    whose header is damaged (checksum, geometry, attach list).
    """
    why = not_a_log(head, path, file_size)
    if why is not None:
        raise InvalidParameterError(f"{path} {why}", hint="check the path; 'eseutil /ml' reads log files", file=path)
    block = head[:LOG_HEADER_SIZE]
    problem = checksum_problem(block)
    if problem is not None:
        raise _damaged(path, 0, problem)
    raw = LGFILEHDR.unpack_from(block, 0)
    checksum, generation, sector, header_sectors, file_sectors, page_size = raw[:6]
    if sector not in SECTOR_SIZES or sector * header_sectors != LOG_HEADER_SIZE:
        raise _damaged(path, 8, f"sector size {sector} with {header_sectors} header sectors is not a 4096-byte header")
    try:
        attached = unpack_attach_list(block, *ATTACH_AREA)
    except AttachListError as exc:
        raise _damaged(path, exc.offset, str(exc)) from None
    created, prev, major, minor, update_major, sign, params, flags, checkpoint = raw[6:15]
    return EseLogHeader(
        generation=generation,
        sector_size=sector,
        header_sectors=header_sectors,
        file_sectors=file_sectors,
        page_size=page_size,
        created=LogTime.unpack_from(created),
        prev_created=LogTime.unpack_from(prev),
        major=major,
        minor=minor,
        update_major=update_major,
        signature=EseSignature.unpack_from(sign),
        params=DbmsParam.unpack_from(params),
        flags=flags,
        checkpoint=EseLgPos.unpack_from(checkpoint),
        update_minor=raw[15],
        sector_size_mismatch=raw[16],
        prev_segments_checksum=raw[17],
        engine_version=raw[18],
        attached=attached,
        checksum=checksum,
    )


def _damaged(path: str, offset: int, problem: str) -> LogFileCorruptError:
    return LogFileCorruptError(
        f"{path}: log file header is damaged at offset {offset}: {problem}", file=path, offset=offset
    )
