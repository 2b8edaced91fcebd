"""A backup target at an fsspec URL: ``s3://bucket/prefix`` through s3fs, ``memory://name`` in tests.

Atomicity: on S3 a file is a multipart upload opened with ``autocommit=False``; the object appears only when
``commit()`` completes the upload after the last part, and a failure aborts the upload (``discard()``). (A plain
``with fs.open(path, "wb")`` is *not* enough: s3fs's ``__exit__`` closes, and so completes, the upload even when
the block raised.) Other file systems get the whole content in one ``pipe_file`` call, which is atomic for object
stores and for ``memory://`` (it holds the file in memory: meant for tests and small files). Durability is the
store's: S3 acknowledges a PUT or a completed upload only once the object is stored.

Part sizes: S3 takes at most 10,000 parts of at most 5 GiB per upload, and objects of at most 5 TiB. Parts are
at least 8 MiB and that minimum doubles every 1,000 parts (``part_size``), so every file up to 5 TiB fits; the
first parts are sized from the bytes the caller expects (``part_size_for``) so that a file of that size is
written in equal parts. s3fs holds the part being filled in memory.

Configuration: S3 credentials and region come from the environment as boto reads them (``AWS_*`` variables,
profiles, instance roles); ``SHADOWSTORE_S3_ENDPOINT`` points at an S3-compatible server (MinIO, Ceph, moto).
"""

from __future__ import annotations

import errno
import importlib
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from shadowstore.backup.target import CHUNK, Buffer, Names, check_name
from shadowstore.errors import (
    BackupTargetError,
    BackupTargetFullError,
    BackupTargetNotFoundError,
    InvalidParameterError,
    ShadowStoreError,
)

ENDPOINT_VARIABLE = "SHADOWSTORE_S3_ENDPOINT"
PART_SIZE = 8 << 20  # the smallest part uploaded (S3's minimum is 5 MiB for every part but the last); 1 MiB multiple
PART_GROWTH = 1_000  # parts after which the smallest part size doubles
MAX_PARTS = 10_000  # S3's limit on the parts of one upload
PART_MAX = 5 << 30  # S3's largest part
OBJECT_MAX = 5 << 40  # S3's largest object
_MiB = 1 << 20
_TOO_BIG_HINT = "S3 stores objects of at most 5 TiB; back up to a directory target instead"
_MULTIPART_PROTOCOLS = {"s3", "s3a"}
# Error codes that object stores send when the object or the account exceeds a limit (AWS, Ceph, MinIO).
_FULL_CODES = {"EntityTooLarge", "QuotaExceeded", "XMinioStorageFull", "XMinioAdminBucketQuotaExceeded"}
_INSTALL_HINT = "install the S3 support with: pip install 'shadowstore[s3]'"


class FsspecTarget:
    """Files under the fsspec URL ``url``; every memory:// path is its own namespace.

    Raises BackupTargetError when the backend cannot be loaded (with a hint to install s3fs for s3://).
    Every error of the backend is raised as BackupTargetError (or a subclass) naming the URL and the file.
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url.rstrip("/")
        scheme = url.split("://", 1)[0].lower()
        try:
            import fsspec  # why here: only fsspec targets pay for importing it

            if scheme in _MULTIPART_PROTOCOLS:
                importlib.import_module("s3fs")
                storage_options = {**_s3_options(), **storage_options}
            self._fs, root = fsspec.core.url_to_fs(url, **storage_options)
        except ImportError as exc:
            raise BackupTargetError(
                f"backup target {url}: the {scheme}:// backend is not installed ({exc})", hint=_INSTALL_HINT
            ) from exc
        except (ValueError, TypeError) as exc:
            raise BackupTargetError(f"backup target {url} cannot be opened: {exc}", target=url) from exc
        self._root = root.rstrip("/")
        self._multipart = bool(_MULTIPART_PROTOCOLS & set(_protocols(self._fs)))

    def __repr__(self) -> str:
        return f"FsspecTarget({self.url!r})"

    def write_file(self, name: str, chunks: Iterable[Buffer], *, size_hint: int | None = None) -> int:
        """Store ``chunks`` as ``name`` atomically; returns the bytes written. On S3 ``size_hint`` (the bytes
        expected) sets the part size; a hint above 5 TiB raises BackupTargetError before anything is uploaded.
        Raises BackupTargetFullError when the store refuses for space or size, BackupTargetError for other
        failures; an exception raised by ``chunks`` itself propagates unchanged. On failure ``name`` keeps its
        previous content (or stays absent)."""
        path = self._path(name)
        if self._multipart:
            return self._upload(path, name, chunks, size_hint)
        data = bytearray()
        for chunk in chunks:  # why not b"".join: each chunk must be copied before the next is asked for
            data += chunk
        with self._wrapped("write", name):
            self._fs.pipe_file(path, bytes(data))
        return len(data)

    def _upload(self, path: str, name: str, chunks: Iterable[Buffer], size_hint: int | None) -> int:
        """``write_file`` on S3: one multipart upload, completed only after the last part."""
        try:
            first = part_size_for(size_hint)
        except BackupTargetError as exc:
            message = f"cannot write {name!r} to backup target {self.url}: {exc.message}"
            raise BackupTargetError(message, file=name, target=self.url, hint=exc.hint) from None
        with self._wrapped("write", name):
            upload = self._fs.open(path, "wb", autocommit=False, block_size=first)
        try:
            total = self._send_parts(upload, chunks, first, name)
            with self._wrapped("write", name):
                upload.close()  # uploads the last part; the object does not exist yet
                upload.commit()  # completes the multipart upload (or PUTs an empty object)
        except BaseException:
            _abort(upload)
            raise
        return total

    def _send_parts(self, upload: Any, chunks: Iterable[Buffer], first: int, name: str) -> int:
        """Write ``chunks`` into the s3fs file ``upload`` so that part ``n`` is exactly ``part_size(first, n)``
        bytes (the last may be shorter); returns the bytes written. Raises BackupTargetError once they pass 5 TiB.

        How s3fs cuts parts (S3File._upload_chunk, AbstractBufferedFile.write/flush): a write that brings its
        buffer to ``blocksize`` bytes or more uploads it, the whole buffer as one part (up to s3fs's ``part_max``,
        5 GiB) or, with the file system's ``fixed_upload_size``, in parts of exactly ``blocksize``; ``blocksize``
        is read anew at every write. So each write here stops at the end of the current part, and ``blocksize``
        is set to the next part's size once that part is gone: every part is one full buffer in both modes.
        """
        parts = total = 0
        room = first  # bytes still to write before the current part is uploaded
        for chunk in chunks:  # why outside _wrapped: the iterable's own exceptions propagate unchanged
            view = memoryview(chunk).cast("B")
            total += len(view)
            if total > OBJECT_MAX:
                raise BackupTargetError(
                    f"cannot write {name!r} to backup target {self.url}: it is larger than 5 TiB",
                    file=name,
                    target=self.url,
                    hint=_TOO_BIG_HINT,
                )
            while view:
                piece, view = view[:room], view[room:]
                with self._wrapped("write", name):
                    upload.write(piece)
                room -= len(piece)
                if room == 0:  # s3fs has just uploaded its buffer as one part
                    parts += 1
                    room = upload.blocksize = part_size(first, parts)
        return total

    def read_file(self, name: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """The content of ``name`` in chunks of at most ``chunk_size`` bytes. The file is opened now, so a
        missing file raises BackupTargetNotFoundError at the call; later read errors raise BackupTargetError."""
        path = self._path(name)
        with self._wrapped("read", name):
            handle = self._fs.open(path, "rb")
        return self._chunks(handle, chunk_size, name)

    def _chunks(self, handle: Any, chunk_size: int, name: str) -> Iterator[bytes]:
        try:
            while True:
                with self._wrapped("read", name):
                    chunk = handle.read(chunk_size)
                if not chunk:
                    return
                yield chunk
        finally:
            with self._wrapped("read", name):
                handle.close()

    def read_bytes(self, name: str) -> bytes:
        """All of ``name``; raises like :meth:`read_file`."""
        return b"".join(self.read_file(name))

    def exists(self, name: str) -> bool:
        """True if ``name`` is a file. Raises BackupTargetError if the store cannot be asked."""
        try:
            return self._info(name)["type"] == "file"
        except BackupTargetNotFoundError:
            return False

    def size(self, name: str) -> int:
        """Size of ``name`` in bytes. Raises BackupTargetNotFoundError if it is not a file."""
        info = self._info(name)
        if info["type"] != "file":
            raise BackupTargetNotFoundError(
                f"{name!r} in backup target {self.url} is not a file", file=name, target=self.url
            )
        return int(info["size"])

    def list(self, prefix: str = "") -> list[str]:
        """Sorted names of the files whose name starts with ``prefix`` (one listing: a file removed meanwhile is
        simply not named). Raises BackupTargetError."""
        return [*self._found(prefix)]

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """Size in bytes of each file :meth:`list` names, from the same single listing (on S3, ListObjectsV2
        pages; never a request per file). Raises BackupTargetError."""
        return {name: int(info["size"]) for name, info in self._found(prefix).items()}

    def _found(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Name -> the store's description (``size``...) of every file whose name starts with ``prefix``,
        sorted by name."""
        if prefix:
            check_name(prefix.rstrip("/") or "/")
        folder = prefix.rpartition("/")[0]
        with self._wrapped("list", prefix or "/"):
            found = self._fs.find(f"{self._root}/{folder}" if folder else self._root, detail=True)
        base = self._root.lstrip("/") + "/" if self._root.strip("/") else ""
        named = {}
        for path, info in found.items():
            key = path.lstrip("/")
            # why the type: s3fs may describe the folder itself when it finds no file (one emptied meanwhile)
            if key.startswith(base) and key[len(base) :].startswith(prefix) and info.get("type") != "directory":
                named[key[len(base) :]] = info
        return dict(sorted(named.items()))

    def delete(self, name: str) -> None:
        """Remove ``name`` (nothing happens if there is no such file). Raises BackupTargetError."""
        path = self._path(name)
        try:
            self._fs.rm_file(path)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise self._error(exc, "delete", name) from exc

    def partial(self, prefix: str = "") -> Names:
        """On S3, the names with an unfinished multipart upload: a process writing them was killed (a write that
        fails aborts its own). A listed name may be one being written right now. Elsewhere a write is one call
        that leaves nothing behind, so there are none."""
        if not self._multipart:
            return []
        if prefix:
            check_name(prefix.rstrip("/") or "/")
        root = self._key("")
        names = {upload["Key"][len(root) :] for upload in self._uploads(self._key(prefix), prefix or "/")}
        return sorted(name for name in names if name.startswith(prefix))

    def discard_partial(self, name: str) -> None:
        """Abort the unfinished multipart uploads of ``name`` (S3); nothing elsewhere."""
        if not self._multipart:
            return
        key = self._key(name)
        bucket = self._fs.split_path(self._path(name))[0]
        for upload in self._uploads(key, name):
            if upload["Key"] == key:
                with self._wrapped("discard a partial", name):
                    self._fs.call_s3(
                        "abort_multipart_upload", Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )

    def _key(self, name: str) -> str:
        """The object key of ``name`` inside the bucket (``""``: the key prefix of the target itself)."""
        _bucket, root_key, _version = self._fs.split_path(self._root)
        root_key = root_key.strip("/")
        if not name:
            return f"{root_key}/" if root_key else ""
        return f"{root_key}/{name}" if root_key else name

    def _uploads(self, key_prefix: str, what: str) -> Iterator[dict[str, Any]]:
        """The unfinished multipart uploads whose key starts with ``key_prefix``, every page of the listing."""
        bucket = self._fs.split_path(self._root)[0]
        markers: dict[str, str] = {}
        while True:
            with self._wrapped("list the unfinished uploads of", what):
                page = self._fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key_prefix, **markers)
            yield from page.get("Uploads", [])
            if not page.get("IsTruncated"):
                return
            markers = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}

    def _info(self, name: str) -> dict[str, Any]:
        path = self._path(name)
        with self._wrapped("look up", name):
            info: dict[str, Any] = self._fs.info(path)
        return info

    def _path(self, name: str) -> str:
        check_name(name)
        return f"{self._root}/{name}" if self._root else name

    @contextmanager
    def _wrapped(self, action: str, name: str) -> Iterator[None]:
        """Raise any exception of the backend from the block as the matching BackupTargetError."""
        try:
            yield
        except ShadowStoreError:
            raise
        except Exception as exc:
            raise self._error(exc, action, name) from exc

    def _error(self, exc: Exception, action: str, name: str) -> BackupTargetError:
        """``exc`` as a BackupTargetError naming the file and the target URL."""
        where = f"{action} {name!r} in backup target {self.url}"
        detail = f"{type(exc).__name__}: {exc}"
        if _is_full(exc):
            return BackupTargetFullError(
                f"the store refused to {where} for space or size: {detail}", file=name, target=self.url
            )
        if isinstance(exc, FileNotFoundError) and action in ("read", "look up"):
            return BackupTargetNotFoundError(f"cannot {where}: no such file", file=name, target=self.url)
        if isinstance(exc, PermissionError):
            message = f"cannot {action} {name!r}: backup target {self.url} denied access ({detail})"
            return BackupTargetError(message, file=name, target=self.url)
        return BackupTargetError(f"cannot {where}: {detail}", file=name, target=self.url)


def part_size_for(size_hint: int | None) -> int:
    """The size of the first parts of an S3 upload expected to hold ``size_hint`` bytes (None: unknown).

    The smallest multiple of 1 MiB, at least PART_SIZE, whose parts hold the hint grown by zstd's worst case
    (a compressed copy of incompressible data) before :func:`part_size` makes parts larger than it: a file no
    bigger than expected is written in equal parts (at most 7,000 of them for 5 TiB), and one that outgrows the
    hint goes on in growing parts. Raises BackupTargetError for a hint above S3's 5 TiB object limit,
    InvalidParameterError for a negative one.
    """
    if size_hint is None:
        return PART_SIZE
    if size_hint < 0:
        raise InvalidParameterError(f"a file cannot be expected to hold {size_hint} bytes")
    if size_hint > OBJECT_MAX:
        raise BackupTargetError(f"{size_hint:,} bytes is more than S3 stores in one object (5 TiB)", hint=_TOO_BIG_HINT)
    # why size // 128 + 1 MiB: zstd grows incompressible data by at most 1/256 plus a frame header per frame
    # (ZSTD_compressBound); twice that, plus a constant, leaves room for every frame's header and checksum.
    stored = size_hint + size_hint // 128 + _MiB
    smallest = PART_SIZE
    for doublings in range(MAX_PARTS // PART_GROWTH):
        # why: first parts of at least ``smallest`` and under twice it keep their size while part_size's own
        # minimum is at most ``smallest``: for the first (doublings + 1) * PART_GROWTH parts.
        per_part = -(-stored // ((doublings + 1) * PART_GROWTH))
        size = max(smallest, -(-per_part // _MiB) * _MiB)
        if size < 2 * smallest:
            return size
        smallest *= 2
    return PART_MAX  # not reached: 10 doublings of 8 MiB are past 5 GiB


def part_size(first: int, index: int) -> int:
    """The size of part ``index`` (0 for the first) of an upload whose first parts are ``first`` bytes: PART_SIZE
    doubled every PART_GROWTH parts, or ``first`` while that is larger, never above PART_MAX. Why this holds any
    file up to 5 TiB in MAX_PARTS parts: PART_SIZE x PART_GROWTH x (1 + 2 + ... + 512) is almost 8 TiB, and no
    part is smaller than in that schedule."""
    return min(PART_MAX, max(first, PART_SIZE << (index // PART_GROWTH)))


def _s3_options() -> dict[str, Any]:
    """Storage options for s3fs beyond what boto reads from the environment itself."""
    # why no listings cache: another process (a backup run, a prune) may change the bucket at any time.
    options: dict[str, Any] = {"use_listings_cache": False}
    endpoint = os.environ.get(ENDPOINT_VARIABLE)
    if endpoint:
        options["client_kwargs"] = {"endpoint_url": endpoint}
    return options


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _is_full(exc: BaseException) -> bool:
    """True if ``exc`` (or an exception it was raised from) says there is no space or the object is too big."""
    seen: BaseException | None = exc
    for _ in range(8):  # why bounded: a chain of causes can be a cycle
        if seen is None:
            return False
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        response = getattr(seen, "response", None)  # botocore's ClientError, kept as __cause__ by s3fs
        if isinstance(response, dict) and response.get("Error", {}).get("Code") in _FULL_CODES:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _abort(upload: Any) -> None:
    """Abort an unfinished multipart upload so no object appears; errors are ignored (the original failure is
    being raised, and a bucket lifecycle rule is the backstop for uploads that could not be aborted)."""
    with suppress(Exception):
        upload.discard()
    upload.closed = True  # why: its __del__ would otherwise try to finish the upload
