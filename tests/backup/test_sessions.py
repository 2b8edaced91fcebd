"""Who owns a backup session, seen from another process (backup/sessions.py): a program of this machine that is
gone, killed and reaped or killed and not yet reaped, is known to be gone; one alive, or of another machine,
never is."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

from shadowstore.backup.sessions import default_owner, owner_gone


def _owner(pid: int, host: str | None = None) -> str:
    return f"shadowstore backup run (pid {pid} on {host or socket.gethostname()})"


def test_a_program_alive_is_not_gone_and_one_killed_is_even_before_it_is_reaped() -> None:
    child = subprocess.Popen(["sleep", "60"])
    try:
        assert not owner_gone(_owner(child.pid))
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not owner_gone(_owner(child.pid)) and time.monotonic() < deadline:
            time.sleep(0.01)  # why: the kill is delivered asynchronously; not reaped yet, it is a zombie
        assert owner_gone(_owner(child.pid)), "a killed program not yet reaped still counted as running"
    finally:
        child.kill()
        child.wait()
    assert owner_gone(_owner(child.pid))


def test_this_program_and_one_of_another_machine_or_unnamed_are_never_gone() -> None:
    assert not owner_gone(default_owner())
    assert not owner_gone(_owner(2**22 + 7, host="another-host"))
    assert not owner_gone("a backup program with no pid in its name")
