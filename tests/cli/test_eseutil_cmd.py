"""``shadowstore eseutil /mh|/ml|/mk``: eseutil's labels and layout, ``--json``, and the exit codes.

The files are built and damaged with the helpers of tests/tools/test_eseutil.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any

import pytest

from shadowstore.cli.main import main
from shadowstore.format.checkpoint import CHECKPOINT_COPY_SIZE
from shadowstore.format.logfile import LOG_HEADER_SIZE
from shadowstore.home import DEFAULT_SG, ServerHome
from shadowstore.tools.eseutil import dump_logs
from tests.conftest import QUIET
from tests.tools.test_eseutil import (
    FIRST_FRAGMENT_DATA,
    HEADER_FIELD,
    PAGE_SIZE,
    Built,
    build_home,
    commit_until,
    flip_byte,
)

LGPOS = re.compile(r"\(0x[0-9A-F]+,[0-9A-F]+,[0-9A-F]+\)")
DB_LABELS = (
    "        File Type: Database",
    "         Checksum: 0x",
    "   Format ulMagic: 0x",
    " Format ulVersion: 0x1,0",
    "     DB Signature: Create time:",
    "         cbDbPage: 8192",
    "           dbtime: ",
    "            State: ",
    "     Log Required: ",
    "    Log Committed: 0-",
    "  Last Consistent: (0x",
    "      Last Attach: (0x",
    "      Last Detach: (0x",
    "             Dbid: 1",
    "    Log Signature: Create time:",
    "     Repair Count: 0",
    "Previous Full Backup:",
    "Previous Incremental Backup:",
    "Previous Differential Backup:",
    "Previous Copy Backup:",
    "Current Full Backup:",
    "Current Shadow copy backup:",
)


@pytest.fixture
def built(tmp_path: os.PathLike[str]) -> Built:
    return build_home(os.path.join(tmp_path, "home"))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["eseutil", *args])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out, _err = run(capsys, *args, "--json")
    return code, json.loads(out)  # exactly one JSON object, or this fails


def assert_in_order(text: str, parts: tuple[str, ...] | list[str]) -> None:
    at = 0
    for part in parts:
        found = text.find(part, at)
        assert found >= 0, f"{part!r} missing (or out of order) after offset {at} in:\n{text}"
        at = found + len(part)


# --- /mh -----------------------------------------------------------------------------------------------------


def test_mh_of_a_clean_store_prints_eseutil_labels_in_order(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "/mh", built.store)
    assert code == 0
    assert err == ""
    assert out.startswith(f"Initiating FILE DUMP mode...\n         Database: {built.store}\n")
    assert_in_order(out, ("Fields:", *DB_LABELS))
    assert "            State: Clean Shutdown\n" in out
    assert "     Log Required: 0-0 (0x0-0x0)\n" in out
    assert f"    Log Committed: 0-{built.current_gen} (0x0-0x{built.current_gen:x})\n" in out
    assert out.count("        Log Gen: 0-0 (0x0-0x0)\n") == 6
    assert out.count("           Mark: (0x0,0,0)\n") == 6
    assert re.search(
        r"  Last Consistent: \(0x[0-9A-F]+,[0-9A-F]+,[0-9A-F]+\)  \d\d/\d\d/\d{4} \d\d:\d\d:\d\d\.\d{3}\n", out
    )
    assert re.search(r"\nOperation completed successfully in \d+\.\d seconds\.\n$", out)


def test_mh_of_a_mounted_store_shows_dirty_shutdown(
    tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]
) -> None:
    home = ServerHome.init(os.path.join(tmp_path, "home"), log_file_size=64 * 1024, policy=QUIET)
    sg = home.storage_group()
    sg.mount()
    try:
        commit_until(home, 2)
        code, out, _err = run(capsys, "-mh", os.path.join(home.path, DEFAULT_SG, "priv1.edb"))
    finally:
        sg.dismount()
    assert code == 0
    assert "            State: Dirty Shutdown\n" in out
    required = re.search(r"     Log Required: (\d+)-(\d+) \(0x[0-9a-f]+-0x[0-9a-f]+\)\n", out)
    assert required is not None
    assert int(required.group(1)) >= 1
    assert int(required.group(2)) >= int(required.group(1))


def test_mh_json_has_the_facts_in_snake_case(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "/mh", built.store)
    assert code == 0
    assert data["ok"] is True
    assert data["problems"] == []
    assert data["state"] == "Clean Shutdown"
    assert data["state_code"] == 3
    assert data["log_required"] == [0, 0]
    assert data["log_committed"] == [0, built.current_gen]
    assert data["page_size"] == PAGE_SIZE
    assert data["dbid"] == 1
    consistent = data["last_consistent"]
    assert isinstance(consistent, dict)
    assert LGPOS.fullmatch(str(consistent["lgpos"]))
    assert consistent["generation"] == built.current_gen
    assert set(data["db_signature"]) == {"random", "created", "computer"}
    assert list(data["backups"]) == ["full_prev", "inc_prev", "diff_prev", "copy_prev", "full_cur", "snapshot_cur"]
    assert data["damaged_copies"] == []
    assert data["copy_used"] == 0


def test_mh_with_a_damaged_primary_copy_dumps_the_shadow_and_warns(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    flip_byte(built.store, HEADER_FIELD)
    code, out, _err = run(capsys, "/mh", built.store)
    assert code == 1  # a warning: the store is readable, one copy is not
    assert "            State: Clean Shutdown\n" in out
    assert f"Header copies: 0 (primary, offset 0) DAMAGED, 1 (shadow, offset {PAGE_SIZE}) valid; shown: copy 1" in out
    assert "WARNING: header copy 0 (primary, offset 0) is damaged: header checksum mismatch at offset 0" in out
    code, data = run_json(capsys, "/mh", built.store)
    assert code == 1
    assert data["ok"] is False
    assert [(d["copy"], d["offset"]) for d in data["damaged_copies"]] == [(0, 0)]


def test_mh_with_both_copies_damaged_exits_12_naming_the_file(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    flip_byte(built.store, HEADER_FIELD)
    flip_byte(built.store, PAGE_SIZE + HEADER_FIELD)
    code, out, err = run(capsys, "/mh", built.store)
    assert code == 12
    assert "Operation terminated with error -1206 (JET_errDatabaseCorrupted) after" in out
    assert f"error: [-1206 JET_errDatabaseCorrupted] {built.store}: both header copies are damaged" in err
    code, data = run_json(capsys, "/mh", built.store)
    assert code == 12
    assert data["code"] == -1206
    assert data["error"] == "DatabaseCorruptedError"


def test_mh_of_a_log_file_says_what_it_is(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "/mh", built.path("E00.log"))
    assert code == 3
    assert "is a ShadowStore log file, not a ShadowStore database; dump it with 'eseutil /ml'" in err


def test_nonexistent_path_exits_4(tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]) -> None:
    for mode in ("/mh", "/ml", "/mk"):
        code, out, err = run(capsys, mode, os.path.join(tmp_path, "nope"))
        assert code == 4, mode
        assert "Operation terminated with error -1811 (JET_errFileNotFound)" in out
        assert "nope" in err


def test_unknown_mode_is_a_usage_error(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "/mx", built.store)
    assert code == 3
    assert "/mh DBFILE" in err


# --- /ml -----------------------------------------------------------------------------------------------------


def test_ml_of_a_folder_lists_every_generation(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "/ml", built.sg_dir)
    assert code == 0
    gens = range(1, built.current_gen + 1)
    assert_in_order(out, [f"      lGeneration: {g} (0x{g:X})\n" for g in gens])
    assert_in_order(
        out,
        (
            "      Base name: E00\n",
            f"      Log file: {built.log(1)}\n",
            "      lGeneration: 1 (0x1)\n",
            "      Checkpoint: (0x",
            "      creation time: ",
            "      prev gen time: 00/00/1900 00:00:00.000\n",
            "      Format LGVersion: (1.0)\n",
            "      Signature: Create time:",
            "      Env Log Sec size: 512\n",
            "      Using Reserved Log File: false\n",
            "      Circular Logging Flag (current file): off\n",
            "      Checkpoint at log creation time: (0x1,8,0)\n",
            "      Last Lgpos: (0x1,",
        ),
    )
    assert out.count("Integrity check passed for log file:") == built.current_gen
    assert (
        f"generations 1-{built.current_gen} (0x1-0x{built.current_gen:x}), {built.current_gen} file(s): contiguous"
        in out
    )
    assert "ERROR" not in out


def test_ml_json_of_a_base_name(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, data = run_json(capsys, "-ml", os.path.join(built.sg_dir, "E00"))
    assert code == 0
    assert data["ok"] is True
    assert data["contiguous"] is True
    logs = data["logs"]
    assert isinstance(logs, list)
    assert [log["generation"] for log in logs] == list(range(1, built.current_gen + 1))
    assert all(LGPOS.fullmatch(log["last_lgpos"]["lgpos"]) for log in logs)
    assert logs[-1]["current"] is True
    assert logs[0]["checkpoint_at_creation"]["lgpos"] == "(0x1,8,0)"


def test_ml_missing_generation_prints_everything_then_exits_10(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    os.unlink(built.log(2))
    code, out, err = run(capsys, "/ml", built.sg_dir)
    assert code == 10
    assert "      ERROR: [-528 JET_errMissingLogFile] missing log file(s) in " in out
    assert "E0000002.log (generation 2)" in out
    assert f"      lGeneration: {built.current_gen} (0x{built.current_gen:X})\n" in out  # dumped after the gap
    assert "Operation terminated with error -528 (JET_errMissingLogFile)" in out
    assert "E0000002.log" in err
    code, data = run_json(capsys, "/ml", built.sg_dir)
    assert code == 10
    assert data["ok"] is False
    assert data["missing"] == [2]
    assert data["code"] == -528


def test_ml_foreign_log_exits_11_with_bad_signature(
    built: Built, tmp_path: os.PathLike[str], capsys: pytest.CaptureFixture[str]
) -> None:
    other = build_home(os.path.join(tmp_path, "other"), generations=3)
    shutil.copyfile(other.log(2), built.log(2))
    code, out, _err = run(capsys, "/ml", built.sg_dir)
    assert code == 11
    assert (
        f"      ERROR: [-530 JET_errBadLogSignature] {built.log(2)} (generation 2) belongs to another log stream" in out
    )


def test_ml_renamed_log_exits_11_with_generation_mismatch(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    os.rename(built.log(3), built.log(2))  # generation 2 is gone; the file named 2 holds generation 3
    code, out, _err = run(capsys, "/ml", built.sg_dir)
    assert code == 11
    assert f"ERROR: [-513 JET_errLogGenerationMismatch] {built.log(2)} should hold generation 2" in out
    assert "ERROR: [-528 JET_errMissingLogFile]" in out
    assert "E0000003.log (generation 3)" in out


def test_ml_damaged_record_exits_11_naming_file_and_offset(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    flip_byte(built.log(2), FIRST_FRAGMENT_DATA)
    code, out, err = run(capsys, "/ml", built.sg_dir)
    assert code == 11
    assert "      ERROR: Log damaged (unusable). Last Lgpos: (0x2,8,0). Error -501.\n" in out
    assert f"{built.log(2)} (generation 2): damaged block 0 at offset {LOG_HEADER_SIZE}" in out
    assert f"      lGeneration: {built.current_gen} " in out
    assert "Operation terminated with error -501 (JET_errLogFileCorrupt)" in out
    assert built.log(2) in err


# --- /mk -----------------------------------------------------------------------------------------------------


def test_mk_shows_the_checkpoint_and_both_copies(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, "/mk", built.chk)
    assert code == 0
    assert_in_order(
        out,
        (
            f"      Checkpoint file: {built.chk}\n",
            "      LastFullBackupCheckpoint: (0x0,0,0)\n",
            f"      Checkpoint: (0x{built.current_gen:X},",
            "      FullBackup: (0x0,0,0)\n",
            "      FullBackup time: 00/00/1900 00:00:00.000\n",
            "      IncBackup: (0x0,0,0)\n",
            "      IncBackup time: ",
            "      Signature: Create time:",
            "      Env (CircLog,LogFile): (off,65536)\n",
            "Checkpoint copies: 0 (primary, offset 0) valid, ",
            f"1 (shadow, offset {CHECKPOINT_COPY_SIZE}) valid; shown: copy 0",
            "Operation completed successfully in ",
        ),
    )
    code, data = run_json(capsys, "/mk", built.chk)
    assert code == 0
    assert data["circular_logging"] is False
    assert data["log_file_size"] == 65536
    assert data["checkpoint"]["generation"] == built.current_gen


def test_mk_damaged_primary_copy_dumps_the_shadow(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    flip_byte(built.chk, HEADER_FIELD)
    code, out, _err = run(capsys, "/mk", built.chk)
    assert code == 1
    assert f"0 (primary, offset 0) DAMAGED, 1 (shadow, offset {CHECKPOINT_COPY_SIZE}) valid; shown: copy 1" in out
    assert f"      Checkpoint: (0x{built.current_gen:X}," in out


def test_mk_both_copies_damaged_exits_with_checkpoint_corrupt(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    flip_byte(built.chk, HEADER_FIELD)
    flip_byte(built.chk, CHECKPOINT_COPY_SIZE + HEADER_FIELD)
    code, out, err = run(capsys, "/mk", built.chk)
    assert code == 11
    assert "Operation terminated with error -533 (JET_errCheckpointCorrupt)" in out
    assert built.chk in err


def test_ml_torn_tail_in_the_current_log_is_a_note(built: Built, capsys: pytest.CaptureFixture[str]) -> None:
    current = built.path("E00.log")
    end = dump_logs(current).logs[0].last_lgpos
    assert end is not None
    flip_byte(current, end.offset + 5)  # the start of a flush that never completed
    code, out, _err = run(capsys, "/ml", built.sg_dir)
    assert code == 0
    assert f"      Note: {current} ends in a torn flush at offset {end.offset} " in out
    assert "ERROR" not in out
