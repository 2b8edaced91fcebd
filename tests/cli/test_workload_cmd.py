"""``shadowstore workload run|check``."""

from __future__ import annotations

import os
import tracemalloc

import pytest

from shadowstore.engine.transaction import MAX_VALUE_SIZE
from shadowstore.errors import WorkloadMismatchError
from shadowstore.home import ServerHome
from shadowstore.tools import workload
from tests.cli.clirun import run, run_json


@pytest.fixture
def home_dir(tmp_path: os.PathLike[str]) -> str:
    path = os.path.join(tmp_path, "home")
    ServerHome.init(path, log_file_size=64 * 1024)
    return path


def test_run_prints_each_commit_and_check_passes(home_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--home", home_dir, "workload", "run", "--txns", "25", "--seed", "3", "--threads", "3")
    assert code == 0
    committed = sorted(int(line.split()[1]) for line in out.splitlines())
    assert committed == list(range(1, 26))
    code, data = run_json(capsys, "--home", home_dir, "workload", "check", "--seed", "3", "--committed", "25", "--json")
    assert code == 0
    assert data["ok"] is True
    assert data["present"] == 25


def test_seeds_coexist_and_are_checked_alone(home_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--home", home_dir, "workload", "run", "--txns", "10", "--seed", "1")[0] == 0
    assert run(capsys, "--home", home_dir, "workload", "run", "--txns", "7", "--seed", "2")[0] == 0
    assert run(capsys, "--home", home_dir, "workload", "check", "--seed", "1", "--committed", "10")[0] == 0
    code, out, _ = run(capsys, "--home", home_dir, "workload", "check", "--seed", "2", "--committed", "5")
    assert code == 0
    assert "2 later transaction(s) complete" in out


def test_check_names_a_missing_transaction(home_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--home", home_dir, "workload", "run", "--txns", "5", "--seed", "4")[0] == 0
    code, _out, err = run(capsys, "--home", home_dir, "workload", "check", "--seed", "4", "--committed", "6")
    assert code == 30
    assert "transaction 6 (committed): missing" in err


def test_check_names_a_partial_and_a_corrupted_transaction(home_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--home", home_dir, "workload", "run", "--txns", "40", "--seed", "5")[0] == 0
    partial = next(n for n in range(1, 41) if workload.keys_in(5, n) > 1)
    home = ServerHome.open(home_dir)
    sg = home.storage_group()
    sg.mount()
    with sg.store("Mailbox Store").transaction() as tx:
        tx.delete(workload.TABLE, workload.key_for(5, partial, 1))
        tx.put(workload.TABLE, workload.key_for(5, 40, 0), b"wrong bytes")
    sg.dismount()
    code, _out, err = run(capsys, "--home", home_dir, "workload", "check", "--seed", "5", "--committed", "30")
    assert code == 30
    if partial <= 30:
        assert f"transaction {partial} (committed): has keys" in err
    else:
        assert f"transaction {partial} (beyond 30): present in part" in err
    assert "transaction 40 (beyond 30): present in part: key 0 has 11 bytes" in err


def test_bad_arguments(home_dir: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "--home", home_dir, "workload", "run", "--txns", "5", "--seed", "1", "--threads", "0")
    assert code == 3
    assert "Invalid value for '--threads': 0 is not in the range 1<=x<=64" in err
    code, _out, err = run(capsys, "--home", home_dir, "workload", "run", "--txns", "5")
    assert code == 3
    assert "Missing option '--seed'" in err


@pytest.mark.parametrize(
    ("command", "option", "value", "allowed"),
    [
        ("check", "--committed", "99999999999999", "0<=x<=9999999999"),
        ("check", "--committed", "-1", "0<=x<=9999999999"),
        ("check", "--value-size", "-3", "0<=x<=268435456"),
        ("check", "--value-size", "999999999999", "0<=x<=268435456"),
        ("run", "--txns", "-1", "0<=x<=9999999999"),
        ("run", "--value-size", "999999999999", "0<=x<=268435456"),
        ("run", "--threads", "100000", "1<=x<=64"),
    ],
)
def test_a_number_out_of_range_is_refused_before_the_home_is_opened(
    tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str], command: str, option: str, value: str, allowed: str
) -> None:
    counts = {"check": ["--committed", "1"], "run": ["--txns", "1"]}[command]
    args = ["--seed", "1", *counts, option, value]
    nowhere = os.path.join(tmp_path, "no-home")  # why: refused before the home is looked for, let alone mounted
    code, _out, err = run(capsys, "--home", nowhere, "workload", command, *args)
    assert code == 3
    assert f"Invalid value for '{option}': {value} is not in the range {allowed}" in err
    assert "Traceback" not in err


def test_check_of_far_more_transactions_than_the_store_holds_is_quick_and_one_line(
    home_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "--home", home_dir, "workload", "run", "--txns", "5", "--seed", "4")[0] == 0
    code, _out, err = run(capsys, "--home", home_dir, "workload", "check", "--seed", "4", "--committed", "9999999999")
    assert code == 30
    assert "1 problem(s): transactions 6-9999999999 (committed): missing (9,999,999,994 transactions)" in err


def test_check_names_runs_of_missing_transactions_between_present_ones(home_dir: str) -> None:
    home = ServerHome.open(home_dir)
    sg = home.storage_group()
    sg.mount()
    try:
        store = sg.store("Mailbox Store")
        workload.run(store, txns=9, seed=6)
        with store.transaction() as tx:
            for n in (2, 3, 4, 7):
                for i in range(workload.keys_in(6, n)):
                    tx.delete(workload.TABLE, workload.key_for(6, n, i))
        with pytest.raises(WorkloadMismatchError) as raised:
            workload.check(store, seed=6, committed=12)
    finally:
        sg.dismount()
    assert raised.value.message == (
        "workload seed 6: 3 problem(s): transactions 2-4 (committed): missing (3 transactions); "
        "transaction 7 (committed): missing; transactions 10-12 (committed): missing (3 transactions)"
    )


def test_a_value_of_another_size_is_named_without_making_the_expected_bytes(home_dir: str) -> None:
    # why: making 256 MiB of expected bytes per key to compare 100-byte values ran out of memory
    home = ServerHome.open(home_dir)
    sg = home.storage_group()
    sg.mount()
    try:
        store = sg.store("Mailbox Store")
        workload.run(store, txns=2, seed=8)
        tracemalloc.start()
        try:
            with pytest.raises(WorkloadMismatchError) as raised:
                workload.check(store, seed=8, committed=2, value_size=MAX_VALUE_SIZE)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    finally:
        sg.dismount()
    assert f"key 0 has 100 bytes that differ from the expected {MAX_VALUE_SIZE}" in raised.value.message
    assert (
        raised.value.hint
        == f"its values are 100 bytes: the workload was run with --value-size 100, not {MAX_VALUE_SIZE}"
    )
    assert peak < MAX_VALUE_SIZE // 16
