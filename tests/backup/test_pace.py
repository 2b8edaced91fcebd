"""A backup's copy paced to a byte rate (backup/pace.py): the token bucket itself with a fake clock, the
settings that give the rate, and backups (streaming and shadow copy) that take at least as long as the rate
allows and still make sets that verify."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.pace import MB, PACED_WRITE, Pace, pace_target, parse_max_rate
from shadowstore.errors import InvalidParameterError
from shadowstore.io.directwrite import BUFFER, WRITERS
from tests.cli.clirun import run, run_json, worked_home

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
    assert raised.value.hint == "for example 40; 0: no limit"


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
