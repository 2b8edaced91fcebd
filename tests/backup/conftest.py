"""Backup fixtures: a real S3-compatible server (moto) and one fresh target of every type.

The ``target`` fixture is parametrized over a local directory, ``memory://`` and ``s3://`` on the moto server, so
every test that takes it is a conformance test run against each backend. The server starts once per test session
(per xdist worker), only when an s3 test runs; if it cannot start the test fails, it is not skipped.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shadowstore.backup.fsspectarget import ENDPOINT_VARIABLE, FsspecTarget
from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.target import Target

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


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A moto S3 server on a free localhost port with bucket ``BUCKET``; the AWS variables and
    SHADOWSTORE_S3_ENDPOINT point at it for the session and are restored afterwards."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "server.log"
    with log.open("wb") as out:
        try:
            proc = subprocess.Popen(_moto_command(port), stdout=out, stderr=subprocess.STDOUT)
        except OSError as exc:
            pytest.fail(f"cannot start the moto server ({exc}); install the test dependencies: moto[server]")
    try:
        _wait_until_answering(proc, endpoint, log)
        with pytest.MonkeyPatch.context() as env:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
                env.delenv(name, raising=False)
            env.setenv("AWS_ACCESS_KEY_ID", "testing")
            env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            env.setenv("AWS_DEFAULT_REGION", "us-east-1")
            env.setenv(ENDPOINT_VARIABLE, endpoint)
            server = S3Server(endpoint, BUCKET)
            server.client().create_bucket(Bucket=BUCKET)
            yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(params=["local", "memory", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """A fresh, empty target of each type. The folder that holds it is fresh and empty too, so a test can
    check that nothing was written beside the target."""
    unique = f"t-{uuid.uuid4().hex}"
    made: Target
    if request.param == "local":
        made = LocalTarget(str(tmp_path / "target"))
    elif request.param == "memory":
        made = FsspecTarget(f"memory://{unique}/target")
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        made = FsspecTarget(f"s3://{server.bucket}/{unique}/target")
    yield made
    if request.param == "memory":  # why: memory:// is global to the process; free what the test stored
        import fsspec

        with suppress(FileNotFoundError):
            fsspec.filesystem("memory").rm(f"/{unique}", recursive=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for the test (needs root: skipped, saying why, when it cannot be mounted)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a 1 MiB tmpfs needs root (mount(2) needs CAP_SYS_ADMIN)")
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)
