"""A backup's copy paced to a byte rate (backup/pace.py): the token bucket itself with a fake clock, the
settings that give the rate, and backups (streaming and shadow copy) that take at least as long as the rate
allows and still make sets that verify."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.pace import (
    AUTO,
    CALM,
    CHECK_SECONDS,
    FLOOR,
    HISTORY,
    MB,
    PACED_WRITE,
    READ_SECONDS,
    RETRY,
    SLOW_BUCKETS,
    START,
    STEP,
    AdaptivePace,
    Pace,
    pace_of,
    pace_target,
    parse_max_rate,
)
from shadowstore.cli.backup_cmd import _requested_waits
from shadowstore.engine.flushwaits import BUCKETS
from shadowstore.errors import BackupAbortedError, InvalidParameterError, ServiceError
from shadowstore.io.directwrite import BUFFER, WRITERS
from shadowstore.service.client import ServiceClient
from tests.cli.clirun import run, run_json, worked_home
from tests.conftest import SlowSyncFS, mounted_with_table

SG = "First Storage Group"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_pace_lets_a_burst_through_then_holds_the_rate() -> None:
    clock = FakeClock()
    pace = Pace(10 * MB, burst_seconds=0.1, clock=clock, sleep=clock.sleep)
    assert pace.burst == 1 * MB
    pace.take(MB)  # the burst: no wait
    assert clock.sleeps == []
    for _ in range(20):  # 20 MB more at 10 MB/s: two seconds
        pace.take(MB)
    assert sum(clock.sleeps) == pytest.approx(2.0)
    assert pace.slept == pytest.approx(2.0)


def test_a_long_wait_is_cut_into_slices_that_each_ask_whether_the_backup_still_runs() -> None:
    clock = FakeClock()
    pace = Pace(1 * MB, burst_seconds=0.1, clock=clock, sleep=clock.sleep)
    asked: list[float] = []

    def check() -> None:
        asked.append(sum(clock.sleeps))
        if len(asked) == 3:
            raise BackupAbortedError("the backup session has ended: it was aborted")

    pace.check = check
    pace.take(int(0.1 * MB))  # the burst
    with pytest.raises(BackupAbortedError):
        pace.take(10 * MB)  # ten seconds of waiting, given up at the third slice
    assert max(clock.sleeps) <= CHECK_SECONDS
    assert asked == pytest.approx([CHECK_SECONDS, 2 * CHECK_SECONDS, 3 * CHECK_SECONDS])


def test_time_spent_elsewhere_counts_but_is_not_saved_up_beyond_the_burst() -> None:
    clock = FakeClock()
    pace = Pace(10 * MB, burst_seconds=0.1, clock=clock, sleep=clock.sleep)
    pace.take(MB)
    clock.now += 0.1  # the copy itself took the time of one piece: no wait for the next
    pace.take(MB)
    assert sum(clock.sleeps) == pytest.approx(0, abs=1e-9)
    clock.now += 60  # a long pause does not allow a minute's bytes at once afterwards
    pace.take(MB)
    pace.take(MB)
    assert sum(clock.sleeps) == pytest.approx(0.1)


def test_a_small_rate_still_lets_one_read_through_without_waiting() -> None:
    clock = FakeClock()
    pace = Pace(1000, clock=clock, sleep=clock.sleep)  # 1 KB/s: the burst is one paced read, not 5 bytes
    assert pace.burst >= 256 << 10
    with pytest.raises(ValueError, match="positive rate"):
        Pace(0)


@pytest.mark.parametrize(("text", "rate"), [("40", 40 * MB), ("0.5", 0.5 * MB), (" 7 ", 7 * MB), ("0", None)])
def test_a_rate_is_in_decimal_megabytes_per_second_and_0_is_no_limit(text: str, rate: float | None) -> None:
    assert parse_max_rate(text, "--max-rate") == rate


@pytest.mark.parametrize("text", ["-1", "fast", "nan", "inf", "1e9", ""])
def test_a_rate_that_is_not_one_is_refused_naming_where_it_came_from(text: str) -> None:
    with pytest.raises(InvalidParameterError, match=r"backup\.max_rate") as raised:
        parse_max_rate(text, "backup.max_rate")
    assert raised.value.hint == "for example 40; 0: no limit; auto: as fast as commits allow"


@pytest.mark.parametrize("text", ["auto", " AUTO ", "Auto"])
def test_auto_is_a_rate_too(text: str) -> None:
    assert parse_max_rate(text, "--max-rate") == AUTO
    assert type(pace_of(40 * MB)) is Pace
    assert pace_of(None) is None


def test_a_paced_folder_target_writes_small_pieces_one_at_a_time(tmp_path: Path) -> None:
    target = LocalTarget(str(tmp_path))
    assert (target.write_buffer, target.writers) == (BUFFER, WRITERS)
    pace_target(target)
    assert (target.write_buffer, target.writers) == (PACED_WRITE, 1)
    assert target.write_file("a/b", [b"x" * (3 * PACED_WRITE + 5)]) == 3 * PACED_WRITE + 5
    assert target.read_bytes("a/b") == b"x" * (3 * PACED_WRITE + 5)


@pytest.mark.parametrize("method", ["streaming", "snapshot"])
def test_a_paced_backup_takes_as_long_as_its_rate_says_and_its_set_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], method: str
) -> None:
    home = worked_home(tmp_path, capsys, 2000)
    target = str(tmp_path / "sets")
    rate = 0.5  # MB/s
    args = ["--home", home, "backup", "run", "--sg", SG, "--kind", "full", "--to", target, "--json"]
    extra = ["--method", "snapshot", "--provider", "copy"] if method == "snapshot" else []
    started = time.monotonic()
    code, result = run_json(capsys, *args, *extra, "--max-rate", str(rate))
    elapsed = time.monotonic() - started
    assert code == 0, result
    copied = result["backups"][0]["bytes"]
    assert copied > 1 * MB  # enough for the pace to show
    assert elapsed >= (copied - 256 * 1024) / (rate * MB)  # the burst allowance aside, no faster than the rate
    report = Path(result["report"]).read_text()
    assert "The copy is paced to 0.5 MB/s" in report
    code, out, err = run(capsys, "--home", home, "backup", "verify", "--to", target, result["backups"][0]["id"])
    assert code == 0, out + err


def test_backup_max_rate_is_the_default_and_the_option_overrides_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = worked_home(tmp_path, capsys, 20)
    code, out, _err = run(capsys, "--home", home, "config", "set", "backup.max_rate", "25")
    assert (code, out) == (0, "backup.max_rate = 25\n")
    code, _out, err = run(capsys, "--home", home, "config", "set", "backup.max_rate", "quick")
    assert code == 3  # InvalidParameterError (-1003)
    assert "backup.max_rate 'quick' is not a rate in MB/s" in err
    target = str(tmp_path / "sets")
    code, result = run_json(
        capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", "full", "--to", target, "--json"
    )
    assert code == 0
    assert "The copy is paced to 25 MB/s" in Path(result["report"]).read_text()
    code, result = run_json(
        capsys,
        "--home",
        home,
        "backup",
        "run",
        "--sg",
        SG,
        "--kind",
        "copy",
        "--to",
        target,
        "--json",
        "--max-rate",
        "0",
    )
    assert code == 0
    assert "paced" not in Path(result["report"]).read_text()
    code, _out, err = run(capsys, "--home", home, "backup", "run", "--sg", SG, "--kind", "copy", "--max-rate", "-3")
    assert code == 3  # InvalidParameterError (-1003)
    assert "--max-rate '-3' is not a rate in MB/s from 0 to 100,000" in err


class Waits:
    """The cumulative counts an adaptive pace reads, grown by the test (every wait, then the quiet ones: the
    layout of engine/flushwaits.py); ``fail`` makes the next reading raise."""

    def __init__(self) -> None:
        self.counts = [0] * (2 * BUCKETS)
        self.fail = False

    def add(self, bucket: int, count: int, *, quiet: bool = False) -> None:
        """Waits while the backup runs; with ``quiet``, waits from before it (counted as normal ones too)."""
        self.counts[bucket] += count
        if quiet:
            self.counts[BUCKETS + bucket] += count

    def __call__(self) -> list[int]:
        if self.fail:
            raise ServiceError("the service went away")
        return list(self.counts)


NORMAL = 20  # the bucket of an ordinary wait in these tests (about 0.1 ms)


def adaptive(history: int = 1000) -> tuple[AdaptivePace, Waits, FakeClock]:
    """A pace that has read a history of ``history`` waits, all in bucket NORMAL."""
    clock, waits = FakeClock(), Waits()
    waits.add(NORMAL, history, quiet=True)
    pace = AdaptivePace(waits, clock=clock, sleep=clock.sleep)
    pace.take(1)  # the first reading: the history
    return pace, waits, clock


def interval(pace: AdaptivePace, clock: FakeClock, copied: float | None = None) -> None:
    """One interval of copying ``copied`` bytes (default: what the rate allows), then the next reading."""
    clock.now += 0.1
    pace.take(int(copied if copied is not None else pace.rate * 0.1))


def test_while_commits_wait_as_they_did_before_the_copy_the_rate_climbs_a_step_an_interval() -> None:
    pace, waits, clock = adaptive()
    assert pace.rate == START
    for step in range(1, 6):
        waits.add(NORMAL, 99)
        waits.add(NORMAL + SLOW_BUCKETS, 1)  # one in a hundred slow is the p99 allowed, not more
        interval(pace, clock)
        assert pace.rate == START + step * STEP
    assert pace.halved == 0


def test_more_than_one_slow_wait_in_a_hundred_halves_what_the_copy_achieved() -> None:
    pace, waits, clock = adaptive()
    for _ in range(10):
        waits.add(NORMAL, 100)
        interval(pace, clock)
    before = pace.rate
    waits.add(NORMAL, 98)
    waits.add(NORMAL + SLOW_BUCKETS, 2)
    interval(pace, clock)
    assert pace.halved == 1
    assert pace.rate <= before / 2
    waits.add(NORMAL + SLOW_BUCKETS - 1, 100)  # longer than usual, but not slow
    interval(pace, clock)
    assert pace.halved == 1


def test_a_rate_far_above_what_the_copy_managed_is_halved_from_what_it_managed() -> None:
    pace, waits, clock = adaptive()
    for _ in range(12):  # no commits: the rate doubles each interval
        interval(pace, clock, copied=4 * MB)  # while the copy itself manages 40 MB/s
    assert pace.rate > 1000 * MB
    waits.add(NORMAL + SLOW_BUCKETS + 2, 50)
    interval(pace, clock, copied=4 * MB)
    assert pace.rate == pytest.approx(20 * MB, rel=0.05)  # half of 40 MB/s, not half of a thousand


def test_slow_waits_bring_the_rate_to_the_floor_and_no_lower() -> None:
    pace, waits, clock = adaptive()
    for _ in range(10):
        waits.add(NORMAL + 8, 1)  # few commits, each slow: not quiet
        interval(pace, clock)
        assert pace.rate >= FLOOR
    assert pace.rate == FLOOR
    assert pace.lowest == FLOOR
    assert pace.halved == 10


def test_an_interval_without_commits_doubles_the_rate_unless_a_wait_was_slow_within_a_second() -> None:
    pace, waits, clock = adaptive()
    interval(pace, clock, copied=1)  # copies that never sleep: each interval is 0.1 s exactly
    assert pace.rate == 2 * START
    waits.add(NORMAL + 8, 1)
    interval(pace, clock, copied=1)
    slowed = pace.rate
    assert slowed == FLOOR
    for _ in range(round(CALM / 0.1) - 1):  # commits stalled behind the copy are few, not absent
        interval(pace, clock, copied=1)
        assert pace.rate == slowed
    interval(pace, clock, copied=1)
    interval(pace, clock, copied=1)  # (one more: a second of 0.1 s steps may sum to just under a second)
    assert pace.rate > slowed


def test_with_too_short_a_history_the_rate_holds_until_enough_commits_were_seen() -> None:
    pace, waits, clock = adaptive(history=10)
    waits.add(NORMAL + 5, 100)  # all "slow" against a history of ten, but that is too few to judge by
    interval(pace, clock)
    assert (pace.rate, pace.halved) == (START, 0)
    waits.add(NORMAL, HISTORY)
    interval(pace, clock)
    assert (pace.rate, pace.halved) == (START, 0)  # now learnt: the p99 is bucket NORMAL + 5
    waits.add(NORMAL + 5, 100)
    interval(pace, clock)
    assert pace.rate == START + STEP
    waits.add(NORMAL + 5 + SLOW_BUCKETS, 2)
    waits.add(NORMAL, 98)
    interval(pace, clock)
    assert pace.halved == 1


def test_the_normal_wait_is_learnt_from_commits_made_while_no_backup_ran() -> None:
    clock, waits = FakeClock(), Waits()
    waits.add(NORMAL, 1000, quiet=True)
    waits.add(NORMAL + 6, 5000)  # earlier backups, back to back: long waits, but not normal ones
    pace = AdaptivePace(waits, clock=clock, sleep=clock.sleep)
    pace.take(1)
    waits.add(NORMAL, 97)
    waits.add(NORMAL + SLOW_BUCKETS, 3)
    interval(pace, clock)
    assert pace.halved == 1


def test_a_reading_that_fails_or_goes_backwards_leaves_the_rate_where_it_is() -> None:
    pace, waits, clock = adaptive()
    waits.fail = True
    interval(pace, clock)
    assert (pace.rate, pace.unread) == (START, 1)
    waits.fail = False
    interval(pace, clock)
    assert pace.unread == 1  # why not read again: after a failure the next reading waits RETRY seconds
    clock.now += RETRY
    waits.counts = [0] * (2 * BUCKETS)  # the service restarted: its counts began again
    interval(pace, clock)
    assert pace.rate == START
    waits.add(NORMAL, 100)
    interval(pace, clock)
    assert pace.rate == START + STEP
    assert pace.to_dict()["unread"] == 1
    assert "slowed 0 time(s)" in pace.describe()


def test_a_service_that_stops_answering_holds_the_copy_for_one_bounded_reading(tmp_path: Path) -> None:
    """Without /dev/shm the pace asks the service over its API; a service that accepts and never answers (hung,
    or stopped under a debugger) must not stall the copy: the reading gives up after READ_SECONDS and the next
    one is made RETRY seconds later."""
    path = str(tmp_path / "api.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    client = ServiceClient(socket=path)
    clock = FakeClock()
    pace = AdaptivePace(lambda: _requested_waits(client), clock=clock, sleep=clock.sleep)
    try:
        started = time.monotonic()
        pace.take(1)
        took = time.monotonic() - started
        assert READ_SECONDS <= took < READ_SECONDS + 2, took
        assert (pace.unread, pace.rate) == (1, START)
        clock.now += RETRY - 0.1
        started = time.monotonic()
        pace.take(1)  # within RETRY of the failure: no reading, so no wait
        assert time.monotonic() - started < 0.5
        assert pace.unread == 1
    finally:
        client.close()
        listener.close()
        for conn in accepted:
            conn.close()


def test_a_copy_paced_on_a_real_storage_group_slows_to_the_floor_when_its_commits_slow_down() -> None:
    fs = SlowSyncFS()
    home, _sg, store = mounted_with_table(fs)
    for i in range(HISTORY + 100):  # the history: what a commit normally waits here
        with store.transaction() as tx:
            tx.put("t", b"h%d" % i, b"v")
    stop = threading.Event()

    def commit() -> None:
        n = 0
        while not stop.is_set():
            with store.transaction() as tx:
                tx.put("t", b"c%d" % n, b"v")
            n += 1

    pace = AdaptivePace(home.flush_waits.reading, interval=0.02)
    fs.delay = 0.05  # every flush now takes 50 ms: the disk is behind the copy
    committer = threading.Thread(target=commit)
    committer.start()
    try:
        ends = time.monotonic() + 1.5
        while time.monotonic() < ends:
            pace.take(64 << 10)
    finally:
        stop.set()
        committer.join()
    assert pace.halved >= 2
    assert pace.rate == FLOOR


def test_without_the_service_a_snapshot_backup_paces_by_default_on_this_process_s_commits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = worked_home(tmp_path, capsys, 200)
    target = str(tmp_path / "sets")
    args = ["--home", home, "backup", "run", "--sg", SG, "--to", target, "--json"]
    code, result = run_json(capsys, *args, "--kind", "full", "--method", "snapshot", "--provider", "copy")
    assert code == 0, result
    assert result["pace"]["mode"] == "auto"
    assert "The copy yielded to commits" in Path(result["report"]).read_text()
    code, result = run_json(capsys, *args, "--kind", "copy")
    assert code == 0, result
    assert "pace" not in result  # streaming: unpaced unless told
    code, out, _err = run(capsys, "--home", home, "config", "set", "backup.max_rate", "auto")
    assert (code, out) == (0, "backup.max_rate = auto\n")
    code, result = run_json(capsys, *args, "--kind", "copy")
    assert code == 0, result
    assert result["pace"]["mode"] == "auto"
    code, out, _err = run(capsys, "--home", home, "backup", "run", "--sg", SG, "--to", target, "--kind", "copy")
    assert code == 0
    assert "The copy yielded to commits (--max-rate auto): between " in out
