"""The engine's backup session: kinds, ranges, truncation, stamping, refusals, and that nothing can wedge it."""

from __future__ import annotations

import os

import pytest

from shadowstore.engine.backupslot import abort_request_path
from shadowstore.engine.logstream import LogSet
from shadowstore.errors import (
    BackupAbortedError,
    BackupInProgressError,
    InvalidBackupError,
    InvalidBackupSequenceError,
    LogReadVerifyFailureError,
    MissingFileToBackupError,
    MissingFullBackupError,
    NoBackupError,
    ReadVerifyFailureError,
)
from shadowstore.format.logfile import archived_log_name
from shadowstore.format.page import verify_page
from shadowstore.home import ServerHome
from shadowstore.io.blockread import owned
from shadowstore.io.faulty import FaultFileSystem
from tests.conftest import fault_home


def mounted(seed: int = 51, **kw: object) -> tuple[FaultFileSystem, ServerHome]:
    fs = FaultFileSystem(seed=seed)
    home = fault_home(fs, **kw)
    sg = home.storage_group()
    sg.mount()
    with sg.store("Mailbox Store").transaction() as tx:
        tx.create_table("t")
    return fs, home


def fill(home: ServerHome, count: int, tag: bytes = b"k") -> None:
    sg = home.storage_group()
    for i in range(count):
        with sg.store("Mailbox Store").transaction() as tx:
            tx.put("t", tag + b"%05d" % i, b"v" * 200)


def generations(fs: FaultFileSystem, home: ServerHome) -> list[int]:
    sg = home.storage_group()
    return sorted(LogSet.scan(fs, sg.config.log_dir, "E00").archived)


def run_backup(home: ServerHome, kind: str) -> tuple[dict[str, bytes], dict[int, bytes], object]:
    """A whole backup through the session API; returns (database copies, logs, completion report)."""
    sg = home.storage_group()
    with sg.begin_backup(kind, owner="test") as session:
        copies = {}
        if kind in ("full", "copy"):
            for store in session.databases():
                with session.open_database(store) as copy:
                    copies[store.name] = b"".join(owned(copy.chunks()))
        logs = session.prepare_logs()
        data = {gen: session.read_log(gen) for gen in logs.copy}
        report = session.complete()
    return copies, data, report


def ids(home: ServerHome) -> list[int]:
    return [e.event_id for e in home.events.memory]


def test_full_backup_copies_verified_pages_and_logs_truncates_and_stamps() -> None:
    fs, home = mounted()
    fill(home, 300)
    sg = home.storage_group()
    sg.checkpoint()
    fill(home, 100, b"late")
    before = generations(fs, home)
    copies, logs, report = run_backup(home, "full")
    store = sg.store("Mailbox Store")
    copy = copies["Mailbox Store"]
    page_size = store.page_size
    header = store.header
    assert header is not None
    assert len(copy) >= 3 * page_size
    for pgno in range(2, len(copy) // page_size):
        page = copy[pgno * page_size : (pgno + 1) * page_size]
        if any(page):
            verify_page(page, pgno)  # raises if a copied page is damaged
    assert min(logs) == store.header.full_prev.gen_low  # type: ignore[union-attr]
    assert max(logs) == header.full_prev.gen_high == sg.log.disk_generation - 1
    assert report.truncated == [g for g in before if g < sg.checkpoint_position.gen]  # type: ignore[attr-defined]
    assert all(g not in generations(fs, home) for g in report.truncated)  # type: ignore[attr-defined]
    assert header.inc_prev.is_empty
    assert header.diff_prev.is_empty
    assert sg.last_full_backup is not None
    assert {200, 210, 220, 221, 223, 224, 213, 202} <= set(ids(home))
    assert sg.backup_session is None


def test_incremental_copies_logs_since_the_last_backup_and_differential_does_not_truncate() -> None:
    fs, home = mounted()
    fill(home, 200)
    run_backup(home, "full")
    sg = home.storage_group()
    full_high = sg.store("Mailbox Store").header.full_prev.gen_high  # type: ignore[union-attr]
    fill(home, 200, b"inc")
    _copies, logs, _report = run_backup(home, "incremental")
    assert min(logs) == full_high + 1
    inc = sg.store("Mailbox Store").header.inc_prev  # type: ignore[union-attr]
    assert (inc.gen_low, inc.gen_high) == (min(logs), max(logs))
    fill(home, 100, b"diff")
    on_disk = generations(fs, home)
    _copies, logs, report = run_backup(home, "differential")
    assert min(logs) == full_high + 1, "a differential holds everything since the last full backup"
    assert report.truncated == []  # type: ignore[attr-defined]
    assert set(on_disk) <= set(generations(fs, home))
    header = sg.store("Mailbox Store").header
    assert header is not None
    assert not header.diff_prev.is_empty
    assert header.inc_prev == inc


def test_a_second_begin_gets_505_naming_the_owner_start_and_lease() -> None:
    _fs, home = mounted()
    sg = home.storage_group()
    session = sg.begin_backup("full", owner="backup program on host A", lease_seconds=30)
    with pytest.raises(BackupInProgressError) as info:
        sg.begin_backup("copy", owner="someone else")
    message = str(info.value)
    assert info.value.code == -505
    assert "owner 'backup program on host A'" in message
    assert "full backup, started 20" in message
    assert "lease expires 20" in message
    session.abort("test over")
    sg.begin_backup("copy", owner="someone else").abort("done")


def test_incremental_needs_a_full_backup_and_no_circular_logging() -> None:
    _fs, home = mounted()
    with pytest.raises(MissingFullBackupError) as info:
        home.storage_group().begin_backup("incremental", owner="t")
    assert info.value.code == -560
    assert "Mailbox Store" in str(info.value)
    assert 206 in ids(home)
    _fs2, circular = mounted(seed=52, circular_logging=True)
    with pytest.raises(InvalidBackupError) as info2:
        circular.storage_group().begin_backup("differential", owner="t")
    assert info2.value.code == -526
    assert circular.storage_group().backup_session is None


def test_missing_log_fails_incremental_with_569_and_leaves_nothing_behind() -> None:
    fs, home = mounted()
    fill(home, 100)
    run_backup(home, "full")
    fill(home, 400, b"more")
    sg = home.storage_group()
    needed = sg.store("Mailbox Store").header.full_prev.gen_high + 1  # type: ignore[union-attr]
    fs.unlink(os.path.join(sg.config.log_dir, archived_log_name("E00", needed)))
    with pytest.raises(MissingFileToBackupError) as info:
        run_backup(home, "incremental")
    assert info.value.code == -569
    assert f"(generation {needed})" in str(info.value)
    assert "take a full backup" in str(info.value)
    assert 459 in ids(home)
    assert sg.backup_session is None, "the failed backup ended its session"
    run_backup(home, "full")
    fill(home, 50, b"after")
    run_backup(home, "incremental")


def test_calls_out_of_order_get_521_and_the_session_goes_on() -> None:
    _fs, home = mounted()
    fill(home, 50)
    sg = home.storage_group()
    run_backup(home, "full")
    with sg.begin_backup("incremental", owner="t") as session:
        with pytest.raises(InvalidBackupSequenceError):
            session.databases()
        with pytest.raises(InvalidBackupSequenceError):
            session.complete()
        logs = session.prepare_logs()
        with pytest.raises(InvalidBackupSequenceError):
            session.read_log(logs.copy.stop + 5)
        for gen in logs.copy:
            session.read_log(gen)
        session.complete()
    with sg.begin_backup("full", owner="t") as session, pytest.raises(InvalidBackupSequenceError):
        session.prepare_logs()  # the databases were not copied
    with pytest.raises(NoBackupError) as info:
        sg.backups.abort("nothing to end")
    assert info.value.code == -520


def test_leaving_the_block_without_completing_aborts_with_event_215() -> None:
    _fs, home = mounted()
    sg = home.storage_group()
    with pytest.raises(RuntimeError, match="client died"), sg.begin_backup("full", owner="t"):
        raise RuntimeError("client died")
    assert 215 in ids(home)
    assert sg.backup_session is None
    assert sg.store("Mailbox Store").header.full_prev.is_empty  # type: ignore[union-attr]


def test_a_lapsed_lease_is_ended_by_the_engine() -> None:
    _fs, home = mounted()
    sg = home.storage_group()
    session = sg.begin_backup("full", owner="remote client", lease_seconds=0.0)
    maintenance = sg._maintenance
    assert maintenance is not None
    maintenance.run_cycles(1)
    assert session.ended
    assert any(e.event_id == 215 and "lease" in e.description for e in home.events.memory)
    with pytest.raises(BackupAbortedError):
        session.databases()
    sg.begin_backup("full", owner="next").abort("done")


def test_an_abort_request_from_another_process_ends_the_session() -> None:
    fs, home = mounted()
    sg = home.storage_group()
    session = sg.begin_backup("full", owner="t")
    assert fs.exists(sg.backups.status_path), "the running session is described for other processes"
    fs.write_bytes(abort_request_path(sg.config.system_dir, "E00"), b'{"requester": "admin on tty2"}')
    maintenance = sg._maintenance
    assert maintenance is not None
    maintenance.run_cycles(1)
    assert session.ended
    assert any(e.event_id == 215 and "admin on tty2" in e.description for e in home.events.memory)
    assert not fs.exists(sg.backups.status_path)


def test_a_damaged_page_fails_the_backup_with_1018_and_stamps_nothing() -> None:
    fs, home = mounted()
    fill(home, 300)
    sg = home.storage_group()
    sg.checkpoint()
    store = sg.store("Mailbox Store")
    header = store.header
    assert header is not None
    used = store.space_map_of(header)
    victim = next(p for p in range(2, header.page_count) if used[p])
    data = bytearray(fs.read_bytes(store.path))
    data[victim * store.page_size + 100] ^= 0x55
    fs.write_bytes(store.path, bytes(data))
    before = generations(fs, home)
    with pytest.raises(ReadVerifyFailureError) as info:
        run_backup(home, "full")
    assert info.value.code == -1018
    assert f"page {victim} at offset {victim * store.page_size}" in str(info.value)
    assert {474, 217, 214, 203} <= set(ids(home))
    assert 202 not in ids(home)
    assert generations(fs, home) == before, "nothing was truncated"
    assert store.header.full_prev.is_empty  # type: ignore[union-attr]
    assert sg.backup_session is None


def test_logs_below_the_checkpoint_deleted_by_hand_do_not_fail_a_full_backup() -> None:
    """DESIGN §11 scenario 1, engine side: the article's failure, fixed."""
    fs, home = mounted()
    sg = home.storage_group()
    for _ in range(6):
        fill(home, 40)
        sg.log.roll()
        sg.log.flush()
    sg.checkpoint()
    below = [g for g in generations(fs, home) if g < sg.checkpoint_position.gen]
    assert len(below) >= 4
    for gen in below[1:3]:
        fs.unlink(os.path.join(sg.config.log_dir, archived_log_name("E00", gen)))
    _copies, _logs, report = run_backup(home, "full")
    assert report.missing == below[1:3]  # type: ignore[attr-defined]
    assert report.truncated == [below[0], *below[3:]]  # type: ignore[attr-defined]
    event = [e for e in home.events.memory if e.event_id == 227][-1]
    assert "There were 2 log file(s) not found" in event.description
    assert not sg.store("Mailbox Store").header.full_prev.is_empty  # type: ignore[union-attr]
    run_backup(home, "full")  # and the next backup works


def test_dismount_ends_a_running_session_with_event_226() -> None:
    _fs, home = mounted()
    sg = home.storage_group()
    session = sg.begin_backup("full", owner="t")
    sg.dismount()
    assert session.ended
    assert 226 in ids(home)
    sg.mount()
    sg.begin_backup("full", owner="t").abort("done")
    sg.dismount()


def test_truncation_is_never_seen_as_logs_deleted_by_hand() -> None:
    """The maintenance thread's log-folder check may run at any instant of a truncation: it must find nothing
    (no event 1011 advising a full backup while one completes)."""
    fs, home = mounted()
    sg = home.storage_group()
    for _ in range(5):
        fill(home, 40)
        sg.log.roll()
        sg.log.flush()
    sg.checkpoint()
    findings = []
    unlink = fs.unlink

    def unlink_then_check(path: str) -> None:
        unlink(path)
        with sg.log.stable_current() as (handle, header, generation):
            findings.extend(sg.watch.check(generation, handle, None if header is None else header.pack()))

    fs.unlink = unlink_then_check  # type: ignore[method-assign]
    _copies, _logs, report = run_backup(home, "full")
    assert len(report.truncated) >= 4  # type: ignore[attr-defined]
    assert findings == []
    assert 1011 not in ids(home)


def test_a_differential_after_an_incremental_that_truncated_its_logs_says_why() -> None:
    _fs, home = mounted()
    sg = home.storage_group()
    run_backup(home, "full")
    for _ in range(3):
        fill(home, 40)
        sg.log.roll()
        sg.log.flush()
    sg.checkpoint()
    _copies, _logs, report = run_backup(home, "incremental")
    assert report.truncated  # type: ignore[attr-defined]
    with pytest.raises(MissingFileToBackupError) as err:
        run_backup(home, "differential")
    assert err.value.code == -569
    assert "(an incremental backup since the last full backup truncated them); take a full backup" in err.value.message
    run_backup(home, "full")
    run_backup(home, "differential")  # a full backup starts a new chain


def _incremental_range(home: ServerHome) -> range:
    """After a full backup and more commits: the generations the next incremental must copy."""
    sg = home.storage_group()
    with sg.begin_backup("incremental", owner="probe") as session:
        copy = session.prepare_logs().copy
        session.abort("only looking at the range")
    return copy


def _full_then_more_logs() -> tuple[FaultFileSystem, ServerHome, range]:
    """A full backup, then commits over several generations; returns the range the next incremental copies."""
    fs, home = mounted()
    fill(home, 100)
    run_backup(home, "full")
    fill(home, 300, b"inc")
    return fs, home, _incremental_range(home)


def _log_path(home: ServerHome, gen: int) -> str:
    return os.path.join(home.storage_group().config.log_dir, archived_log_name("E00", gen))


def _damage_first_record(fs: FaultFileSystem, path: str) -> None:
    data = bytearray(fs.read_bytes(path))
    data[4096 + 32 + 12 + 20] ^= 0x40  # inside the first record (after the file and block headers)
    fs.write_bytes(path, bytes(data))


def _damaged_log_refused(fs: FaultFileSystem, home: ServerHome, gen: int, problem: str) -> None:
    """An incremental now fails with -612 naming the file and ``problem``; events 218 and 214; nothing was
    truncated or stamped and no session is left; a full backup (which does not need the log) succeeds."""
    sg = home.storage_group()
    before = generations(fs, home)
    inc_before = sg.store("Mailbox Store").header.inc_prev  # type: ignore[union-attr]
    with pytest.raises(LogReadVerifyFailureError) as info:
        run_backup(home, "incremental")
    assert info.value.code == -612
    assert f"{archived_log_name('E00', gen)} failed verification: {problem}" in str(info.value)
    assert info.value.hint == "check the disk, then take a full backup: it does not need this log"
    assert {218, 214} <= set(ids(home))
    assert set(before) <= set(generations(fs, home)), "nothing was truncated"
    assert sg.store("Mailbox Store").header.inc_prev == inc_before, "nothing was stamped"
    assert sg.backup_session is None
    _copies, logs, _report = run_backup(home, "full")
    assert gen not in logs


def test_a_damaged_log_fails_an_incremental_with_612_and_a_full_backup_goes_on() -> None:
    fs, home, copy = _full_then_more_logs()
    gen = copy[1]
    _damage_first_record(fs, _log_path(home, gen))
    _damaged_log_refused(fs, home, gen, "damaged block 0 at offset 4096 (0x3,8,0): fragment at offset 4128 fails")


def test_a_log_damaged_during_a_full_backup_fails_it_and_a_clean_remount_cures_it() -> None:
    fs, home = mounted()
    fill(home, 300)
    sg = home.storage_group()
    with sg.begin_backup("full", owner="t") as session:
        for store in session.databases():
            with session.open_database(store) as copy:
                b"".join(owned(copy.chunks()))
        gen = session.prepare_logs().copy[0]
        _damage_first_record(fs, _log_path(home, gen))
        with pytest.raises(LogReadVerifyFailureError) as info:
            session.read_log(gen)
    assert sg.backup_session is None
    assert info.value.code == -612
    assert "take the full backup again" in info.value.hint
    assert sg.store("Mailbox Store").header.full_prev.is_empty  # type: ignore[union-attr]
    sg.dismount()  # what the hint says
    sg.mount()
    _copies, logs, _report = run_backup(home, "full")
    assert gen not in logs
    assert not sg.store("Mailbox Store").header.full_prev.is_empty  # type: ignore[union-attr]


def test_a_log_under_another_generations_name_fails_with_612() -> None:
    fs, home, copy = _full_then_more_logs()
    fs.write_bytes(_log_path(home, copy[1]), fs.read_bytes(_log_path(home, copy[0])))
    _damaged_log_refused(fs, home, copy[1], f"its header says generation {copy[0]}")


def test_a_log_of_another_log_stream_fails_with_612() -> None:
    fs, home, copy = _full_then_more_logs()
    gen = copy[1]
    other_fs, other = mounted(seed=52)
    fill(other, 400, b"other")
    fs.write_bytes(_log_path(home, gen), other_fs.read_bytes(_log_path(other, gen)))
    _damaged_log_refused(fs, home, gen, "it belongs to another log stream")


def test_a_log_deleted_while_the_backup_runs_fails_with_569_and_truncates_nothing() -> None:
    fs, home, _copy = _full_then_more_logs()
    sg = home.storage_group()
    with sg.begin_backup("incremental", owner="t") as session:
        copy = session.prepare_logs().copy
        session.read_log(copy[0])
        fs.unlink(_log_path(home, copy[1]))
        before = generations(fs, home)
        with pytest.raises(MissingFileToBackupError) as info:
            session.read_log(copy[1])
    assert f"(generation {copy[1]})" in str(info.value)
    assert set(before) <= set(generations(fs, home)), "nothing was truncated"
    assert 459 in ids(home)
    assert sg.backup_session is None


def test_more_calls_out_of_order_get_521_and_the_session_goes_on() -> None:
    _fs, home = mounted()
    fill(home, 50)
    sg = home.storage_group()
    with sg.begin_backup("full", owner="t") as session:
        stores = session.databases()
        with session.open_database(stores[0]) as copy:
            with pytest.raises(InvalidBackupSequenceError, match="is still open; close it before opening"):
                session.open_database(stores[1])
            with pytest.raises(InvalidBackupSequenceError, match="is still open"):
                session.prepare_logs()
            b"".join(owned(copy.chunks()))
        for store in stores[1:]:
            with session.open_database(store) as copy:
                b"".join(owned(copy.chunks()))
        logs = session.prepare_logs()
        assert session.prepare_logs() is logs, "asking again gives the same ranges"
        for gen in logs.copy:
            session.read_log(gen)
        session.complete()
    fill(home, 300, b"inc")
    with sg.begin_backup("incremental", owner="t") as session:
        logs = session.prepare_logs()
        assert len(logs.copy) >= 2
        session.read_log(logs.copy[0])
        with pytest.raises(InvalidBackupSequenceError, match=rf"generations {logs.copy[1]}-{logs.copy[-1]} were not"):
            session.complete()
        for gen in logs.copy[1:]:
            session.read_log(gen)
        session.complete()
    assert not sg.store("Mailbox Store").header.inc_prev.is_empty  # type: ignore[union-attr]
