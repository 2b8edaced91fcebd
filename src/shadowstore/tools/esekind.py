"""What a file is, from its first bytes: ours (a store, a log, a checkpoint), a real Windows ESE file, or neither;
and whether the files a path names for an eseutil mode are real ESE files (``is_real_ese``), so that the command
picks the dumps of tools/eseutil.py or those of tools/esereal.py from one place.
"""

from __future__ import annotations

import os
import re
import struct
from collections import Counter

from shadowstore.errors import DiskIOError, InvalidParameterError
from shadowstore.format.checkpoint import CHECKPOINT_COPY_SIZE, CHECKPOINT_MAGIC
from shadowstore.format.dbheader import DB_MAGIC
from shadowstore.format.logfile import LOG_MAGIC
from shadowstore.io.fs import FileSystem, OsFileSystem, opened

# --- what a file is ------------------------------------------------------------------------------------------

KIND_DATABASE, KIND_LOG, KIND_CHECKPOINT = "ShadowStore database", "ShadowStore log file", "ShadowStore checkpoint"
KIND_ESE_DATABASE = "Windows ESE database"
KIND_ESE_LOG, KIND_ESE_CHECKPOINT = "Windows ESE log file", "Windows ESE checkpoint file"
KIND_UNKNOWN = "unknown"
MODE_FOR_KIND = {KIND_DATABASE: "/mh", KIND_LOG: "/ml", KIND_CHECKPOINT: "/mk"}
OWN_MAGICS = {DB_MAGIC: KIND_DATABASE, LOG_MAGIC: KIND_LOG, CHECKPOINT_MAGIC: KIND_CHECKPOINT}  # all at offset 4

# Real ESE files (research/ese.md §3.1): the magic EF CD AB 89 at offset 4 marks a database; logs and
# checkpoints have none and are told apart by le_filetype, a u32 at offset 667 (3 = log, 4 = checkpoint).
ESE_DB_MAGIC = b"\xef\xcd\xab\x89"
ESE_FILETYPE = struct.Struct("<I")
ESE_FILETYPE_OFFSET = 667
ESE_FILETYPES = {3: KIND_ESE_LOG, 4: KIND_ESE_CHECKPOINT}
HEAD_SIZE = 4096
# why more than one header: a shadow copy (at any page size, or 4096 for checkpoints) still names a file whose
# primary copy is damaged
COPY_STARTS = (0, 2048, 4096, 8192, 16384, 32768)
WIDE_HEAD_SIZE = COPY_STARTS[-1] + HEAD_SIZE


def identify(head: bytes) -> str:
    """What the first bytes of a file say it is: one of the ``KIND_*`` names (``KIND_UNKNOWN`` if none). With
    more than one header's worth of ``head``, a shadow copy's magic or file type counts too."""
    if head[4:12] in OWN_MAGICS:
        return OWN_MAGICS[head[4:12]]
    if head[4:8] == ESE_DB_MAGIC:
        return KIND_ESE_DATABASE
    for start in COPY_STARTS:
        if len(head) < start + ESE_FILETYPE_OFFSET + ESE_FILETYPE.size:
            break
        kind = ESE_FILETYPES.get(ESE_FILETYPE.unpack_from(head, start + ESE_FILETYPE_OFFSET)[0])
        if kind is not None and (start == 0 or (start == CHECKPOINT_COPY_SIZE and kind == KIND_ESE_CHECKPOINT)):
            return kind
        if start and head[start + 4 : start + 12] in OWN_MAGICS:
            return OWN_MAGICS[head[start + 4 : start + 12]]
        if start and head[start + 4 : start + 8] == ESE_DB_MAGIC:
            return KIND_ESE_DATABASE
    return KIND_UNKNOWN


# --- whose files a path names --------------------------------------------------------------------------------

ESE_KINDS = (KIND_ESE_DATABASE, KIND_ESE_LOG, KIND_ESE_CHECKPOINT)
WANTED = {  # what each mode reads, ours and real
    "mh": (KIND_DATABASE, KIND_ESE_DATABASE),
    "k": (KIND_DATABASE, KIND_ESE_DATABASE),
    "ml": (KIND_LOG, KIND_ESE_LOG),
    "mk": (KIND_CHECKPOINT, KIND_ESE_CHECKPOINT),
}
MODE_FOR_ESE_KIND = {KIND_ESE_DATABASE: "/mh", KIND_ESE_LOG: "/ml", KIND_ESE_CHECKPOINT: "/mk"}
NEITHER_HINT = (
    "check the path: 'eseutil /ml' reads log files (E00.log, edb00001.log, edb.jtx) or their folder, 'eseutil /mk' "
    "checkpoint files (E00.chk, edb.chk); reserve logs (res1.log, edbres00001.jrs) hold no log"
)
ESE_LOG_NAME = re.compile(r"[A-Za-z0-9]{3}(?:[0-9A-F]{5}|[0-9A-F]{8})?\.(?:log|jtx)")


def is_real_ese(target: str, mode: str, fs: FileSystem | None = None) -> bool:
    """True when ``target`` names real Windows ESE files for eseutil ``/mode`` (a file by its first bytes; a
    folder or ``DIR/E00`` by the log files in it, most of them real), False when our own dumps are to read it
    (ours, a missing path, a folder of nothing known: those dumps say so).

    Raises InvalidParameterError for a real ESE file of another kind than the mode reads (naming the mode that
    does) and for a file that is neither ours nor ESE where the mode reads logs or checkpoints (empty, zero-filled,
    too short, other bytes); DiskIOError when a file cannot be read.
    """
    fs = fs or OsFileSystem()
    if not fs.exists(target) or is_dir(fs, target):
        return mode == "ml" and _mostly_ese_logs(fs, target)
    head, size = _head(fs, target)
    kind = identify(head)
    wanted = WANTED.get(mode)
    if kind in ESE_KINDS and wanted is not None and kind not in wanted:
        raise InvalidParameterError(
            f"{target} is a {kind}, not a {wanted[1]}; read it with 'eseutil {MODE_FOR_ESE_KIND[kind]}'", file=target
        )
    if kind == KIND_UNKNOWN and mode in ("ml", "mk"):
        raise InvalidParameterError(
            f"{target} {_neither(head, size, wanted[0] if wanted else 'file')}",
            hint=NEITHER_HINT,
            file=target,
        )
    return kind in ESE_KINDS


def _head(fs: FileSystem, path: str) -> tuple[bytes, int]:
    try:
        with opened(fs, path) as handle:
            return handle.pread(WIDE_HEAD_SIZE, 0), handle.size()
    except OSError as exc:
        raise DiskIOError(f"cannot read {path}: {exc.strerror}", file=path) from exc


def _neither(head: bytes, size: int, wanted: str) -> str:
    """Why a file is neither ours nor a real ESE file, as the rest of a sentence after its name."""
    what = wanted.replace("ShadowStore ", "")
    start = f"is not a ShadowStore or Windows ESE {what}: it"
    if size == 0:
        return f"{start} is empty"
    if not any(head):
        extent = "all" if len(head) == size else f"the first {len(head)}"
        return f"{start} is zero-filled ({extent} of its {size} bytes): a reserve or preallocated file holds no header"
    if size < HEAD_SIZE:
        return f"{start} is {size} bytes, shorter than a {HEAD_SIZE}-byte header (truncated, or another file)"
    return (
        f"{start} has no ShadowStore magic at offset 4 (found {head[4:12]!r}) and no ESE file type at offset "
        f"{ESE_FILETYPE_OFFSET}"
    )


def _mostly_ese_logs(fs: FileSystem, target: str) -> bool:
    """Whether the log files a folder or ``DIR/E00`` names are mostly real ESE logs (``.jtx`` names always are)."""
    directory, base = (target, "") if is_dir(fs, target) else os.path.split(target)
    directory = directory or "."
    if not is_dir(fs, directory):
        return False
    names = [n for n in fs.listdir(directory) if ESE_LOG_NAME.fullmatch(n) and n.lower().startswith(base.lower())]
    kinds = Counter(
        KIND_ESE_LOG if name.lower().endswith(".jtx") else identify(_head(fs, os.path.join(directory, name))[0])
        for name in names
    )
    return kinds[KIND_ESE_LOG] > kinds[KIND_LOG]


def is_dir(fs: FileSystem, path: str) -> bool:
    try:
        fs.listdir(path)
    except OSError:
        return False
    return True
