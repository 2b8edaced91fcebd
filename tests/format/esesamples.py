"""The real ESE sample files of tests/data/ese (see its README.md for their provenance and known values), and the
named helpers the real-file tests damage them with: flip_byte, truncate_to, reseal_log, build_checkpoint.

Bytes are built with the declarations of format/esetypes.py, eselog.py and esechk.py, never hex literals.
"""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

from shadowstore.format.esechk import EseCheckpoint
from shadowstore.format.eselog import LOG_HEADER_SIZE, EseLogHeader, read_log_header
from shadowstore.format.esetypes import (
    ZERO_LOGTIME,
    DbmsParam,
    EseLgPos,
    EseSignature,
    seal_xor_checksum,
)

DATA = Path(__file__).resolve().parent.parent / "data" / "ese"
DATABASES = ("dissect-basic.edb", "dissect-Current.mdb", "go-ese-HyperV-Current.mdb")
LOG_1, LOG_2 = "paola-edb00001.log", "paola-edb.log"
LOG_RAND = 152148  # the log signature's ulRandom of both sample logs


@functools.cache
def sample(name: str) -> bytes:
    """The decompressed bytes of tests/data/ese/<name>.gz."""
    return gzip.decompress((DATA / f"{name}.gz").read_bytes())


def put(folder: Path, name: str, as_name: str | None = None) -> Path:
    """Write sample ``name`` into ``folder`` (as ``as_name``); returns its path."""
    path = folder / (as_name or name)
    path.write_bytes(sample(name))
    return path


def log_set(folder: Path, extension: str = ".log", base: str = "edb") -> tuple[Path, Path]:
    """The two sample logs as a set: <base>00001<ext> (generation 1) and the current log <base><ext>."""
    folder.mkdir(parents=True, exist_ok=True)
    return put(folder, LOG_1, f"{base}00001{extension}"), put(folder, LOG_2, f"{base}{extension}")


def flip_byte(path: Path, offset: int, mask: int = 0xFF) -> None:
    """XOR the byte at ``offset`` with ``mask`` (never a no-op)."""
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


def truncate_to(path: Path, size: int) -> None:
    path.write_bytes(path.read_bytes()[:size])


def log_header(path: Path) -> EseLogHeader:
    data = path.read_bytes()
    return read_log_header(data[:LOG_HEADER_SIZE], str(path), len(data))


def reseal_log(path: Path, header: EseLogHeader) -> None:
    """Write ``header`` over the log's first 4096 bytes with a valid checksum (the rest of the file is kept)."""
    block = header.pack()
    seal_xor_checksum(block)
    data = bytearray(path.read_bytes())
    data[:LOG_HEADER_SIZE] = block
    path.write_bytes(bytes(data))


def reseal_log_bytes(path: Path, offset: int, mask: int = 0xFF) -> None:
    """Flip a byte of the header and make its checksum valid again: a well-formed header that says something else."""
    flip_byte(path, offset, mask)
    data = bytearray(path.read_bytes())
    block = data[:LOG_HEADER_SIZE]
    seal_xor_checksum(block)
    data[:LOG_HEADER_SIZE] = block
    path.write_bytes(bytes(data))


def build_checkpoint(signature: EseSignature, checkpoint: EseLgPos, shadow: bool = True) -> bytes:
    """A checkpoint file (8192 bytes, or 4096 without the shadow) built from format/esechk.py's declaration with
    a valid XOR checksum in each copy; there is no real sample checkpoint (tests/data/ese/README.md)."""
    params = DbmsParam("C:\\ESE\\", "C:\\ESE\\", 0, 16, 300, 256, 1024, 2048, 4096, 2000000000)
    zero = EseLgPos(0, 0, 0)
    copy = EseCheckpoint(
        zero, checkpoint, signature, params, zero, ZERO_LOGTIME, zero, ZERO_LOGTIME, 0, zero, []
    ).pack()
    seal_xor_checksum(copy)
    return bytes(copy) * (2 if shadow else 1)
