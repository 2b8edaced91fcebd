"""mbox files and Maildir folders: read into (raw bytes, properties) items, and written back byte for byte.

"The message" is what the stdlib reader (:mod:`mailbox`) gives: for an mbox, the bytes between a From_ line and
the blank line before the next (``mbox.get_bytes``); for a Maildir, a file (``Maildir.get_bytes``). They are
stored unchanged whatever they hold, and the exporters write them so that the reader gives the same bytes back.
Both formats are written here: the stdlib mbox writer quotes "From " lines and adds line breaks, and its Maildir
writer renames files (losing flags). An mbox cannot hold two kinds of message exactly, one with a line starting
"From " (a reader splits it there) and, except as the file's last, one without a final line break: an mbox
export refuses them, naming each, or quotes them when asked (``escape_from``) and says so.

Exports never overwrite: the target must be new or empty (an empty file or folder, never a link, FIFO or device,
which a rename would replace); an mbox goes through a temporary file beside it
(fsync, rename, fsync of the folder), a Maildir is built in a temporary folder beside it and renamed into place
once every file and folder is synced, so a failure leaves nothing under the target's name.
"""

from __future__ import annotations

import mailbox
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from shadowstore.errors import InvalidParameterError, NotFoundError
from shadowstore.io.fs import FileHandle, FileSystem, OsFileSystem, read_file
from shadowstore.io.replace import replace_durably, temporary_name
from shadowstore.mail.mailpaths import check_target, is_folder, os_errors, special_file
from shadowstore.mail.schema import DEFAULT_FOLDER, MessageRecord, validate_name

MBOX, MAILDIR = "mbox", "maildir"
FORMATS = (MBOX, MAILDIR)
Item = tuple[bytes, dict[str, Any]]


@dataclass
class SourceFolder:
    """One folder of a source: an mbox file, a Maildir, or a Maildir++ subfolder (``name`` set)."""

    name: str | None  # None: the source's top folder, imported into the folder the caller chooses
    path: str
    size: int  # bytes of its message files, for progress


@dataclass
class Source:
    """An mbox file or Maildir folder found at ``path``, and what in it the reader will not see."""

    kind: str
    path: str
    folders: list[SourceFolder]
    ignored: list[str] = field(default_factory=list)  # named so that nothing is skipped silently

    @property
    def size(self) -> int:
        return sum(f.size for f in self.folders)


@dataclass
class ExportResult:
    path: str
    kind: str
    messages: int = 0
    bytes: int = 0
    folders: list[str] = field(default_factory=list)
    altered: list[dict[str, Any]] = field(default_factory=list)  # messages quoted to fit an mbox (escape_from)


# --- reading ------------------------------------------------------------------------------------------------------


def open_source(path: str, fs: FileSystem | None = None) -> Source:
    """What ``path`` is: an mbox file (empty, or starting with a "From " line) or a Maildir (a folder with
    cur/ and new/, plus its Maildir++ subfolders). Raises NotFoundError when it does not exist and
    InvalidParameterError, with a hint, when it is neither."""
    fs = fs or OsFileSystem()
    with os_errors(path, "reading"):
        try:
            names = fs.listdir(path)
        except FileNotFoundError:
            raise NotFoundError(f"{path} does not exist", hint="name an mbox file or a Maildir folder") from None
        except NotADirectoryError:
            return _mbox_source(fs, path)
        if "cur" not in names or "new" not in names:
            raise InvalidParameterError(
                f"{path} is a folder but not a Maildir: it has no cur/ and new/ folders",
                hint="name a Maildir folder (holding cur/, new/ and tmp/) or an mbox file",
            )
        return _maildir_source(fs, path, names)


def read_source(source: Source, top_folder: str = DEFAULT_FOLDER) -> Iterator[tuple[str, bytes, dict[str, Any]]]:
    """(folder, raw, properties) of every message of ``source``, folder by folder, in the source's order; the
    top folder's messages go to ``top_folder``, a Maildir++ subfolder's to its own name."""
    for folder in source.folders:
        name = folder.name or top_folder
        with os_errors(folder.path, "reading"):
            items = read_mbox(folder.path) if source.kind == MBOX else read_maildir(folder.path)
            for raw, props in items:
                yield name, raw, props


def check_folders(source: Source, top_folder: str = DEFAULT_FOLDER) -> None:
    """Refuse a source with a Maildir++ subfolder named as the folder its top folder goes to: the two folders'
    messages would be stored in one, and no export could give them back apart. Raises InvalidParameterError
    saying how to import it (before anything is stored)."""
    for folder in source.folders:
        if folder.name == top_folder:
            raise InvalidParameterError(
                f"{source.path} has a Maildir++ subfolder .{top_folder}, and its top folder's messages go to folder "
                f"{top_folder!r} too: the two folders would be merged into one",
                hint=f"choose another folder for the top folder's messages with --folder NAME (the subfolder's go "
                f"to {top_folder!r})",
            )


def read_mbox(path: str) -> Iterator[Item]:
    """The messages of an mbox file in file order, each as the reader's bytes and ``mbox_from``: its From_ line
    (without the "\\n", as latin-1 text so that any byte survives JSON)."""
    box = mailbox.mbox(path, factory=None, create=False)
    try:
        for key in box.iterkeys():
            from_line, _, raw = box.get_bytes(key, from_=True).partition(b"\n")
            yield raw, {"source": MBOX, "mbox_from": from_line.decode("latin-1")}
    finally:
        box.close()  # nothing is pending, so this writes nothing


def read_maildir(path: str, fs: FileSystem | None = None) -> Iterator[Item]:
    """The messages of one Maildir (not its subfolders) in file-name order (unique names start with the delivery
    time), each with ``maildir`` (subdir and file name), ``flags`` and ``received`` (the file's mtime). Then the
    files of new/ and cur/ that the stdlib reader does not give because their unique name (the part before ':')
    is another file's: each is a message too, and leaving it out would drop it."""
    fs = fs or OsFileSystem()
    box = mailbox.Maildir(path, factory=None, create=False)
    given: set[str] = set()
    for key in sorted(box.iterkeys()):
        try:
            where = _maildir_location(box, key)
            raw = box.get_bytes(key)
        except (KeyError, FileNotFoundError):
            # why an error and not a skip: the file was listed as a message, so leaving it out would drop it
            # silently; why not KeyError: that is what the reader raises for it, which is no bug of ours
            raise _removed(key, path) from None
        given.add(where)
        yield raw, _maildir_props(fs, path, where, box.colon)
    for where in _unique_name_twins(fs, path, given):
        try:
            raw = read_file(fs, os.path.join(path, where))
        except FileNotFoundError:
            raise _removed(where, path) from None
        yield raw, _maildir_props(fs, path, where, box.colon)


def _maildir_props(fs: FileSystem, path: str, where: str, colon: str) -> dict[str, Any]:
    subdir, name = os.path.split(where)
    info = name.split(colon, 1)[1] if colon in name else ""
    props: dict[str, Any] = {"source": MAILDIR, "maildir": {"subdir": subdir, "name": name}}
    props["flags"] = info[2:] if info.startswith("2,") else ""
    stat = fs.stat(os.path.join(path, where))
    if stat is not None:
        props["received"] = stat.mtime_ns / 1e9
    return props


def _unique_name_twins(fs: FileSystem, path: str, given: set[str]) -> list[str]:
    """subdir/name of the files in new/ and cur/ of ``path`` that are not folders and not in ``given``."""
    found = (os.path.join(sub, n) for sub in ("new", "cur") for n in sorted(fs.listdir(os.path.join(path, sub))))
    return [where for where in found if where not in given and not is_folder(fs, os.path.join(path, where))]


def _refuse_special_files(fs: FileSystem, folder: str) -> None:
    """InvalidParameterError for a FIFO, socket or device among the files of ``folder``: reading one as a message
    would wait for a writer forever, or read a device."""
    for name in fs.listdir(folder):
        kind = special_file(fs, os.path.join(folder, name), follow=True)
        if kind is not None and kind != "a symbolic link":
            raise InvalidParameterError(
                f"{os.path.join(folder, name)} is {kind}, not a message file",
                hint="move it out of the Maildir (or import a copy without it); nothing was imported",
            )


def _removed(name: str, path: str) -> NotFoundError:
    return NotFoundError(
        f"the message file {name} (in new/ or cur/ of {path}) was removed or moved away while it was being imported",
        hint="a mail program changed the Maildir meanwhile: stop it (or import a copy of the Maildir), then import "
        "again into a new mailbox, or compare with 'shadowstore mail check'",
    )


def _maildir_location(box: mailbox.Maildir, key: str) -> str:
    # why a private method: Python 3.11 has no public way to learn a message's subdir and info without parsing
    # it (Maildir.get_info arrives in 3.13); _lookup is what get_bytes itself uses
    return str(box._lookup(key))  # type: ignore[attr-defined]


def _maildir_locations(box: mailbox.Maildir) -> Iterator[str]:
    """subdir/name of each message of ``box``; one whose file went away since it was listed is no message."""
    for key in box.iterkeys():
        with suppress(KeyError):
            yield _maildir_location(box, key)


def _mbox_source(fs: FileSystem, path: str) -> Source:
    special = special_file(fs, path, follow=True)
    # why: opening a FIFO waits for a writer (a device, /dev/null, reads: an empty mbox)
    if special in ("a FIFO (named pipe)", "a socket"):
        raise InvalidParameterError(
            f"{path} is {special}, not an mbox file", hint="name an mbox file (a regular file) or a Maildir folder"
        )
    handle = fs.open(path, readonly=True)
    try:
        size, start = handle.size(), handle.pread(5, 0)
    finally:
        handle.close()
    if size and start != b"From ":
        raise InvalidParameterError(
            f"{path} is not an mbox file: it does not start with a 'From ' line (it starts with {start!r})",
            hint="name an mbox file or a Maildir folder; a single message file can be put in a Maildir's new/",
        )
    return Source(MBOX, path, [SourceFolder(None, path, size)])


def _maildir_source(fs: FileSystem, path: str, names: list[str]) -> Source:
    """The top Maildir and its Maildir++ subfolders (``.<name>`` holding cur/ and new/), each with the bytes of
    its messages (a file whose unique name is another's included: read_maildir gives it too); what is no
    Maildir++ subfolder is named in ``ignored``."""
    source = Source(MAILDIR, path, [])
    for name in [None, *sorted(n[1:] for n in names if n.startswith(".") and len(n) > 1)]:
        folder = path if name is None else os.path.join(path, "." + name)
        if name is not None and not is_folder(fs, folder):
            continue  # a dot file (.uidvalidity, ...): not mail
        if name is not None and not {"cur", "new"} <= set(fs.listdir(folder)):
            source.ignored.append(f"{folder} (not a Maildir++ subfolder: no cur/ and new/)")
            continue
        for sub in ("new", "cur"):
            _refuse_special_files(fs, os.path.join(folder, sub))
        box = mailbox.Maildir(folder, factory=None, create=False)
        messages = [*_maildir_locations(box)]
        messages += _unique_name_twins(fs, folder, set(messages))
        size = 0
        for where in messages:
            stat = fs.stat(os.path.join(folder, where))
            size += stat.size if stat else 0
        source.folders.append(SourceFolder(None if name is None else validate_name(name, "folder"), folder, size))
    return source


# --- mbox ---------------------------------------------------------------------------------------------------------


def mbox_problem(raw: bytes, *, last: bool) -> str | None:
    """Why ``raw`` cannot be written into an mbox so that the reader gives it back unchanged, or None."""
    if raw.startswith(b"From ") or b"\nFrom " in raw:
        return "a line starts with 'From ' (an mbox reader splits the message there)"
    if raw and not raw.endswith(b"\n") and not last:
        return "it does not end with a line break and is not the last message"
    return None


def quote_for_mbox(raw: bytes, *, last: bool) -> bytes:
    """``raw`` changed as the stdlib mbox writer would change it: "From " at a line start quoted as ">From ",
    and a line break added when it has none and is not the last message."""
    out = raw.replace(b"\nFrom ", b"\n>From ")
    if out.startswith(b"From "):
        out = b">" + out
    if out and not out.endswith(b"\n") and not last:
        out += b"\n"
    return out


def mbox_from_line(record: MessageRecord) -> bytes:
    """The From_ line for ``record`` (without "\\n"): the one it was imported with, else one made from its Date
    header (or the time it was stored), as ``mailbox`` makes one."""
    given = record.props.get("mbox_from")
    if isinstance(given, str) and given.startswith("From ") and "\n" not in given:
        try:
            return given.encode("latin-1")
        except UnicodeEncodeError:
            pass
    when = record.props.get("date_ts") or record.props.get("received") or 0
    try:
        stamp = time.asctime(time.gmtime(float(when)))
    except (TypeError, ValueError, OverflowError, OSError):
        stamp = time.asctime(time.gmtime(0))
    return b"From MAILER-DAEMON " + stamp.encode()


def export_mbox(
    records: Iterable[MessageRecord], path: str, *, escape_from: bool = False, fs: FileSystem | None = None
) -> ExportResult:
    """Write ``records`` into a new mbox file ``path`` (which must not exist, or be empty).

    Raises InvalidParameterError, writing nothing, when a message cannot be held byte for byte
    (:func:`mbox_problem`) unless ``escape_from``, which quotes such messages and lists them in ``altered``.
    Durable when it returns (temporary file, fsync, rename, fsync of the folder)."""
    fs, path = fs or OsFileSystem(), os.path.abspath(path)
    with os_errors(path, "writing"):  # why: a name too long, a folder not searchable, ... are no bugs
        check_target(fs, path, folder=False)
    result = ExportResult(path, MBOX)
    refused: list[str] = []

    def fill(handle: FileHandle) -> None:
        offset = 0
        for record, last in _with_last(records):
            raw = record.raw
            problem = mbox_problem(raw, last=last)
            if problem and not escape_from:
                refused.append(f"{record.folder} uid {record.uid} ({problem})")
            if refused:
                continue  # why go on: the error names every message that cannot be exported
            if problem:
                raw = quote_for_mbox(raw, last=last)
                result.altered.append({"folder": record.folder, "uid": record.uid, "why": problem})
            chunk = mbox_from_line(record) + b"\n" + raw + (b"\n" if not raw or raw.endswith(b"\n") else b"")
            handle.pwrite(chunk, offset)
            offset += len(chunk)
            _count(result, record)
        if refused:
            raise InvalidParameterError(
                f"{len(refused)} message(s) cannot be written into an mbox byte for byte; nothing was written: "
                + "; ".join(refused[:10])
                + (f"; and {len(refused) - 10} more" if len(refused) > 10 else ""),
                hint="export with --format maildir, which keeps every message exactly, or pass --escape-from to "
                "quote those messages as mbox writers do (they then differ from the stored ones)",
            )
        check_target(fs, path, folder=False)  # why again: nothing may have appeared there meanwhile

    with os_errors(path, "writing"):
        replace_durably(fs, path, fill)
    return result


def _with_last(records: Iterable[MessageRecord]) -> Iterator[tuple[MessageRecord, bool]]:
    previous: MessageRecord | None = None
    for record in records:
        if previous is not None:
            yield previous, False
        previous = record
    if previous is not None:
        yield previous, True


def _count(result: ExportResult, record: MessageRecord) -> None:
    result.messages += 1
    result.bytes += len(record.raw)
    if record.folder not in result.folders:
        result.folders.append(record.folder)


# --- Maildir ------------------------------------------------------------------------------------------------------


def export_maildir(
    records: Iterable[MessageRecord], path: str, *, top_folder: str = DEFAULT_FOLDER, fs: FileSystem | None = None
) -> ExportResult:
    """Write ``records`` into a new Maildir ``path`` (which must not exist, or be an empty folder): messages of
    ``top_folder`` into it, those of any other folder into a Maildir++ subfolder ``.<folder>``. Each message
    keeps the subdir and file name it was imported with (when they are valid and unique), so its flags too.
    Built in a temporary folder beside ``path`` and renamed into place when every file and folder is synced;
    on failure that folder is removed and ``path`` is untouched."""
    fs, path = fs or OsFileSystem(), os.path.abspath(path)  # why abspath: "out/" must not put staging inside it
    with os_errors(path, "writing"):  # why: a name too long, a folder not searchable, ... are no bugs
        check_target(fs, path, folder=True)
    staging = temporary_name(path)
    writer = _MaildirWriter(fs, staging)
    with os_errors(path, "writing"):
        try:
            writer.folder(None)
            result = ExportResult(path, MAILDIR)
            for record in records:
                writer.write(None if record.folder == top_folder else record.folder, record)
                _count(result, record)
            writer.sync()
            check_target(fs, path, folder=True)
            fs.rename(staging, path)
        except BaseException:
            writer.remove()
            raise
        fs.fsync_dir(os.path.dirname(path))
    return result


class _MaildirWriter:
    """Builds a Maildir (and its Maildir++ subfolders) under ``root``, remembering what it made."""

    def __init__(self, fs: FileSystem, root: str) -> None:
        self.fs = fs
        self.root = root
        self.made: list[str] = []  # files and folders, in the order made
        self.keys: dict[str | None, set[str]] = {}  # unique names used, per folder

    def folder(self, name: str | None) -> str:
        path = self.root if name is None else os.path.join(self.root, "." + name)
        if name not in self.keys:
            self.keys[name] = set()
            for sub in ("", "tmp", "new", "cur"):
                self.fs.makedirs(os.path.join(path, sub))
                self.made.append(os.path.join(path, sub))
            if name is not None:  # the Maildir++ mark, as mailbox.Maildir.add_folder makes it
                self._file(os.path.join(path, "maildirfolder"), b"")
        return path

    def write(self, folder: str | None, record: MessageRecord) -> None:
        path = self.folder(folder)
        subdir, name = self._name(record, self.keys[folder])
        self._file(os.path.join(path, subdir, name), record.raw)

    def _name(self, record: MessageRecord, used: set[str]) -> tuple[str, str]:
        """The subdir and file name the message was imported with, else ``new/<time>.U<uid>.shadowstore``;
        a unique name already used in this folder gets a suffix (the reader would see one message)."""
        kept = record.props.get("maildir")
        subdir, name = "new", ""
        if isinstance(kept, dict) and kept.get("subdir") in ("new", "cur") and _valid_file_name(kept.get("name")):
            subdir, name = kept["subdir"], kept["name"]
        if not name:
            stamp = record.props.get("date_ts") or record.props.get("received") or 0
            name = f"{int(stamp) if isinstance(stamp, int | float) else 0}.U{record.uid}.shadowstore"
        key, colon, info = name.partition(":")
        unique, n = key, 1
        while unique in used:
            n += 1
            unique = f"{key}-{n}"
        used.add(unique)
        return subdir, unique + colon + info

    def _file(self, path: str, data: bytes) -> None:
        handle = self.fs.open(path, exclusive=True)
        self.made.append(path)
        try:
            if data:
                handle.pwrite(data, 0)
            handle.fsync()
        finally:
            handle.close()

    def sync(self) -> None:
        for name in self.keys:
            path = self.root if name is None else os.path.join(self.root, "." + name)
            for sub in ("new", "cur", ""):
                self.fs.fsync_dir(os.path.join(path, sub))

    def remove(self) -> None:
        for path in reversed(self.made):
            try:
                self.fs.unlink(path)
            except OSError:
                with suppress(OSError):  # a folder (or already gone): best effort, the error in flight matters
                    self.fs.rmdir(path)


def _valid_file_name(name: object) -> bool:
    """Whether ``name`` can be a file in a Maildir's cur/ or new/. A name starting with '.' can: the stdlib reader
    takes such a file as a message (so the import did), and renaming it would lose its subdir and flags."""
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\0" in name:
        return False
    with suppress(UnicodeError):  # a name with lone surrogates that no file system name can carry
        return len(os.fsencode(name)) <= 255
    return False
