"""``shadowstore mail import|export|list|generate|check``: the mailbox layer from the command line.

Every command works through a :class:`~shadowstore.mail.backend.MailBackend` made by :func:`_backend`, the one
place that decides whether the mail is reached in this process or through the service.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click

from shadowstore.cli.common import CliContext, byte_bars, json_option, pass_ctx, print_json, table
from shadowstore.config import DEFAULT_SG
from shadowstore.errors import ExitCode, InvalidParameterError, NotFoundError, ShadowStoreError
from shadowstore.mail.backend import DEFAULT_STORE, DirectMail, MailBackend
from shadowstore.mail.formats import (
    FORMATS,
    MBOX,
    check_folders,
    export_maildir,
    export_mbox,
    open_source,
    read_source,
)
from shadowstore.mail.generate import generate_messages
from shadowstore.mail.schema import DEFAULT_FOLDER, validate_name
from shadowstore.service.remotemail import RemoteMail

BATCH_MESSAGES = 64  # messages per add() call, and so per durable commit
BATCH_BYTES = 4 << 20  # bytes per add() call (a single larger message goes alone)
SHOWN_DIFFERENCES = 40  # lines of `mail check` output; --json has every difference
MAX_GENERATED_MAILBOXES = 9999  # mailbox i is made from seed S*10000+i, so that each can be made again alone


def _backend(ctx: CliContext) -> MailBackend:
    """The backend of every mail command: the running service when one owns the home (the mail is in stores
    it has mounted), else the home opened in this process."""
    meta = click.get_current_context().meta
    sg, store = meta.get("mail.sg"), meta.get("mail.store")
    service = ctx.service()
    if service is not None:
        return RemoteMail(service, sg, store)
    return DirectMail(ctx.open_home(), sg or DEFAULT_SG, store or DEFAULT_STORE)


def _where(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--sg`` and ``--store``: which store holds the mailboxes (the Recovery Storage Group after a restore)."""

    def remember(key: str) -> Callable[[click.Context, click.Parameter, str | None], None]:
        def keep(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
            if value is not None:
                ctx.meta[key] = value

        return keep

    f = click.option(
        "--store", expose_value=False, callback=remember("mail.store"), help=f"Store [default: {DEFAULT_STORE}]."
    )(f)
    return click.option(
        "--sg", expose_value=False, callback=remember("mail.sg"), help=f"Storage group [default: {DEFAULT_SG}]."
    )(f)


@contextmanager
def _opened(ctx: CliContext) -> Iterator[MailBackend]:
    backend = _backend(ctx)
    try:
        yield backend
    finally:
        backend.close()


@click.group("mail")
def mail_group() -> None:
    """Mailboxes in the Mailbox Store: import and export mbox and Maildir, list, generate and check mail."""


# --- import -------------------------------------------------------------------------------------------------------


@mail_group.command("import")
@_where
@click.option("--mailbox", required=True, help="Mailbox to import into (created if needed).")
@click.option("--folder", default=DEFAULT_FOLDER, show_default=True, help="Folder for the top folder's messages.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
@click.argument("path", type=click.Path())
@json_option
@pass_ctx
def import_(ctx: CliContext, mailbox: str, folder: str, quiet: bool, path: str, as_json: bool) -> int:
    """Import the mbox file or Maildir folder PATH, every message byte for byte (a Maildir++ subfolder
    becomes a folder of its own name). Messages are stored in batches, each one durable commit."""
    source = open_source(path)  # why first: bad input is refused before the store is opened
    validate_name(mailbox, "mailbox")
    validate_name(folder, "folder")
    check_folders(source, folder)
    started = time.monotonic()
    with _opened(ctx) as backend, byte_bars(enabled=not (quiet or as_json)) as bar:
        backend.create_mailbox(mailbox)
        folders = _store_all(
            backend, mailbox, read_source(source, folder), lambda done: bar("import", done, source.size)
        )
    summary = _totals(folders) | {"mailbox": mailbox, "format": source.kind, "path": path}
    # why a warning and exit 0: an empty mbox is a valid one, but an import of nothing is more often a wrong path
    empty = f"no message was found in {path}; nothing was imported into mailbox {mailbox!r}"
    warnings = [] if summary["messages"] else [empty]
    summary |= {"seconds": round(time.monotonic() - started, 3), "ignored": source.ignored, "warnings": warnings}
    if as_json:
        print_json(summary)
    elif not quiet:
        click.echo(
            f"imported {summary['messages']} message(s), {summary['bytes']:,} bytes, from {source.kind} {path} into "
            f"mailbox {mailbox!r} ({_folder_counts(folders)}) in {summary['seconds']:.1f} s"
        )
    for line in warnings + [f"not imported: {name}" for name in source.ignored if not as_json]:
        click.echo(f"warning: {line}", err=True)
    return int(ExitCode.WARNING if source.ignored else ExitCode.OK)


def _store_all(
    backend: MailBackend,
    mailbox: str,
    items: Iterable[tuple[str, bytes, dict[str, Any]]],
    progress: Callable[[int], None],
) -> dict[str, list[int]]:
    """Add ``items`` (folder, raw, props) in batches of BATCH_MESSAGES or BATCH_BYTES, one folder per batch;
    returns [messages, bytes] per folder. A failure, in storing a batch or in reading the source for it, says
    how many messages were stored before it."""
    done: dict[str, list[int]] = {}
    batch: list[tuple[bytes, dict[str, Any]]] = []
    batch_folder, batch_bytes, total = "", 0, 0

    def noted(exc: ShadowStoreError) -> ShadowStoreError:
        stored = sum(n for n, _ in done.values())
        return _noted(exc, f"in the batch from message {stored + 1}; the {stored} message(s) before it are stored")

    def read() -> Iterator[tuple[str, bytes, dict[str, Any]]]:
        # why: a source that fails to be read half way (a Maildir changed meanwhile) leaves the batches before
        # it stored, which the error must say as a failed batch does
        reading = iter(items)
        while True:
            try:
                item = next(reading)
            except StopIteration:
                return
            except ShadowStoreError as exc:
                raise noted(exc) from exc
            yield item

    def flush() -> None:
        nonlocal batch, batch_bytes
        try:
            backend.add(mailbox, batch_folder, [raw for raw, _ in batch], [props for _, props in batch])
        except ShadowStoreError as exc:
            raise noted(exc) from exc
        counts = done.setdefault(batch_folder, [0, 0])
        counts[0] += len(batch)
        counts[1] += batch_bytes
        batch, batch_bytes = [], 0

    for folder, raw, props in read():
        if batch and (folder != batch_folder or len(batch) >= BATCH_MESSAGES or batch_bytes + len(raw) > BATCH_BYTES):
            flush()
        batch_folder = folder
        batch.append((raw, props))
        batch_bytes += len(raw)
        total += len(raw)
        progress(total)
    if batch:
        flush()
    return done


def _noted(exc: ShadowStoreError, note: str) -> ShadowStoreError:
    """``exc`` with ``note`` added to its message in brackets (its class, hint and details kept)."""
    noted = type(exc)(f"{exc.message} ({note})", hint=exc.hint)
    noted.details = exc.details
    return noted


def _totals(folders: dict[str, list[int]]) -> dict[str, Any]:
    return {
        "messages": sum(n for n, _ in folders.values()),
        "bytes": sum(b for _, b in folders.values()),
        "folders": {name: {"messages": n, "bytes": b} for name, (n, b) in folders.items()},
    }


def _folder_counts(folders: dict[str, list[int]]) -> str:
    return ", ".join(f"{name}: {n}" for name, (n, _) in folders.items()) or "no messages"


# --- export -------------------------------------------------------------------------------------------------------


@mail_group.command("export")
@_where
@click.option("--mailbox", required=True, help="Mailbox to export.")
@click.option("--format", "kind", type=click.Choice(FORMATS), required=True, help="mbox file or Maildir folder.")
@click.option("--folder", help="Only this folder (mbox: needed when the mailbox has several).")
@click.option("--escape-from", is_flag=True, help="mbox: quote lines starting 'From ' instead of refusing.")
@click.argument("path", type=click.Path())
@json_option
@pass_ctx
def export(
    ctx: CliContext, mailbox: str, kind: str, folder: str | None, escape_from: bool, path: str, as_json: bool
) -> None:
    """Export a mailbox into a new mbox file or Maildir folder PATH, every message byte for byte as stored
    (a Maildir gets one Maildir++ subfolder per folder other than INBOX). Nothing existing is overwritten."""
    started = time.monotonic()
    with _opened(ctx) as backend:
        record = _find_mailbox(backend, mailbox)
        if kind == MBOX and folder is None and len(record["folders"]) > 1:
            raise InvalidParameterError(
                f"mailbox {mailbox!r} has {len(record['folders'])} folders and an mbox file holds one",
                hint=f"choose one with --folder ({', '.join(record['folders'])}), or use --format maildir",
            )
        records = backend.messages(mailbox, folder)
        if kind == MBOX:
            result = export_mbox(records, path, escape_from=escape_from)
        else:
            result = export_maildir(records, path, top_folder=folder or DEFAULT_FOLDER)
    seconds = round(time.monotonic() - started, 3)
    if as_json:
        print_json(
            {"mailbox": mailbox, "format": kind, "path": path, "messages": result.messages, "bytes": result.bytes}
            | {"folders": result.folders, "altered": result.altered, "seconds": seconds}
        )
        return
    click.echo(
        f"exported {result.messages} message(s), {result.bytes:,} bytes, of mailbox {mailbox!r} into {kind} {path} "
        f"in {seconds:.1f} s"
    )
    for altered in result.altered:
        click.echo(f"note: {altered['folder']} uid {altered['uid']} was quoted for mbox: {altered['why']}")


def _find_mailbox(backend: MailBackend, name: str) -> dict[str, Any]:
    for record in backend.mailboxes():
        if record["name"] == name:
            return record
    raise NotFoundError(
        f"there is no mailbox {name!r}",
        hint="'shadowstore mail list' lists the mailboxes; 'shadowstore mail import --mailbox NAME' creates one",
    )


# --- list ---------------------------------------------------------------------------------------------------------


@mail_group.command("list")
@_where
@click.option("--mailbox", help="List the messages of this mailbox (else: the mailboxes).")
@click.option("--folder", help="Only the messages of this folder.")
@json_option
@pass_ctx
def list_(ctx: CliContext, mailbox: str | None, folder: str | None, as_json: bool) -> None:
    """List the mailboxes (messages, bytes, folders), or the messages of one mailbox."""
    if folder is not None and mailbox is None:
        raise InvalidParameterError("--folder needs --mailbox")
    with _opened(ctx) as backend:
        if mailbox is None:
            boxes = backend.mailboxes()
            if as_json:
                print_json(boxes)
            elif not boxes:
                click.echo("No mailboxes. 'shadowstore mail import' or 'shadowstore mail generate' makes some.")
            else:
                rows = [[b["name"], str(b["messages"]), f"{b['bytes']:,}", str(len(b["folders"]))] for b in boxes]
                for line in table(["MAILBOX", "MESSAGES", "BYTES", "FOLDERS"], rows, frozenset({1, 2, 3})):
                    click.echo(line)
            return
        found = [_listed(r.folder, r.uid, r.props) for r in backend.messages(mailbox, folder, raw=False)]
    if as_json:
        print_json(found)
        return
    rows = [
        [m["folder"], str(m["uid"]), f"{m['size']:,}", _when(m), _cut(m["from"], 32), _cut(m["subject"], 60)]
        for m in found
    ]
    for line in table(["FOLDER", "UID", "SIZE", "DATE", "FROM", "SUBJECT"], rows, frozenset({1, 2})):
        click.echo(line)


def _listed(folder: str, uid: int, props: dict[str, Any]) -> dict[str, Any]:
    keep = ("size", "date", "date_ts", "from", "to", "subject", "message_id", "flags", "sha256")
    return {"folder": folder, "uid": uid} | {k: props.get(k) for k in keep}


def _when(message: dict[str, Any]) -> str:
    stamp = message.get("date_ts")
    if isinstance(stamp, int | float):
        try:
            return dt.datetime.fromtimestamp(stamp, dt.UTC).strftime("%Y-%m-%d %H:%M")
        except (OverflowError, OSError, ValueError):
            pass
    return _cut(message.get("date"), 16)


def _cut(text: object, width: int) -> str:
    value = str(text) if text else "-"
    return value if len(value) <= width else value[: width - 1] + "…"


# --- generate -----------------------------------------------------------------------------------------------------


@mail_group.command("generate")
@_where
@click.option("--mailboxes", "mailbox_count", type=click.IntRange(1, MAX_GENERATED_MAILBOXES), required=True)
@click.option("--messages", "per_mailbox", type=click.IntRange(0), required=True, help="Messages per mailbox.")
@click.option("--seed", type=click.IntRange(0), required=True, help="The same seed makes the same bytes.")
@click.option("--mailbox-prefix", default="user", show_default=True, help="Mailboxes are PREFIX01, PREFIX02, ...")
@click.option("--folder", default=DEFAULT_FOLDER, show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
@json_option
@pass_ctx
def generate(
    ctx: CliContext,
    mailbox_count: int,
    per_mailbox: int,
    seed: int,
    mailbox_prefix: str,
    folder: str,
    quiet: bool,
    as_json: bool,
) -> None:
    """Store realistic generated mail: MESSAGES messages in each of MAILBOXES mailboxes (added to what they hold
    if they exist). Mailbox i is made from seed SEED*10000+i."""
    width = max(2, len(str(mailbox_count)))
    names = [validate_name(f"{mailbox_prefix}{i:0{width}d}", "mailbox") for i in range(1, mailbox_count + 1)]
    validate_name(folder, "folder")
    started, made = time.monotonic(), {}
    with _opened(ctx) as backend, byte_bars(enabled=not (quiet or as_json)) as bar:
        for i, name in enumerate(names, start=1):
            try:
                backend.create_mailbox(name)
                address = name if re.fullmatch(r"[A-Za-z0-9._-]+", name) else f"mailbox{i}"
                raws = generate_messages(seed * 10_000 + i, per_mailbox, recipient=f"{address}@example.com")
                items = ((folder, raw, {"source": "generated"}) for raw in raws)
                made[name] = _totals(_store_all(backend, name, items, _progress(bar, name)))
            except ShadowStoreError as exc:
                done = ", ".join(f"{n} ({t['messages']})" for n, t in made.items()) or "none"
                raise _noted(exc, f"while generating {name}; mailboxes done before it: {done}") from exc
    seconds = round(time.monotonic() - started, 3)
    summary = {
        "mailboxes": {name: {"messages": t["messages"], "bytes": t["bytes"]} for name, t in made.items()},
        "messages": sum(t["messages"] for t in made.values()),
        "bytes": sum(t["bytes"] for t in made.values()),
        "seed": seed,
        "seconds": seconds,
    }
    if as_json:
        print_json(summary)
    elif not quiet:
        click.echo(
            f"generated {summary['messages']} message(s), {summary['bytes']:,} bytes, in {len(names)} mailbox(es) "
            f"{names[0]}..{names[-1]} in {seconds:.1f} s"
        )


def _progress(bar: Callable[[str, int, int | None], None], name: str) -> Callable[[int], None]:
    return lambda done: bar(name, done, None)


# --- check --------------------------------------------------------------------------------------------------------


@mail_group.command("check")
@_where
@click.option("--mailbox", required=True)
@click.option("--folder", default=DEFAULT_FOLDER, show_default=True, help="Folder the top folder was imported into.")
@click.argument("path", type=click.Path())
@json_option
@pass_ctx
def check(ctx: CliContext, mailbox: str, folder: str, path: str, as_json: bool) -> int:
    """Compare a mailbox with the mbox file or Maildir PATH byte for byte (in any order); exit 1 naming every
    message found on one side only, and every file of PATH not compared. An mbox is compared with FOLDER; a
    Maildir with every folder."""
    source = open_source(path)
    check_folders(source, folder)
    with _opened(ctx) as backend:
        record = _find_mailbox(backend, mailbox)
        # why a missing folder is an empty one here: an import of an empty mbox makes no folder, and a check of
        # it must say "ok"; with messages in the source, each is named as missing, and the note says why
        missing = source.kind == MBOX and folder not in record["folders"]
        notes = [f"mailbox {mailbox!r} has no folder {folder!r} (it has: {', '.join(record['folders']) or 'none'})"]
        stored = (
            (r.folder, f"{r.folder} uid {r.uid}", r.raw)
            for r in ([] if missing else backend.messages(mailbox, folder if source.kind == MBOX else None))
        )
        sourced = (
            (name, _source_label(path, name, k, props), raw)
            for k, (name, raw, props) in enumerate(read_source(source, folder), start=1)
        )
        matched, differences = compare(stored, sourced)
    notes = notes if missing and differences else []
    # why files not compared make the check fail: they are in PATH and not (as far as it can tell) in the mailbox
    ok = not differences and not source.ignored
    if as_json:
        print_json(
            {"ok": ok, "matched": matched, "differences": [vars(d) for d in differences]}
            | {"ignored": source.ignored, "notes": notes}
        )
    elif ok:
        click.echo(f"ok: the {matched} message(s) of {path} are in mailbox {mailbox!r}, byte for byte, and no others")
    else:
        unread = f"; {len(source.ignored)} file(s) of {path} not compared" if source.ignored else ""
        click.echo(f"{len(differences)} difference(s); {matched} message(s) match byte for byte{unread}")
        for d in differences[:SHOWN_DIFFERENCES]:
            click.echo(f"  only in the {d.side}: {d.label} ({d.size:,} bytes, sha256 {d.sha256[:16]})")
        if len(differences) > SHOWN_DIFFERENCES:
            click.echo(f"  and {len(differences) - SHOWN_DIFFERENCES} more (--json lists them all)")
        for note in notes:
            click.echo(f"  note: {note}")
    if not as_json:
        for name in source.ignored:
            click.echo(f"warning: not compared: {name}", err=True)
    return int(ExitCode.OK if ok else ExitCode.WARNING)


def _source_label(path: str, folder: str, k: int, props: dict[str, Any]) -> str:
    kept = props.get("maildir")
    if isinstance(kept, dict):
        return f"{folder}: {kept.get('subdir')}/{kept.get('name')}"
    return f"{path} message {k}"


# --- comparing (mail check) ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """A message found on one side only: ``side`` is "store" or "source"; ``label`` says where it is."""

    side: str
    folder: str
    label: str
    size: int
    sha256: str


def compare(
    stored: Iterable[tuple[str, str, bytes]], source: Iterable[tuple[str, str, bytes]]
) -> tuple[int, list[Difference]]:
    """Match the (folder, label, raw) messages of the store and of a source by the SHA-256 of their bytes, folder
    by folder, in any order (a Maildir has none); returns how many matched and the messages left on either side.
    Pure: what ``mail check`` prints is computed here, and tests call it without a store."""
    waiting: dict[tuple[str, bytes], list[tuple[str, int]]] = {}
    for folder, label, raw in stored:
        waiting.setdefault((folder, hashlib.sha256(raw).digest()), []).append((label, len(raw)))
    matched, only_source = 0, []
    for folder, label, raw in source:
        digest = hashlib.sha256(raw).digest()
        if waiting.get((folder, digest)):
            waiting[(folder, digest)].pop(0)
            matched += 1
        else:
            only_source.append(Difference("source", folder, label, len(raw), digest.hex()))
    only_store = [
        Difference("store", folder, label, size, digest.hex())
        for (folder, digest), left in waiting.items()
        for label, size in left
    ]
    return matched, only_store + only_source


def register(cli: click.Group) -> None:
    cli.add_command(mail_group)
