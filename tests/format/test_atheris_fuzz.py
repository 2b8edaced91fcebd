"""Every parser under coverage-guided fuzzing (atheris): tests/format/atheris_targets.py, one target per parser,
each run in its own process for a bounded number of inputs, grown from seeds written here (real ESE samples and
the files of a small home of ours). A crash (any exception but our own named errors) fails the test with the
libFuzzer report, which names the input it saved. Hypothesis covers the same parsers in test_ese_fuzz.py and
the format tests; atheris adds coverage feedback, so it reaches checks behind valid checksums on its own.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shadowstore.format.esetypes import EseLgPos, EseSignature
from shadowstore.home import ServerHome
from shadowstore.service.wire import message_frames
from tests.conftest import QUIET
from tests.format.esesamples import DATABASES, LOG_1, LOG_2, build_checkpoint, sample

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None,
    reason="atheris is not installed: the project installs it only on x86-64 Linux with CPython 3.11, where its "
    "wheels exist (hypothesis fuzzing of the same parsers still runs)",
)
ROOT = str(Path(__file__).resolve().parents[2])
RUNS = 1500  # inputs per target: about 1-3 s each here
PAGE = 4096


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The files of a small home of ours, after some commits and a clean dismount."""
    home = ServerHome.init(str(tmp_path_factory.mktemp("fuzz") / "home"), log_file_size=64 * 1024, policy=QUIET)
    sg = home.storage_group()
    sg.mount()
    store = sg.store("Mailbox Store")
    with store.transaction() as tx:
        tx.create_table("t")
        for n in range(50):
            tx.put("t", b"key-%03d" % n, b"value " * n)
    sg.dismount()
    folder = Path(sg.config.log_dir)
    database = Path(store.path).read_bytes()
    return {
        "database": database[: 4 * PAGE],
        "page": database[2 * PAGE : 3 * PAGE],
        "log": (folder / "E00.log").read_bytes()[: 2 * PAGE],
        "checkpoint": (Path(sg.config.system_dir) / "E00.chk").read_bytes(),
    }


def seeds(target: str, ours: dict[str, bytes]) -> list[bytes]:
    ese_checkpoint = build_checkpoint(EseSignature.unpack_from(sample(LOG_1), 44), EseLgPos(1, 8, 0))
    databases = [sample(name)[: 8 * PAGE] for name in DATABASES]
    logs = [sample(LOG_1)[: 2 * PAGE], sample(LOG_2)[: 2 * PAGE]]
    return {
        "ese_db_header": databases,
        "ese_log_header": logs,
        "ese_checkpoint": [ese_checkpoint],
        "ese_log_name": [b"edb00001.log", b"E00.jtx", b"edb0000000A.log", b"res1.log"],
        "db_header": [ours["database"][:PAGE]],
        "log_header": [ours["log"][:PAGE]],
        "checkpoint": [ours["checkpoint"]],
        "catalog": [],
        "page": [ours["page"]],
        "log_block": [ours["log"][PAGE:]],
        "log_records": [],
        "manifest": [b'{"format": 1, "files": []}'],
        "mail_frames": [b"".join(message_frames([({"flags": "S"}, b"Subject: hi\r\n\r\nbody\r\n")]))],
        "database_file": [*databases, ours["database"]],
        "checkpoint_file": [ese_checkpoint, ours["checkpoint"]],
        "log_folder": [logs[0] + logs[1], ours["log"] * 2],
    }[target]


TARGETS = [
    "ese_db_header",
    "ese_log_header",
    "ese_checkpoint",
    "ese_log_name",
    "db_header",
    "log_header",
    "checkpoint",
    "catalog",
    "page",
    "log_block",
    "log_records",
    "manifest",
    "mail_frames",
    "database_file",
    "checkpoint_file",
    "log_folder",
]


@pytest.mark.parametrize("target", TARGETS)
def test_the_parser_refuses_bad_bytes_only_with_our_own_errors(
    target: str, ours: dict[str, bytes], tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n, seed in enumerate(seeds(target, ours)):
        (corpus / f"seed-{n}").write_bytes(seed)
    longest = max([len(s) for s in seeds(target, ours)] + [4096])
    run = subprocess.run(
        [sys.executable, "-m", "tests.format.atheris_targets", target, f"-runs={RUNS}", f"-max_len={longest}",
         "-timeout=20", "-rss_limit_mb=2048", "-seed=1", f"-artifact_prefix={tmp_path}/", str(corpus)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONHASHSEED": "0"},
    )  # fmt: skip
    found = sorted(p for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-", "leak-")))
    kept = "".join(f"\n{p.name} (base64): {base64.b64encode(p.read_bytes()[:16384]).decode()}" for p in found[:1])
    assert run.returncode == 0, f"{target}: atheris found an input that escapes our errors:\n{run.stderr[-4000:]}{kept}"
    assert f"Done {RUNS} runs" in run.stderr, run.stderr[-2000:]
