"""A real S3-compatible server (moto) for the tests, started once per test session (per xdist worker) when a
test first asks for ``s3_server``: fixtures in tests/conftest.py. If it cannot start, the test fails; it is not
skipped. One server per session: every S3 test (backup, restore, torture) and every process they start talks to
the endpoint that SHADOWSTORE_S3_ENDPOINT names."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shadowstore.backup.fsspectarget import ENDPOINT_VARIABLE

BUCKET = "shadowstore-test"
START_DEADLINE = 60.0  # seconds for moto to answer; it usually takes well under one


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str

    def client(self) -> Any:
        """A fresh boto3 client, independent of s3fs and its caches."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _moto_command(port: int) -> list[str]:
    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or shutil.which("moto_server")
    base = [exe] if exe else [sys.executable, "-m", "moto.server"]
    return [*base, "-H", "127.0.0.1", "-p", str(port)]


def _wait_until_answering(proc: subprocess.Popen[bytes], endpoint: str, log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while True:
        if proc.poll() is not None:
            pytest.fail(f"moto server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(endpoint, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # an HTTP answer of any status means it is serving
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"moto server did not answer at {endpoint} in {START_DEADLINE}s:\n{log.read_text()}")
            time.sleep(0.05)  # polling interval, bounded by the deadline above


AWS_VARIABLES = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
STALE_VARIABLES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3")


@contextmanager
def running_moto(log: Path) -> Iterator[str]:
    """A moto S3 server on a free localhost port, its output in ``log``; yields its endpoint URL and stops it
    afterwards. Fails the test when it cannot start or does not answer."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        try:
            proc = subprocess.Popen(_moto_command(port), stdout=out, stderr=subprocess.STDOUT)
        except OSError as exc:
            pytest.fail(f"cannot start the moto server ({exc}); install the test dependencies: moto[server]")
    try:
        _wait_until_answering(proc, endpoint, log)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A moto S3 server with bucket ``BUCKET``; the AWS variables and SHADOWSTORE_S3_ENDPOINT point at it for the
    session and are restored afterwards."""
    with running_moto(tmp_path_factory.mktemp("moto") / "server.log") as endpoint, pytest.MonkeyPatch.context() as env:
        for name in STALE_VARIABLES:
            env.delenv(name, raising=False)
        for name, value in {**AWS_VARIABLES, ENDPOINT_VARIABLE: endpoint}.items():
            env.setenv(name, value)
        server = S3Server(endpoint, BUCKET)
        server.client().create_bucket(Bucket=BUCKET)
        yield server
