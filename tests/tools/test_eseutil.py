"""The eseutil dump library (tools/eseutil.py) over files made by a real storage group.

Each test builds a server home through the public API, damages one file at a fixed offset the way a disk or a
user would, and checks the facts read, the copy used, and the error class, code and message (file, offset,
generation). The command-line layout is tested in tests/cli/test_eseutil_cmd.py with the same helpers.
"""

from __future__ import annotations

import os
import shutil
from typing import NamedTuple

import pytest

from shadowstore.engine.logstream import read_header
from shadowstore.errors import (
    BadLogSignatureError,
    CheckpointCorruptError,
    DatabaseCorruptedError,
    FileNotFoundError_,
    InvalidLogSequenceError,
    InvalidParameterError,
    LogFileCorruptError,
    LogGenerationMismatchError,
    MissingLogFileError,
)
from shadowstore.format.checkpoint import CHECKPOINT_COPY_SIZE
from shadowstore.format.common import LgPos
from shadowstore.format.dbheader import STATE_CLEAN_SHUTDOWN, STATE_DIRTY_SHUTDOWN
from shadowstore.format.logblock import BLOCK_HEADER, FRAGMENT_HEADER
from shadowstore.format.logfile import LOG_HEADER_SIZE, archived_log_name
from shadowstore.home import DEFAULT_SG, ServerHome
from shadowstore.io.faulty import FaultFileSystem
from shadowstore.io.fs import OsFileSystem
from shadowstore.tools.eseutil import (
    ESE_DB_MAGIC,
    KIND_CHECKPOINT,
    KIND_DATABASE,
    KIND_LOG,
    KIND_UNKNOWN,
    dump_checkpoint,
    dump_database,
    dump_logs,
    identify,
)
from tests.conftest import QUIET

PAGE_SIZE = 8192  # the default page size of ServerHome.init
HEADER_FIELD = 100  # an offset inside every header copy that its checksum covers (dbtime / log signature)
FIRST_FRAGMENT_DATA = LOG_HEADER_SIZE + BLOCK_HEADER.size + FRAGMENT_HEADER.size + 4  # inside block 0's records


class Built(NamedTuple):
    """A dismounted server home: its storage group folder, transactions committed, current log generation."""

    home: str
    sg_dir: str
    txns: int
    current_gen: int

    def path(self, name: str) -> str:
        return os.path.join(self.sg_dir, name)

    def log(self, generation: int) -> str:
        return self.path(archived_log_name("E00", generation))

    @property
    def store(self) -> str:
        return self.path("priv1.edb")

    @property
    def chk(self) -> str:
        return self.path("E00.chk")


def flip_byte(path: str, offset: int, mask: int = 0xFF) -> None:
    """XOR the byte at ``offset`` of the file with ``mask`` (never a no-op)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ mask]))


def head(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(4096)


def commit_until(home: ServerHome, generation: int) -> int:
    """Commit deterministic transactions until the log reaches ``generation``; returns how many were committed."""
    sg = home.storage_group()
    store = sg.store("Mailbox Store")
    with store.transaction() as tx:
        tx.create_table("t")
    txns = 1
    while sg.log.disk_generation < generation:
        with store.transaction() as tx:
            tx.put("t", b"k%05d" % txns, b"v" * 200)
        txns += 1
        assert txns < 5000, "the log never reached the generation"
    return txns


def build_home(path: str, generations: int = 4) -> Built:
    """A home whose logs span generations 1..``generations`` (or one more, if the dismount rolled), dismounted."""
    home = ServerHome.init(path, log_file_size=64 * 1024, policy=QUIET)
    sg = home.storage_group()
    sg.mount()
    txns = commit_until(home, generations)
    sg.dismount()
    sg_dir = os.path.join(path, DEFAULT_SG)
    current = read_header(OsFileSystem(), os.path.join(sg_dir, "E00.log")).generation
    return Built(path, sg_dir, txns, current)


@pytest.fixture
def built(tmp_path: os.PathLike[str]) -> Built:
    return build_home(os.path.join(tmp_path, "home"))


# --- /mh -----------------------------------------------------------------------------------------------------


def test_clean_store_header_reads_clean_shutdown_with_no_log_required(built: Built) -> None:
    dump = dump_database(built.store)
    assert dump.ok
    assert dump.errors == []
    assert dump.damaged == []
    assert dump.header.state == STATE_CLEAN_SHUTDOWN
    assert (dump.header.log_required_min, dump.header.log_required_max) == (0, 0)
    assert dump.header.dbtime == built.txns  # one dbtime per committed transaction
    assert dump.copy_used == 0
    assert dump.header.log_committed == built.current_gen


def test_store_read_while_mounted_is_dirty_and_requires_logs(tmp_path: os.PathLike[str]) -> None:
    home = ServerHome.init(os.path.join(tmp_path, "home"), log_file_size=64 * 1024, policy=QUIET)
    sg = home.storage_group()
    sg.mount()
    try:
        commit_until(home, 2)
        dump = dump_database(os.path.join(home.path, DEFAULT_SG, "priv1.edb"))
    finally:
        sg.dismount()
    assert dump.header.state == STATE_DIRTY_SHUTDOWN
    assert dump.header.log_required_min >= 1
    assert dump.header.log_required_max >= dump.header.log_required_min  # logs from the attach on are needed


def test_damaged_primary_header_copy_dumps_the_shadow_and_names_the_copy(built: Built) -> None:
    flip_byte(built.store, HEADER_FIELD)
    dump = dump_database(built.store)
    assert dump.header.state == STATE_CLEAN_SHUTDOWN
    assert dump.copy_used == 1
    assert [(d.copy, d.offset) for d in dump.damaged] == [(0, 0)]
    assert "checksum mismatch" in dump.damaged[0].problem
    assert not dump.ok
    assert dump.errors == []
    assert dump.warnings == [dump.damaged[0].describe(1)]


def test_damaged_shadow_header_copy_is_reported_at_its_offset(built: Built) -> None:
    flip_byte(built.store, PAGE_SIZE + HEADER_FIELD)
    dump = dump_database(built.store)
    assert dump.copy_used == 0
    assert [(d.copy, d.offset) for d in dump.damaged] == [(1, PAGE_SIZE)]
    assert f"offset {PAGE_SIZE}" in dump.warnings[0]


def test_both_header_copies_damaged_raises_naming_file_and_offsets(built: Built) -> None:
    flip_byte(built.store, HEADER_FIELD)
    flip_byte(built.store, PAGE_SIZE + HEADER_FIELD)
    with pytest.raises(DatabaseCorruptedError) as info:
        dump_database(built.store)
    assert info.value.code == -1206
    assert built.store in info.value.message
    assert "offset 0" in info.value.message
    assert f"offset {PAGE_SIZE}" in info.value.message


def test_files_of_the_wrong_kind_are_named(built: Built) -> None:
    with pytest.raises(InvalidParameterError, match="is a ShadowStore log file, not a ShadowStore database"):
        dump_database(built.path("E00.log"))
    with pytest.raises(InvalidParameterError, match="is a ShadowStore database, not a ShadowStore checkpoint"):
        dump_checkpoint(built.store)
    with pytest.raises(InvalidParameterError, match="is a ShadowStore checkpoint, not a ShadowStore log"):
        dump_logs(built.chk)
    assert identify(head(built.store)) == KIND_DATABASE
    assert identify(head(built.log(1))) == KIND_LOG
    assert identify(head(built.chk)) == KIND_CHECKPOINT
    assert identify(bytes(4096)) == KIND_UNKNOWN


def test_our_database_dump_leaves_a_real_ese_database_to_the_ese_reader(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "priv1.edb")
    with open(path, "wb") as f:
        f.write(bytes(4) + ESE_DB_MAGIC + bytes(PAGE_SIZE - 8))
    with pytest.raises(InvalidParameterError, match="Windows ESE database"):
        dump_database(path)


def test_missing_paths_raise_not_found(tmp_path: os.PathLike[str]) -> None:
    for dump in (dump_database, dump_checkpoint, dump_logs):
        with pytest.raises(FileNotFoundError_) as info:
            dump(os.path.join(tmp_path, "nothing-here.edb"))
        assert info.value.exit_code == 4


def test_dump_reads_through_the_given_file_system() -> None:
    fs = FaultFileSystem(seed=3)
    home = ServerHome.init("/srv/home", fs=fs, log_file_size=64 * 1024, policy=QUIET)
    home.storage_group().mount()
    home.storage_group().dismount()
    sg_dir = os.path.join("/srv/home", DEFAULT_SG)
    assert dump_database(os.path.join(sg_dir, "priv1.edb"), fs).header.state == STATE_CLEAN_SHUTDOWN
    assert dump_logs(sg_dir, fs).ok
    assert dump_checkpoint(os.path.join(sg_dir, "E00.chk"), fs).ok


# --- /ml -----------------------------------------------------------------------------------------------------


def test_log_folder_lists_every_generation_and_is_contiguous(built: Built) -> None:
    dump = dump_logs(built.sg_dir)
    assert dump.ok
    assert dump.errors == []
    assert dump.missing == []
    assert [log.generation for log in dump.logs] == list(range(1, built.current_gen + 1))
    assert dump.logs[-1].current
    assert dump.logs[-1].path == built.path("E00.log")
    totals = {kind: sum(log.records[kind] for log in dump.logs) for kind in ("TXN", "ATTACH", "DETACH")}
    assert totals == {"TXN": built.txns, "ATTACH": 2, "DETACH": 2}
    assert dump.checkpoint is not None
    assert dump.checkpoint.gen == built.current_gen


def test_base_name_and_single_file_targets(built: Built) -> None:
    by_base = dump_logs(os.path.join(built.sg_dir, "E00"))
    assert [log.generation for log in by_base.logs] == list(range(1, built.current_gen + 1))
    single = dump_logs(built.log(2))
    assert [log.generation for log in single.logs] == [2]
    assert single.ok


def test_missing_middle_generation_is_named_and_the_rest_still_dumped(built: Built) -> None:
    os.unlink(built.log(2))
    dump = dump_logs(built.sg_dir)
    assert dump.missing == [2]
    assert isinstance(dump.errors[0], MissingLogFileError)
    assert dump.errors[0].code == -528
    assert "E0000002.log" in dump.errors[0].message
    assert "generation 2" in dump.errors[0].message
    assert [log.generation for log in dump.logs] == [1, *range(3, built.current_gen + 1)]


def test_log_from_another_home_is_a_bad_signature(built: Built, tmp_path: os.PathLike[str]) -> None:
    other = build_home(os.path.join(tmp_path, "other"), generations=3)
    shutil.copyfile(other.log(2), built.log(2))
    dump = dump_logs(built.sg_dir)
    assert isinstance(dump.errors[0], BadLogSignatureError)
    assert dump.errors[0].code == -530
    assert built.log(2) in dump.errors[0].message
    assert [type(e) for e in dump.errors] == [BadLogSignatureError]  # the others are not blamed


def test_log_renamed_to_another_generation_is_a_generation_mismatch(built: Built) -> None:
    os.rename(built.log(1), built.path("swap.tmp"))
    os.rename(built.log(2), built.log(1))
    os.rename(built.path("swap.tmp"), built.log(2))
    dump = dump_logs(built.sg_dir)
    first = dump.errors[0]
    assert isinstance(first, LogGenerationMismatchError)
    assert first.code == -513
    assert built.log(1) in first.message
    assert "header says generation 2" in first.message


def test_log_out_of_sequence_is_an_invalid_log_sequence(built: Built) -> None:
    header = read_header(OsFileSystem(), built.log(3))
    with open(built.log(3), "r+b") as f:
        f.write(header._replace(prev_created_us=header.prev_created_us + 1).pack())
    dump = dump_logs(built.sg_dir)
    assert [type(e) for e in dump.errors] == [InvalidLogSequenceError]
    assert dump.errors[0].code == -515
    assert built.log(3) in dump.errors[0].message


def test_damaged_record_in_an_archived_log_names_file_and_offset(built: Built) -> None:
    flip_byte(built.log(2), FIRST_FRAGMENT_DATA)
    dump = dump_logs(built.sg_dir)
    first = dump.errors[0]
    assert isinstance(first, LogFileCorruptError)
    assert first.code == -501
    assert first.details["file"] == built.log(2)
    assert first.details["offset"] == LOG_HEADER_SIZE
    assert f"offset {LOG_HEADER_SIZE}" in first.message
    damaged = dump.logs[1]
    assert damaged.scan is None
    assert damaged.last_lgpos == LgPos(2, LOG_HEADER_SIZE)
    assert len(dump.logs) == built.current_gen  # the files after it are still dumped


def test_damaged_log_header_names_the_offset(built: Built) -> None:
    flip_byte(built.log(1), HEADER_FIELD)
    dump = dump_logs(built.sg_dir)
    assert isinstance(dump.errors[0], LogFileCorruptError)
    assert "log header is damaged at offset 0" in dump.errors[0].message


def test_torn_tail_in_the_current_log_is_a_note_not_an_error(built: Built) -> None:
    end = dump_logs(built.path("E00.log")).logs[0].last_lgpos
    assert end is not None
    flip_byte(built.path("E00.log"), end.offset + 5)  # a flush that never completed
    dump = dump_logs(built.sg_dir)
    assert dump.ok
    assert dump.errors == []
    assert len(dump.notes) == 1
    assert f"torn flush at offset {end.offset}" in dump.notes[0]
    assert dump.logs[-1].scan is not None
    assert dump.logs[-1].scan.torn is not None


# --- /mk -----------------------------------------------------------------------------------------------------


def test_checkpoint_file_dumps_with_both_copies_valid(built: Built) -> None:
    dump = dump_checkpoint(built.chk)
    assert dump.ok
    assert dump.damaged == []
    assert dump.copy_used == 0
    assert dump.checkpoint.checkpoint.gen == built.current_gen
    assert dump.checkpoint.signature == read_header(OsFileSystem(), built.path("E00.log")).signature


def test_damaged_primary_checkpoint_copy_dumps_the_shadow(built: Built) -> None:
    before = dump_checkpoint(built.chk).checkpoint
    flip_byte(built.chk, HEADER_FIELD)
    dump = dump_checkpoint(built.chk)
    assert dump.checkpoint == before
    assert dump.copy_used == 1
    assert [(d.copy, d.offset) for d in dump.damaged] == [(0, 0)]


def test_both_checkpoint_copies_damaged_is_checkpoint_corrupt(built: Built) -> None:
    flip_byte(built.chk, HEADER_FIELD)
    flip_byte(built.chk, CHECKPOINT_COPY_SIZE + HEADER_FIELD)
    with pytest.raises(CheckpointCorruptError) as info:
        dump_checkpoint(built.chk)
    assert info.value.code == -533
    assert built.chk in info.value.message
    assert f"offset {CHECKPOINT_COPY_SIZE}" in info.value.message
