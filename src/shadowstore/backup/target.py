"""Backup targets: where backup sets live. One small interface, several backends.

A target stores *files* under relative names (``"First Storage Group/20261125T084500Z-full-3f2a/priv1.edb.zst"``:
``/``-separated, no empty, ``.`` or ``..`` parts, never absolute). ``write_file`` makes a file appear under its
name only once it is complete (local directory: temporary name, fsync, rename, directory fsync; object stores:
one PUT or a completed multipart upload), so a reader never sees half a file under its final name.

Backends: :class:`shadowstore.backup.localtarget.LocalTarget` (a directory) and
:class:`shadowstore.backup.fsspectarget.FsspecTarget` (any fsspec URL: ``memory://``, ``s3://`` through s3fs).
``open_target`` picks one from a URL or path. The same conformance tests run against every backend.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from shadowstore.errors import InvalidParameterError

CHUNK = 1 << 20
Buffer = bytes | memoryview  # a chunk of a file being written
Names = list[str]  # why an alias: inside a target class, ``list`` names its method


class Target(Protocol):
    url: str  # what the user gave, normalised (a local path becomes absolute)

    def write_file(self, name: str, chunks: Iterable[Buffer], *, size_hint: int | None = None) -> int:
        """Store ``chunks`` as file ``name`` atomically; returns the bytes written.

        Each chunk is valid only until the next one is asked for (a backup lends its read buffers): write or
        copy it before then. Replaces an existing file of that name. ``size_hint`` is the number of bytes the
        caller expects to write (the size of the file being copied; compressed output may be a little larger):
        a backend that must plan the write by size (S3's multipart upload) uses it, and writes correctly
        whether the chunks come to more or fewer bytes. Raises BackupTargetError (BackupTargetFullError when the
        target has no space; BackupTargetError before anything is written when the hint is more than the backend
        can store in one file) and leaves no file under ``name`` and no temporary file behind on failure.
        """

    def read_file(self, name: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """The content of ``name`` in chunks. Raises BackupTargetNotFoundError / BackupTargetError."""

    def read_bytes(self, name: str) -> bytes: ...

    def exists(self, name: str) -> bool: ...

    def size(self, name: str) -> int:
        """Size in bytes. Raises BackupTargetNotFoundError."""

    def list(self, prefix: str = "") -> list[str]:
        """Names of every file whose name starts with ``prefix``, sorted; temporary files are not listed. A file
        or folder another process removes while the listing runs is simply not listed (never an error)."""

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Size in bytes of every file :meth:`list` would name, from one listing (not a request per file), with
        the same promise about files removed meanwhile. Raises BackupTargetError."""

    def delete(self, name: str) -> None:
        """Remove ``name`` (no error if it is already gone)."""

    def partial(self, prefix: str = "") -> Names:
        """Names (starting with ``prefix``, sorted) of files whose write was cut short by a killed process and
        left something behind that ``list`` never shows but that takes space: a temporary file, an unfinished
        upload. The file itself may exist too, from an earlier complete write."""

    def discard_partial(self, name: str) -> None:
        """Remove what cut-short writes of ``name`` left behind (nothing happens if there is nothing); never
        touches ``name`` itself. A write of ``name`` still running fails if it is discarded."""


def check_name(name: str) -> str:
    """``name`` if it is a safe relative file name; raises InvalidParameterError otherwise."""
    if not name or name.startswith("/") or "\\" in name or "\0" in name:
        raise InvalidParameterError(f"{name!r} is not a relative file name inside a backup target")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidParameterError(f"{name!r} is not a relative file name inside a backup target")
    return name


def open_target(url: str) -> Target:
    """The target for ``url``: a local directory (a path or ``file://``), or an fsspec URL (``memory://``,
    ``s3://``...). Raises InvalidParameterError for an unknown scheme and BackupTargetError when the backend
    cannot be used (for example s3fs not installed)."""
    from shadowstore.backup.fsspectarget import FsspecTarget
    from shadowstore.backup.localtarget import LocalTarget

    if "://" not in url or url.startswith("file://"):
        return LocalTarget(url.removeprefix("file://"))
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("memory", "s3"):
        raise InvalidParameterError(
            f"backup target {url!r}: supported are a directory and s3:// (and memory:// within one program)"
        )
    return FsspecTarget(url)
