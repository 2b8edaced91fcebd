"""Coverage-guided fuzzing (atheris, libFuzzer) of every parser of on-disk and wire formats, ours and real ESE.

    python -m tests.format.atheris_targets TARGET [libFuzzer flags] [CORPUS_DIR ...]

Each target feeds the bytes libFuzzer makes into one parser (or, for the ``*_file`` targets, writes them to a
file and runs the eseutil dump that reads such a file, detection by content included). A parser may refuse
bytes only with our own named errors: a ShadowStoreError, or the format modules' named ValueError subclasses
that the engine turns into ShadowStoreErrors. Anything else (struct.error, IndexError, a bare ValueError,
UnicodeDecodeError, RecursionError...) escapes, and libFuzzer reports it as a crash with the input that made it.
tests/format/test_atheris_fuzz.py runs every target for a bounded number of inputs from seeds it writes.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Callable

import atheris

with atheris.instrument_imports(include=["shadowstore"]):
    from shadowstore.backup.manifest import parse_manifest
    from shadowstore.errors import ShadowStoreError
    from shadowstore.format.catalog import CatalogError, unpack_catalog
    from shadowstore.format.checkpoint import CheckpointCopyError, unpack_checkpoint_copy
    from shadowstore.format.dbheader import DbHeaderError, unpack_db_header
    from shadowstore.format.esechk import read_checkpoint
    from shadowstore.format.esedb import read_db_header
    from shadowstore.format.eselog import LOG_HEADER_SIZE, read_log_header
    from shadowstore.format.esenames import parse_log_name
    from shadowstore.format.esetypes import AttachListError
    from shadowstore.format.logblock import unpack_block_header
    from shadowstore.format.logfile import LogHeaderError, unpack_log_header
    from shadowstore.format.logrecord import RecordError, iter_ops, unpack_attach, unpack_detach
    from shadowstore.format.page import PageError, unpack_branch, unpack_leaf, verify_page
    from shadowstore.service.wire import parse_messages
    from shadowstore.tools.esekind import is_real_ese
    from shadowstore.tools.esereal import dump_ese_checkpoint, dump_ese_database, dump_ese_logs
    from shadowstore.tools.eseutil import dump_checkpoint, dump_database, dump_logs

OURS = (
    ShadowStoreError,
    CatalogError,
    CheckpointCopyError,
    DbHeaderError,
    AttachListError,
    LogHeaderError,
    RecordError,
    PageError,
)
SCRATCH = tempfile.mkdtemp(prefix="ss-atheris-")


def _page(data: bytes) -> None:
    header = verify_page(data, 0) if len(data) >= 64 else None
    if header is not None:
        unpack_leaf(data, header)
        unpack_branch(data, header)


def _records(data: bytes) -> None:
    list(iter_ops(data))
    unpack_attach(data)
    unpack_detach(data)


def _in_file(name: str, *dumps: Callable[[str], object]) -> Callable[[bytes], None]:
    """A target that writes the bytes to ``name`` in a scratch folder and runs each dump on it (each alone: one
    refusing does not stop the next)."""

    def target(data: bytes) -> None:
        path = os.path.join(SCRATCH, name)
        with open(path, "wb") as f:
            f.write(data)
        for dump in dumps:
            with contextlib.suppress(*OURS):
                dump(path)

    return target


def _log_folder(data: bytes) -> None:
    folder = os.path.join(SCRATCH, "logs")
    os.makedirs(folder, exist_ok=True)
    half = len(data) // 2
    for name, part in (("edb00001.log", data[:half]), ("edb.log", data[half:])):
        with open(os.path.join(folder, name), "wb") as f:
            f.write(part)
    for dump in (dump_ese_logs, dump_logs, lambda p: is_real_ese(p, "ml")):
        with contextlib.suppress(*OURS):
            dump(folder)


TARGETS: dict[str, Callable[[bytes], object]] = {
    "ese_db_header": lambda data: read_db_header(data, "fuzz.edb"),
    "ese_log_header": lambda data: read_log_header(data[:LOG_HEADER_SIZE], "fuzz.log", len(data)),
    "ese_checkpoint": lambda data: read_checkpoint(data, "fuzz.chk"),
    "ese_log_name": lambda data: parse_log_name(data.decode("utf-8", "replace")),
    "db_header": unpack_db_header,
    "log_header": unpack_log_header,
    "checkpoint": unpack_checkpoint_copy,
    "catalog": unpack_catalog,
    "page": _page,
    "log_block": lambda data: unpack_block_header(data, 0),
    "log_records": _records,
    "manifest": lambda data: parse_manifest(data, "fuzz manifest"),
    "mail_frames": parse_messages,
    "database_file": _in_file("fuzz.edb", dump_database, dump_ese_database, lambda p: is_real_ese(p, "mh")),
    "checkpoint_file": _in_file("E00.chk", dump_checkpoint, dump_ese_checkpoint, lambda p: is_real_ese(p, "mk")),
    "log_folder": _log_folder,
}


def main() -> None:
    name = sys.argv[1]
    target = TARGETS[name]

    def one(data: bytes) -> None:
        with contextlib.suppress(*OURS):
            target(data)

    atheris.Setup([sys.argv[0], *sys.argv[2:]], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
