"""A real Information Store service for tests: ``shadowstore serve`` in its own process, on a home of its own.

with running_service(home_dir) as service:
    service.cli("status")                      # the CLI, talking to it through the socket
    service.client.get("/v1/status")           # the API directly
# stopped with SIGTERM: every store in Clean Shutdown
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from shadowstore.service.client import TOKEN_VARIABLE, URL_VARIABLE, ServiceClient, socket_of

START_SECONDS = 30.0


def shadowstore_command(*args: str) -> list[str]:
    return [sys.executable, "-c", "from shadowstore.cli.main import entry; entry()", *args]


def shadowstore(
    home: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``shadowstore --home HOME ARGS`` in a new process, not pointed at any service by the environment. Raises
    TimeoutExpired (killing it) after ``timeout`` s: a serve that should have been refused would run for ever."""
    clean = {k: v for k, v in os.environ.items() if k not in (URL_VARIABLE, TOKEN_VARIABLE)}
    return subprocess.run(
        shadowstore_command("--home", home, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**clean, **(env or {})},
        check=False,
    )


@dataclass
class Service:
    home: str
    process: subprocess.Popen[str]
    socket: str
    client: ServiceClient
    listen: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``shadowstore --home HOME ARGS`` in a new process (so it finds the service as a user would)."""
        done = subprocess.run(
            shadowstore_command("--home", self.home, *args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env},
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"shadowstore {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60) -> str:
        """Stop the service with ``signum``; its output."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            out, _ = self.process.communicate()
            raise AssertionError(f"the service did not stop within {timeout} s:\n{out}") from None
        self.client.close()
        return out


def start_service(home: str, *extra: str, env: dict[str, str] | None = None) -> Service:
    """Start ``shadowstore serve`` on ``home`` and wait until its socket answers."""
    environment = {**os.environ, **(env or {})}
    process = subprocess.Popen(
        shadowstore_command("--home", home, "serve", *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=environment,
    )
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the service exited {process.returncode}:\n{process.stdout.read()}")  # type: ignore[union-attr]
        path = socket_of(home)
        if path is not None:
            client = ServiceClient(socket=path)
            try:
                client.get("/v1/health")
                info_listen = client.get("/v1/status")["service"].get("listen")
            except Exception:
                client.close()  # why: a service killed between the two calls must not leave its socket open
            else:
                return Service(home, process, path, client, info_listen, env or {})
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"the service did not answer within {START_SECONDS} s:\n{process.communicate()[0]}")


@contextlib.contextmanager
def running_service(home: str, *extra: str, env: dict[str, str] | None = None) -> Iterator[Service]:
    service = start_service(home, *extra, env=env)
    try:
        yield service
    finally:
        if service.process.poll() is None:
            service.stop()
