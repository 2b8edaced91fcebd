"""The requestor drives writers and a provider in VSS's order, always shuts every writer down, removes the
snapshot, and cannot be held by a provider that hangs; a writer's failed state is shown and never blocks the next
job."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from shadowstore.errors import OSSnapshotNotAllowedError, OSSnapshotTimeOutError, SnapshotProviderError
from shadowstore.vss.requestor import Requestor
from shadowstore.vss.states import WriterFailure, WriterState
from shadowstore.vss.writer import Writer, WriterMetadata


class Recording(Writer):
    name = "Recording Writer"

    def __init__(self, calls: list[str], label: str, veto_at: str | None = None) -> None:
        super().__init__()
        self.calls, self.label, self.veto_at = calls, label, veto_at

    def _note(self, step: str) -> None:
        self.calls.append(f"{self.label}:{step}")
        if step == self.veto_at:
            raise OSSnapshotNotAllowedError(f"{self.label} refuses {step}")

    def on_identify(self) -> WriterMetadata:
        self._note("identify")
        return WriterMetadata(self.name, self.writer_id, self.instance_id, 3, 1, 2)

    def on_prepare_backup(self, kind: str, components: list[str]) -> None:
        self._note("prepare_backup")

    def on_prepare_snapshot(self) -> None:
        self._note("prepare_snapshot")

    def on_freeze(self) -> None:
        self._note("freeze")

    def on_thaw(self) -> None:
        self._note("thaw")

    def on_post_snapshot(self, files: dict[str, str]) -> None:
        self._note("post_snapshot")

    def on_backup_complete(self, succeeded: dict[str, bool]) -> None:
        self._note("backup_complete")

    def on_backup_shutdown(self) -> None:
        self.calls.append(f"{self.label}:backup_shutdown")

    def on_abort(self) -> None:
        self.calls.append(f"{self.label}:abort")

    def snapshot_files(self) -> list[str]:
        return [f"/data/{self.label}.edb"]


@dataclass
class FakeSnapshot:
    files: dict[str, str]
    provider: str = "fake"
    root: str = "/snap"
    commit_seconds: float = 0.001
    removed: list[bool] = field(default_factory=list)

    def remove(self) -> None:
        self.removed.append(True)


class FakeProvider:
    name = "fake"

    def __init__(self, calls: list[str], hang: float = 0.0) -> None:
        self.calls, self.hang = calls, hang
        self.made: list[FakeSnapshot] = []

    def unsuitable(self, paths: list[str]) -> str | None:
        return None

    def snapshot(self, paths: list[str], snapshot_id: str) -> FakeSnapshot:
        self.calls.append("provider:commit")
        if self.hang:
            time.sleep(self.hang)
        made = FakeSnapshot({p: f"/snap{p}" for p in paths})
        self.made.append(made)
        return made


def _copy(calls: list[str]):  # type: ignore[no-untyped-def]
    def copy(files: dict[str, str]) -> dict[str, bool]:
        calls.append(f"copy:{sorted(files)}")
        return {"sg": True}

    return copy


def test_a_job_calls_every_step_in_order_and_cleans_up() -> None:
    calls: list[str] = []
    a, b = Recording(calls, "a"), Recording(calls, "b")
    provider = FakeProvider(calls)
    report = Requestor([a, b], provider).run("full", {a: ["sg"]}, _copy(calls))  # type: ignore[arg-type]
    steps = ["identify", "prepare_backup", "prepare_snapshot", "freeze"]
    expected = [f"{w}:{s}" for s in steps for w in "ab"] + ["provider:commit"]
    expected += [f"{w}:thaw" for w in "ba"] + [f"{w}:post_snapshot" for w in "ab"]  # thawed in reverse
    expected += ["copy:['/data/a.edb', '/data/b.edb']"] + [f"{w}:backup_complete" for w in "ab"]
    expected += [f"{w}:backup_shutdown" for w in "ab"]
    assert calls == expected
    assert provider.made[0].removed == [True]
    assert a.state == b.state == WriterState.STABLE
    assert report.succeeded == {"sg": True}
    assert report.freeze_seconds >= 0


def test_a_veto_at_freeze_thaws_the_others_shows_failed_at_freeze_and_the_next_job_runs() -> None:
    calls: list[str] = []
    a, b = Recording(calls, "a"), Recording(calls, "b", veto_at="freeze")
    provider = FakeProvider(calls)
    with pytest.raises(OSSnapshotNotAllowedError):
        Requestor([a, b], provider).run("full", {a: ["sg"]}, _copy(calls))  # type: ignore[arg-type]
    assert "provider:commit" not in calls
    assert calls[-4:] == ["b:abort", "a:abort", "a:backup_shutdown", "b:backup_shutdown"]  # aborted in reverse
    assert b.state == WriterState.FAILED_AT_FREEZE
    assert b.failure == WriterFailure.RETRYABLE
    assert b.status()["last_error"] == "Retryable error"
    assert a.state == WriterState.STABLE  # why: it froze, the abort thawed it, and it did not fail

    calls.clear()
    b.veto_at = None
    Requestor([a, b], provider).run("full", {a: ["sg"]}, _copy(calls))  # type: ignore[arg-type]
    assert a.state == b.state == WriterState.STABLE


def test_a_provider_that_hangs_cannot_hold_the_job() -> None:
    calls: list[str] = []
    a = Recording(calls, "a")
    provider = FakeProvider(calls, hang=3.0)
    started = time.monotonic()
    with pytest.raises(SnapshotProviderError, match=r"within 0\.3 s"):
        Requestor([a], provider, commit_seconds=0.3).run("full", {a: ["sg"]}, _copy(calls))  # type: ignore[arg-type]
    assert time.monotonic() - started < 2.0
    assert calls[-3:] == ["a:thaw", "a:abort", "a:backup_shutdown"]  # thawed at once, before the abort


def test_a_writer_whose_freeze_deadline_passed_while_the_provider_hung_makes_the_job_fail_with_2402() -> None:
    calls: list[str] = []

    class TimedOut(Recording):
        def on_thaw(self) -> None:
            calls.append("late:thaw")
            raise OSSnapshotTimeOutError("the freeze outlived its deadline and was thawed by the watchdog")

    late = TimedOut(calls, "late")
    with pytest.raises(OSSnapshotTimeOutError):
        Requestor([late], FakeProvider(calls, hang=3.0), commit_seconds=0.3).run(
            "full",
            {late: ["sg"]},
            _copy(calls),  # type: ignore[arg-type]
        )
    assert late.state == WriterState.FAILED_AT_THAW
    assert late.status()["last_error"] == "Timed out"


def test_a_copy_that_fails_aborts_and_removes_the_snapshot() -> None:
    calls: list[str] = []
    a = Recording(calls, "a")
    provider = FakeProvider(calls)

    def failing(files: dict[str, str]) -> dict[str, bool]:
        raise OSSnapshotNotAllowedError("the target went away")

    with pytest.raises(OSSnapshotNotAllowedError):
        Requestor([a], provider).run("full", {a: ["sg"]}, failing)  # type: ignore[arg-type]
    assert "a:backup_complete" not in calls
    assert calls[-2:] == ["a:abort", "a:backup_shutdown"]
    assert provider.made[0].removed == [True]
