"""A backup target at an fsspec URL: ``s3://bucket/prefix`` through s3fs, ``memory://name`` in tests.

Atomicity: on S3 a file is a multipart upload opened with ``autocommit=False``; the object appears only when
``commit()`` completes the upload after the last part, and a failure aborts the upload (``discard()``). (A plain
``with fs.open(path, "wb")`` is *not* enough: s3fs's ``__exit__`` closes, and so completes, the upload even when
the block raised.) Other file systems get the whole content in one ``pipe_file`` call, which is atomic for object
stores and for ``memory://`` (it holds the file in memory: meant for tests and small files). Durability is the
store's: S3 acknowledges a PUT or a completed upload only once the object is stored.

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
    ShadowStoreError,
)

ENDPOINT_VARIABLE = "SHADOWSTORE_S3_ENDPOINT"
PART_SIZE = 8 << 20  # bytes buffered per multipart part (S3's minimum is 5 MiB)
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

    def write_file(self, name: str, chunks: Iterable[Buffer]) -> int:
        """Store ``chunks`` as ``name`` atomically; returns the bytes written. Raises BackupTargetFullError when
        the store refuses for space or size, BackupTargetError for other failures; an exception raised by
        ``chunks`` itself propagates unchanged. On failure ``name`` keeps its previous content (or stays absent)."""
        path = self._path(name)
        if not self._multipart:
            data = bytearray()
            for chunk in chunks:  # why not b"".join: each chunk must be copied before the next is asked for
                data += chunk
            with self._wrapped("write", name):
                self._fs.pipe_file(path, bytes(data))
            return len(data)
        with self._wrapped("write", name):
            upload = self._fs.open(path, "wb", autocommit=False, block_size=PART_SIZE)
        try:
            total = 0
            for chunk in chunks:  # why outside _wrapped: the iterable's own exceptions propagate unchanged
                with self._wrapped("write", name):
                    upload.write(chunk)
                total += len(chunk)
            with self._wrapped("write", name):
                upload.close()  # uploads the last part; the object does not exist yet
                upload.commit()  # completes the multipart upload (or PUTs an empty object)
        except BaseException:
            _abort(upload)
            raise
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
        """Sorted names of the files whose name starts with ``prefix``. Raises BackupTargetError."""
        if prefix:
            check_name(prefix.rstrip("/") or "/")
        folder = prefix.rpartition("/")[0]
        with self._wrapped("list", prefix or "/"):
            paths = self._fs.find(f"{self._root}/{folder}" if folder else self._root)
        base = self._root.lstrip("/") + "/" if self._root.strip("/") else ""
        names = (path.lstrip("/")[len(base) :] for path in paths if path.lstrip("/").startswith(base))
        return sorted(name for name in names if name.startswith(prefix))

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
