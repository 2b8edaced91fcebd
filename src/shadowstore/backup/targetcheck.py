"""Whether a backup target that a command reads from is there at all.

Listing a target that does not exist looks exactly like listing an empty one, so a mistyped ``--to`` or
``--from`` (or a backup disk that is not mounted) used to answer "no backup sets" with exit code 0. Commands
that read a target (``backup list/show/verify/prune``, ``restore plan/run``) call :func:`check_readable` first;
``backup run`` does not, since a run creates a new local target folder (that is how targets start).

Per backend: a local target must be an existing folder; an S3 target's bucket must exist (a prefix in it need
not: S3 has no folders, and a target no backup wrote to yet is empty); a ``memory://`` target always exists.
"""

from __future__ import annotations

import stat
from pathlib import Path

from shadowstore.backup.fsspectarget import FsspecTarget
from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.target import Target
from shadowstore.errors import BackupTargetError, TargetNotFoundError


def check_readable(target: Target, *, where: str = "") -> None:
    """Return if ``target`` exists, else raise TargetNotFoundError (exit code TARGET_NOT_FOUND) saying what is
    there instead; ``where`` says where the target was named (``"--to"``, ``"backup.target"``) for the hint.
    Raises BackupTargetError when the backend cannot be asked (an S3 endpoint that does not answer)."""
    if isinstance(target, LocalTarget):
        _check_folder(target.url, where)
    elif isinstance(target, FsspecTarget) and target.url.lower().startswith(("s3://", "s3a://")):
        _check_bucket(target, where)


def _check_folder(path: str, where: str) -> None:
    try:
        mode = Path(path).stat().st_mode
    except FileNotFoundError:
        parent = _existing_parent(path)
        raise TargetNotFoundError(
            f"backup target {path} does not exist (the nearest folder that does is {parent})",
            hint=_hint(where, "no backup was ever written there, or the path is mistyped, or its disk is not mounted"),
            target=path,
        ) from None
    except NotADirectoryError:
        raise TargetNotFoundError(
            f"backup target {path} does not exist: a part of its path is a file, not a folder",
            hint=_hint(where, "the path is mistyped"),
            target=path,
        ) from None
    except OSError as exc:
        raise BackupTargetError(f"backup target {path} cannot be read: {exc.strerror or exc}", target=path) from exc
    if not stat.S_ISDIR(mode):
        raise TargetNotFoundError(
            f"backup target {path} is a file, not a folder of backup sets",
            hint=_hint(where, "name the folder that holds the backup sets"),
            target=path,
        )


def _check_bucket(target: FsspecTarget, where: str) -> None:
    fs = target._fs  # why the private attribute: FsspecTarget exposes neither its file system nor a bucket check
    bucket = target.url.split("://", 1)[1].split("/", 1)[0]
    try:
        # why not fs.exists: s3fs answers False for a bucket it could not ask about (no network, no endpoint)
        fs.call_s3("head_bucket", Bucket=bucket)
    except FileNotFoundError:
        raise TargetNotFoundError(
            f"backup target {target.url}: bucket {bucket!r} does not exist (or these credentials cannot see it)",
            hint=_hint(where, "the bucket name is mistyped, or the endpoint or credentials are not the ones meant"),
            target=target.url,
        ) from None
    except Exception as exc:  # why broad: s3fs raises what botocore and aiohttp raise; all mean "cannot ask"
        raise BackupTargetError(
            f"backup target {target.url}: cannot find out whether bucket {bucket!r} exists: {exc}",
            hint="check the endpoint, the credentials and the network, then run the command again",
            target=target.url,
        ) from exc


def _existing_parent(path: str) -> str:
    parent = Path(path).absolute().parent
    while not parent.is_dir() and parent != parent.parent:
        parent = parent.parent
    return str(parent)


def _hint(where: str, likely: str) -> str:
    named = f" named by {where}" if where else ""
    return f"check the backup target{named}: {likely}"
