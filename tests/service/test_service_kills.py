"""Kill -9 torture of the Information Store service itself: while 2-4 clients deliver mail over its mail socket
and a backup program (streaming or shadow copy, full or incremental) runs through it, the service (production
maintenance defaults) is killed with SIGKILL at a moment drawn from the seed, then started on the same home.

What it promises, round after round: the service starts again with no manual cure; every delivery it
acknowledged is there byte for byte; a delivery whose answer never came is there whole or not at all, never
partial, altered or twice; no backup session outlives the kill to hold the storage group, and the next full and
incremental backups through the service succeed; the killed backup program exits, without a traceback, and
leaves the target listable, every complete set in it verifying; and every few rounds the sets just verified
restore into the Recovery Storage Group with exactly the mail acknowledged before them.

``run_rounds`` runs the rounds on one home; ``python -m tests.service.service_torture_long`` runs many.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from shadowstore.mail.generate import generate_messages
from shadowstore.service.client import TOKEN_VARIABLE, URL_VARIABLE, ServiceClient
from shadowstore.service.remotemail import RemoteMail
from tests.service.running import Service, shadowstore, shadowstore_command, start_service

SG, RSG = "First Storage Group", "Recovery Storage Group"
SEED, ROUNDS, RESTORE_EVERY = 20261207, 4, 2
MAILBOXES = ("kill00", "kill01", "kill02", "kill03")
PER_BATCH, PAUSE = 4, 0.1
KILL_AFTER = (0.05, 1.5)  # seconds after the load began, or after the backup program's copy did
IN_FLIGHT = 0.01  # at most this long into the delivery that begins next, in the rounds aimed at one
RATES = ("0", "40")  # the backup program's --max-rate (MB/s): slowed, it is cut mid-copy more often
REAP_SECONDS, BEGIN_SECONDS = 120.0, 60.0


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@dataclass
class Ledger:
    """What the service answered, over every round: per mailbox, uid -> sha256 of the bytes it acknowledged;
    and this round's deliveries whose answer never came, as (mailbox, digests)."""

    acked: dict[str, dict[int, str]] = field(default_factory=lambda: {name: {} for name in MAILBOXES})
    unknown: list[tuple[str, list[str]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acknowledge(self, mailbox: str, uids: list[int], raws: list[bytes]) -> None:
        with self.lock:
            self.acked[mailbox].update((uid, digest(raw)) for uid, raw in zip(uids, raws, strict=True))

    def unanswered(self, mailbox: str, raws: list[bytes]) -> None:
        with self.lock:
            self.unknown.append((mailbox, [digest(raw) for raw in raws]))


@dataclass
class Torture:
    """One server home and one target through every round, the service running on the home between rounds."""

    home: str
    target: str
    seed: int
    service: Service
    ledger: Ledger = field(default_factory=Ledger)
    verified: set[str] = field(default_factory=set)


@dataclass
class Load:
    """The backup program and the delivering threads of one round; ``sending`` is set as a delivery begins,
    ``killing`` as the kill does."""

    program: subprocess.Popen[str]
    threads: list[threading.Thread]
    sending: threading.Event = field(default_factory=threading.Event)
    killing: threading.Event = field(default_factory=threading.Event)


def _deliver(socket: str, mailbox: str, seed: int, ledger: Ledger, load: Load) -> None:
    """Deliver batches of 1 to PER_BATCH messages made from ``seed``, PAUSE apart, until the kill: a call
    failing once the kill began is an unknown delivery, one failing before it an error."""
    messages, sizes = generate_messages(seed, 10_000, recipient=f"{mailbox}@example.com"), random.Random(seed)
    with ServiceClient(socket=socket) as client, contextlib.closing(RemoteMail(client)) as mail:
        while not load.killing.is_set():
            raws = [next(messages) for _ in range(sizes.randint(1, PER_BATCH))]
            load.sending.set()
            try:
                uids = mail.add(mailbox, "INBOX", raws, [{} for _ in raws])
            except Exception as exc:
                if not load.killing.is_set():
                    ledger.errors.append(f"{mailbox}: a delivery failed before the kill: {exc!r}")
                ledger.unanswered(mailbox, raws)
                return
            ledger.acknowledge(mailbox, uids, raws)
            load.killing.wait(PAUSE)  # why: a pace, so the home grows by a few MB a round, not tens


def _backup_run(torture: Torture, kind: str, method: str, *extra: str) -> list[str]:
    """The arguments of ``backup run`` for one storage group, with a shadow copy when ``method`` says so."""
    snapshot = ("--method", "snapshot", "--provider", "copy") if method == "snapshot" else ()
    return ["backup", "run", "--sg", SG, "--kind", kind, "--to", torture.target, *snapshot, *extra, "--json", "--quiet"]


def _start_load(torture: Torture, number: int, rng: random.Random, backup: list[str]) -> Load:
    """The backup program (``backup`` in a process of its own) and 2-4 delivering threads, started."""
    clean = {k: v for k, v in os.environ.items() if k not in (URL_VARIABLE, TOKEN_VARIABLE)}
    command = shadowstore_command("--home", torture.home, *backup)
    program = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean)
    load = Load(program, [])
    for index, name in enumerate(sorted(rng.sample(MAILBOXES, rng.randint(2, 4)))):
        args = (torture.service.socket, name, torture.seed * 1000 + number * 10 + index, torture.ledger, load)
        load.threads.append(threading.Thread(target=_deliver, args=args, daemon=True))
        load.threads[-1].start()
    return load


def _shadow_copies(home: str) -> list[Path]:
    """The shadow copies (built or being built) anywhere in the home."""
    return [copy for folder in Path(home).rglob(".shadowstore-snapshots") for copy in folder.iterdir()]


def _copying(torture: Torture, load: Load, method: str) -> bool:
    """Whether the backup program copies through the service (a session, or a shadow copy, exists) or ended."""
    if load.program.poll() is not None:
        return True
    if method == "snapshot":
        return bool(_shadow_copies(torture.home))
    return bool(torture.service.client.get("/v1/backup-sessions"))


def _await_the_moment(torture: Torture, load: Load, method: str, rng: random.Random) -> str:
    """Wait for the moment of the kill drawn from ``rng``: after the load's start, after the backup program's
    copy began, or into a delivery. How it was aimed."""
    anchor, delay, deadline = rng.choice(("start", "copy", "delivery")), rng.uniform(*KILL_AFTER), time.monotonic()
    while anchor == "copy" and not _copying(torture, load, method):
        assert time.monotonic() < deadline + BEGIN_SECONDS, "the backup program began no copy"
        time.sleep(0.01)  # why: polled, as neither the service nor the program announces the copy's start
    time.sleep(delay)  # why: the random moment is the point of the torture
    if anchor != "delivery":
        return f"{delay:.2f} s after the {anchor}"
    load.sending.clear()
    assert load.sending.wait(BEGIN_SECONDS), "no delivery began"
    lag = rng.uniform(0, IN_FLIGHT)
    time.sleep(lag)  # why: to land while it is sent, committed or answered
    return f"{lag * 1000:.0f} ms into a delivery {delay:.2f} s after the start"


def _kill(service: Service, load: Load) -> bool:
    """SIGKILL the service and wait for the clients; whether the backup program had finished before."""
    assert service.process.poll() is None, f"the service exited {service.process.returncode} by itself"
    finished_before = load.program.poll() is not None
    load.killing.set()  # why before the signal: a call failing from here on is unknown, not an error
    output = service.stop(signal.SIGKILL)
    assert service.process.returncode == -signal.SIGKILL, f"the service exited {service.process.returncode}:\n{output}"
    assert "Traceback" not in output, f"the killed service's output:\n{output}"
    for thread in load.threads:
        thread.join(30)
        assert not thread.is_alive(), "a client hangs on the killed service"
    return finished_before


def _reap(program: subprocess.Popen[str], finished_before: bool) -> str:
    """Wait for the backup program: it exits, without a traceback, its --json document saying how it ended
    (a success when it finished before the kill). What became of it."""
    try:
        out, err = program.communicate(timeout=REAP_SECONDS)
    except subprocess.TimeoutExpired:
        program.kill()
        raise AssertionError(f"the backup program still ran {REAP_SECONDS:.0f} s after the kill") from None
    code, said = program.returncode, f"the backup program exited {program.returncode}:\n{out}\n{err}"
    assert "Traceback" not in err, said
    assert not finished_before or code == 0, said
    assert out.startswith("{"), f"no JSON document: {said}"
    document = json.loads(out)
    failed = document.get("failed", [document])  # why: a shadow-copy job that failed as a whole is one error
    assert bool(document.get("backups")) is (code == 0), said
    assert bool(failed) is (code != 0), said
    assert [f["exit_code"] for f in failed] in ([], [code]), said
    if finished_before:
        return "done before the kill"
    return "done after the kill" if code == 0 else f"cut, exit {code}: {failed[0]['message'][:90]}"


def _check_no_session_holds(home: str) -> None:
    """With no service running, ``backup status`` may list the sessions the killed one left, as stale only."""
    done = shadowstore(home, "backup", "status", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    alive = [session for session in json.loads(done.stdout) if session["alive"]]
    assert not alive, f"backup sessions hold the storage group after the kill: {alive}"


def _check_mail(torture: Torture) -> int:
    """Every acknowledged message there byte for byte; every other one from a delivery whose answer never
    came, that delivery whole and stored once. Those found are committed: from now on they count as
    acknowledged. Returns how many were found."""
    with contextlib.closing(RemoteMail(torture.service.client)) as mail:
        stored = {name: {r.uid: digest(r.raw) for r in mail.messages(name)} for name in MAILBOXES}
    ledger, found = torture.ledger, 0
    for name in MAILBOXES:
        acked = ledger.acked[name]
        lost = sorted(uid for uid, sha in acked.items() if stored[name].get(uid) != sha)
        assert not lost, f"{name}: {len(lost)} acknowledged messages missing or altered, uids {lost[:10]}..."
        extra = {uid: sha for uid, sha in stored[name].items() if uid not in acked}
        unknown = [shas for mailbox, shas in ledger.unknown if mailbox == name]
        sent = {sha for shas in unknown for sha in shas}
        strange = sorted(uid for uid, sha in extra.items() if sha not in sent)
        assert not strange, f"{name}: {len(strange)} messages hold bytes never sent unanswered, uids {strange[:10]}..."
        assert len(set(extra.values())) == len(extra), f"{name}: an unanswered message was stored twice"
        partial = [shas for shas in unknown if 0 < len(set(shas) & set(extra.values())) < len(shas)]
        assert not partial, f"{name}: an unanswered delivery was stored in part: {partial}"
        acked.update(extra)
        found += len(extra)
    ledger.unknown.clear()
    return found


def _check_target(torture: Torture) -> None:
    """No backup session left, the target listable with no damaged or unreadable set, each complete set
    verified once."""
    sessions = json.loads(torture.service.cli("backup", "status", "--json").stdout)
    assert sessions == [], f"backup sessions after the restart: {sessions}"
    sets = json.loads(torture.service.cli("backup", "list", "--to", torture.target, "--json").stdout)
    bad = [(s["id"], s["state"], s["problem"]) for s in sets if s["state"] in ("damaged", "unreadable")]
    assert not bad, f"sets left unusable: {bad}"
    for backup_set in (s for s in sets if s["complete"] and s["id"] not in torture.verified):
        torture.service.cli("backup", "verify", "--to", torture.target, backup_set["id"], "--quiet")
        torture.verified.add(backup_set["id"])


def _back_up(torture: Torture, kind: str, method: str) -> dict[str, object]:
    """A backup through the service that must succeed; its outcome."""
    done = json.loads(torture.service.cli(*_backup_run(torture, kind, method)).stdout)
    assert done["failed"] == [], f"the {method} {kind} backup after the kill failed: {done['failed']}"
    if method == "snapshot":
        assert not _shadow_copies(torture.home), f"shadow copies left: {_shadow_copies(torture.home)}"
    return dict(done["backups"][0])


def _check_restore(torture: Torture, full: dict[str, object], incremental: dict[str, object]) -> None:
    """Both sets verify, and restored into the Recovery Storage Group they hold exactly what was acknowledged
    (nothing was delivered after they began)."""
    for outcome in (full, incremental):
        torture.service.cli("backup", "verify", "--to", torture.target, str(outcome["id"]), "--quiet")
        torture.verified.add(str(outcome["id"]))
    torture.service.cli("restore", "run", "--from", torture.target, "--into-recovery-group", "--until-gen",
                        str(incremental["last_gen"]), "--quiet")  # fmt: skip
    with contextlib.closing(RemoteMail(torture.service.client, sg=RSG)) as restored:
        for name in MAILBOXES:
            read = {r.uid: digest(r.raw) for r in restored.messages(name)}
            assert read == torture.ledger.acked[name], f"{name} restored from {incremental['id']} differs"


def run_round(torture: Torture, number: int, restore: bool) -> str:
    """One round on the running service: load, kill, restart, check. Returns its line; raises AssertionError
    naming the first problem."""
    rng = random.Random(torture.seed * 1000 + number)
    kind = "full" if number % 2 == 0 else "incremental"
    method = "snapshot" if number % 3 == 2 else "streaming"
    rate = rng.choice(RATES)
    before = sum(map(len, torture.ledger.acked.values()))
    load = _start_load(torture, number, rng, _backup_run(torture, kind, method, "--max-rate", rate))
    try:
        moment = _await_the_moment(torture, load, method, rng)
        fate = _reap(load.program, _kill(torture.service, load))
    finally:  # why: a round that failed early leaves no process behind
        load.killing.set()
        if load.program.poll() is None:
            load.program.kill()
            load.program.communicate()
    assert not torture.ledger.errors, torture.ledger.errors
    delivered, unanswered = sum(map(len, torture.ledger.acked.values())) - before, len(torture.ledger.unknown)
    _check_no_session_holds(torture.home)
    torture.service = start_service(torture.home)
    found = _check_mail(torture)
    _check_target(torture)
    full = _back_up(torture, "full", method)  # why the same method: a shadow copy sweeps what the killed one left
    incremental = _back_up(torture, "incremental", "streaming")
    torture.service.cli("backup", "prune", "--to", torture.target, "--keep-full", "2", "--yes")  # a bounded target
    if restore:
        _check_restore(torture, full, incremental)
    return (
        f"round {number}: {method} {kind} at {rate} MB/s, killed {moment}: "
        f"{delivered} messages acknowledged, deliveries unanswered: {unanswered} (their messages "
        f"stored: {found}); backup program {fate}; full and incremental after it ok{'; restored' if restore else ''}"
    )


def run_rounds(
    home: str, target: str, rounds: int, seed: int, say: Callable[[str], None] = print, restore_every: int = 2
) -> list[str]:
    """``rounds`` rounds on ``home`` (made with ``home init``), restoring every ``restore_every`` rounds and at
    the end, then a clean stop. Returns the problems of the first round that had any, naming the seed (none:
    [])."""
    service = start_service(home)
    with contextlib.closing(RemoteMail(service.client)) as mail:
        for name in MAILBOXES:
            mail.create_mailbox(name)
    torture, kept = Torture(home, target, seed, service), f"(home {home} and target {target} kept)"
    try:
        for number in range(rounds):
            restore = (number + 1) % restore_every == 0 or number == rounds - 1
            try:
                say(run_round(torture, number, restore))
            except Exception as exc:  # why any: a hang (TimeoutExpired) or an error the service sent is a finding
                return [f"seed {seed}, round {number}: {type(exc).__name__}: {exc}", kept]
        output = torture.service.stop()
        if torture.service.process.returncode != 0 or "Traceback" in output:
            return [f"seed {seed}: the stop after the last round exited {torture.service.process.returncode}:", output]
        return []
    finally:
        if torture.service.process.poll() is None:
            torture.service.stop(signal.SIGKILL)


@pytest.mark.slow
def test_the_service_killed_at_random_moments_loses_nothing_and_blocks_no_backup(home_dir: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("SHADOWSTORE_TORTURE_SEED", SEED))
    lines: list[str] = []
    problems = run_rounds(home_dir, str(tmp_path / "backups"), ROUNDS, seed, lines.append, RESTORE_EVERY)
    assert not problems, "\n".join([*lines, *problems])
    assert len(lines) == ROUNDS
