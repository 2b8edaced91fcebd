"""One honest verdict each (issue 12, deliver 7): a file that is not a store is not called a damaged store, and a
page size changed in the configuration is blamed on the configuration, not on the store."""

from __future__ import annotations

from pathlib import Path

import pytest

from shadowstore.errors import ExitCode
from tests.cli.clirun import run, run_json
from tests.tools.test_eseutil import PAGE_SIZE, Built, build_home

PASSWD = b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
NOT_A_DATABASE = "is not a ShadowStore or ESE database"


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def zero_range(path: str, offset: int, length: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(bytes(length))


# --- eseutil /mh of a file that is not a store ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "found"),
    [
        (
            "passwd",
            PASSWD,
            f"it is {len(PASSWD)} bytes, shorter than one 4096-byte page, and has no known magic at "
            "offset 4 (found b':x:0:0:r')",
        ),
        ("empty", b"", "it is empty"),
        ("zeros", bytes(65536), "it is zero-filled (all of its 65536 bytes)"),
        ("big.txt", PASSWD * 300, "it has no known magic at offset 4 (found b':x:0:0:r')"),
    ],
)
def test_mh_of_a_file_that_is_not_a_store_says_so_and_not_damaged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, data: bytes, found: str
) -> None:
    path = write(tmp_path, name, data)
    code, out, err = run(capsys, "eseutil", "/mh", path)
    assert code == ExitCode.USAGE
    assert "Operation terminated with error -1003 (JET_errInvalidParameter) after" in out
    error_line, hint_line = err.splitlines()
    assert error_line == f"error: [-1003 JET_errInvalidParameter] {path} {NOT_A_DATABASE}: {found}"
    assert "damaged" not in out + err.replace("restore that store from a backup", "")
    assert "eseutil /mh" not in hint_line  # not the command just run
    assert hint_line.startswith("hint: check the path")


def test_mh_json_of_a_file_that_is_not_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "zeros", bytes(3 * 8192))
    code, data = run_json(capsys, "eseutil", "/mh", path, "--json")
    assert code == ExitCode.USAGE
    assert data["error"] == "InvalidParameterError"
    assert (data["code"], data["exit_code"]) == (-1003, ExitCode.USAGE)
    assert data["message"] == f"{path} {NOT_A_DATABASE}: it is zero-filled (all of its 24576 bytes)"


# --- a store whose headers are damaged is still a damaged store (guards: these pass before the change too) --


@pytest.fixture
def built(tmp_path: Path) -> Built:
    return build_home(str(tmp_path))


def test_mh_of_a_store_with_both_checksums_broken_is_damaged(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    for copy in (0, 1):
        zero_range(built.store, copy * PAGE_SIZE, 4)  # the checksums; the magic at offset 4 stays
    code, _out, err = run(capsys, "eseutil", "/mh", built.store)
    assert code == ExitCode.DATABASE_DAMAGED
    assert f"{built.store}: both header copies are damaged" in err
    assert NOT_A_DATABASE not in err


def test_mh_of_a_store_with_both_header_pages_zeroed_is_damaged(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    zero_range(built.store, 0, 2 * PAGE_SIZE)  # no magic left, but page 2 is still a verified data page
    code, _out, err = run(capsys, "eseutil", "/mh", built.store)
    assert code == ExitCode.DATABASE_DAMAGED
    assert "both header copies are damaged" in err
    assert NOT_A_DATABASE not in err


# --- a page size changed in the configuration ----------------------------------------------------------------


def test_page_size_changed_in_the_configuration_blames_the_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = str(tmp_path / "home")
    assert run(capsys, "--home", home, "init", "--log-file-size", "64K", "--page-size", "4096")[0] == 0
    code, _out, err = run(capsys, "--home", home, "workload", "run", "--txns", "3", "--seed", "1")
    assert code == 0, err
    config = Path(home, "shadowstore.toml")
    text = config.read_text()
    assert "page_size = 4096" in text
    config.write_text(text.replace("page_size = 4096", "page_size = 8192"))

    code, _out, err = run(capsys, "--home", home, "workload", "run", "--txns", "3", "--seed", "2")
    assert code == 6, "the configuration's exit code, not a damaged database's (12)"
    error_line, hint_line = err.strip().splitlines()[-2:]
    assert "[-1213 JET_errPageSizeMismatch]" in error_line
    assert "the configuration says 8192-byte pages, the file has 4096-byte pages" in error_line
    assert "'page_size = 4096' back" in hint_line
    assert "shadowstore.toml.previous" in hint_line
    assert "restore the store from a backup" not in err
    assert "damaged" not in hint_line.replace("is not damaged", "")
