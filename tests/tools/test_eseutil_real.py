"""``shadowstore eseutil`` over real Windows ESE files (tools/esereal.py, cli/eseutil_real.py), through the CLI.

The samples of tests/data/ese must give exactly their known values (its README.md), in text and JSON, named by
file, folder or base name. Damage is done at fixed offsets with the named helpers of tests/format/esesamples.py:
a flipped byte left unsealed is damage (-501); a flipped byte resealed is a well-formed header that says something
else (-530 a foreign signature, -515 a previous-generation time that does not match). There is no real sample
checkpoint: the checkpoint tests build one from research/ese.md §4.2 with a valid checksum (build_checkpoint).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shadowstore.cli.eseutil_cmd import entry
from shadowstore.errors import ExitCode
from shadowstore.format.esetypes import EseLgPos
from tests.cli.clirun import run, run_json
from tests.format.esesamples import (
    DATABASES,
    LOG_RAND,
    build_checkpoint,
    flip_byte,
    log_header,
    log_set,
    put,
    reseal_log,
    reseal_log_bytes,
    truncate_to,
)

SIGNATURE_RAND_OFFSET = 44  # LGFILEHDR signLog.ulRandom
PREV_GEN_SECONDS_OFFSET = 24  # LGFILEHDR tmPrevGen.bSeconds
DBTIME_OFFSET = 16  # DBFILEHDR le_dbtimeDirtied
KNOWN_DB_LINES = {
    "dissect-basic.edb": [
        "            State: Clean Shutdown",
        "         cbDbPage: 4096",
        " Format ulVersion: 0x620,20",
        "     Log Required: 0-0 (0x0-0x0)",
        "    Log Committed: 0-0 (0x0-0x0)",
        "           dbtime: 403 (0x193)",
        "       OS Version: (6.2.9200 SP 0",
        "  Last Consistent: (0x1,16,0)",
        "    Log Signature: Create time:08/19/2022 11:46:32.541 UTC Rand:144285057 Computer:",
        "         Checksum: 0x98a810d4",
    ],
    "dissect-Current.mdb": [
        "            State: Clean Shutdown",
        "     Log Required: 0-0 (0x0-0x0)",
        "           dbtime: 188009 (0x2de69)",
        "       OS Version: (10.0.17763 SP 0",
        "  Last Consistent: (0x27,2C8,0)",
        "Rand:3398865428 Computer:",
        "         Checksum: 0xfb372390",
    ],
    "go-ese-HyperV-Current.mdb": [
        "            State: Dirty Shutdown",
        "     Log Required: 124-124 (0x7c-0x7c)",  # eseutil prints %x: lower case
        "    Log Committed: 0-124 (0x0-0x7c)",
        "           dbtime: 64195 (0xfac3)",
        "       OS Version: (10.0.17763 SP 0",
        "  Last Consistent: (0x7C,4DB,0)",
        "Rand:2836424505 Computer:",
        "         Checksum: 0xa68ca7ea",
    ],
}
KNOWN_DB_JSON = {
    "dissect-basic.edb": ("Clean Shutdown", [0, 0], [0, 0], 403, "6.2.9200", "(0x1,16,0)", 144285057, "0x98a810d4"),
    "dissect-Current.mdb": ("Clean Shutdown", [0, 0], [0, 0], 188009, "10.0.17763", "(0x27,2C8,0)", 3398865428, "0xfb372390"),  # noqa: E501
    "go-ese-HyperV-Current.mdb": ("Dirty Shutdown", [124, 124], [0, 124], 64195, "10.0.17763", "(0x7C,4DB,0)", 2836424505, "0xa68ca7ea"),  # noqa: E501
}  # fmt: skip


def lines_in_order(text: str, parts: list[str]) -> None:
    at = 0
    for part in parts:
        found = text.find(part, at)
        assert found >= 0, f"{part!r} missing (or out of order) after offset {at} in:\n{text}"
        at = found + len(part)


# --- /mh -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DATABASES)
def test_mh_of_each_sample_prints_its_known_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    path = put(tmp_path, name)
    code, out, err = run(capsys, "eseutil", "/mh", str(path))
    assert (code, err) == (0, "")
    for line in KNOWN_DB_LINES[name]:
        assert line in out
    assert "Header copies: 0 (primary, offset 0) valid, 1 (shadow, offset 4096) valid; shown: copy 0" in out
    assert out.rstrip().splitlines()[-1].startswith("Operation completed successfully")


@pytest.mark.parametrize("name", DATABASES)
def test_mh_json_of_each_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    code, data = run_json(capsys, "eseutil", "-mh", str(put(tmp_path, name)), "--json")
    state, required, committed, dbtime, os_version, consistent, rand, checksum = KNOWN_DB_JSON[name]
    assert (code, data["ok"], data["format"], data["page_size"]) == (0, True, "Windows ESE", 4096)
    assert (data["state"], data["log_required"], data["log_committed"], data["dbtime"]) == (
        state,
        required,
        committed,
        dbtime,
    )
    assert (data["os_version"], data["last_consistent"], data["checksum"]) == (os_version, consistent, checksum)
    assert (data["log_signature"]["random"], data["format_version"]) == (rand, "0x620,20")
    assert data["fields"]["state"] == (2 if state == "Dirty Shutdown" else 3)


def test_mh_with_a_damaged_primary_shows_the_shadow_and_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = put(tmp_path, "dissect-basic.edb")
    flip_byte(path, DBTIME_OFFSET)
    code, out, _err = run(capsys, "eseutil", "/mh", str(path))
    assert code == ExitCode.WARNING
    assert "           dbtime: 403 (0x193)" in out
    assert "Header copies: 0 (primary, offset 0) DAMAGED, 1 (shadow, offset 4096) valid; shown: copy 1" in out
    assert "WARNING: header copy 0 (primary, offset 0) is damaged: header checksum mismatch" in out


def test_mh_with_both_copies_damaged_exits_12_naming_file_and_offsets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = put(tmp_path, "dissect-basic.edb")
    flip_byte(path, DBTIME_OFFSET)
    flip_byte(path, 4096 + DBTIME_OFFSET)
    code, out, err = run(capsys, "eseutil", "/mh", str(path))
    assert code == ExitCode.DATABASE_DAMAGED
    assert "Operation terminated with error -1018 (JET_errReadVerifyFailure)" in out
    assert f"{path}: both database header copies are damaged" in err
    assert "copy 0 (primary, offset 0)" in err
    assert "copy 1 (shadow, offset 4096)" in err
    assert "Traceback" not in out + err


def test_mh_of_a_real_log_names_what_it_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _first, current = log_set(tmp_path)
    code, _out, err = run(capsys, "eseutil", "/mh", str(current))
    assert code == ExitCode.USAGE
    assert f"{current} is a Windows ESE log file, not a Windows ESE database; read it with 'eseutil /ml'" in err


# --- /k ------------------------------------------------------------------------------------------------------


def test_k_of_a_real_database_verifies_both_header_copies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = put(tmp_path, "go-ese-HyperV-Current.mdb")
    code, out, _err = run(capsys, "eseutil", "/k", str(path))
    assert code == 0
    assert "Initiating CHECKSUM mode..." in out
    assert "header copy 0 (primary, offset 0): checksum valid" in out
    assert "header copy 1 (shadow, offset 4096): checksum valid" in out
    assert "Note: the 254 data page(s) after the two header pages were not verified" in out
    flip_byte(path, 4096 + DBTIME_OFFSET)
    code, data = run_json(capsys, "eseutil", "-k", str(path), "--json")
    assert (code, data["pages_verified"]) == (ExitCode.WARNING, False)
    assert [c["valid"] for c in data["header_copies"]] == [True, False]


# --- /ml -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["folder", "base name"])
def test_ml_of_the_real_set_is_contiguous(tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str) -> None:
    first, current = log_set(tmp_path / "logs")
    target = str(tmp_path / "logs") if how == "folder" else str(tmp_path / "logs" / "edb")
    code, out, err = run(capsys, "eseutil", "/ml", target)
    assert (code, err) == (0, "")
    lines_in_order(
        out,
        [
            f"      Log file: {first}",
            "      lGeneration: 1 (0x1)",
            "      creation time: 12/19/2016 00:13:16.000 UTC",
            "      prev gen time: 00/00/1900 00:00:00.000",
            "      Format LGVersion: (7.3704.15)",
            f"      Signature: Create time:12/19/2016 00:13:16.000 UTC Rand:{LOG_RAND} Computer:",
            "      Env Log Sec size: 512",
            f"      Header checks passed for log file: {first}",
            f"      Log file: {current}",
            "      lGeneration: 2 (0x2)",
            "      creation time: 12/19/2016 00:13:17.000 UTC",
            "      prev gen time: 12/19/2016 00:13:16.000 UTC",
            "generations 1-2 (0x1-0x2), 2 file(s): contiguous, one signature, each file follows the previous one.",
        ],
    )
    assert "damaged" not in out


def test_ml_json_of_the_real_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log_set(tmp_path)
    code, data = run_json(capsys, "eseutil", "/ml", str(tmp_path / "edb"), "--json")
    assert (code, data["ok"], data["format"], data["base"]) == (0, True, "Windows ESE", "edb")
    assert (data["generations"], data["contiguous"], data["missing"]) == ([1, 2], True, [])
    first, second = data["logs"]
    assert (first["generation"], second["generation"], second["current"]) == (1, 2, True)
    assert (first["creation_time"], first["prev_gen_time"]) == ("2016-12-19T00:13:16.000Z", None)
    assert second["prev_gen_time"] == first["creation_time"]
    assert (second["sector_size"], second["header_sectors"], second["file_sectors"]) == (512, 8, 4096)
    assert (second["page_size"], second["version"], second["signature"]["random"]) == (8192, "7.3704.15", LOG_RAND)


def test_ml_of_one_real_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, _current = log_set(tmp_path)
    code, out, _err = run(capsys, "eseutil", "/ml", str(first))
    assert code == 0
    assert "      lGeneration: 1 (0x1)" in out
    assert "Log set" not in out


def test_ml_of_jtx_names(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, current = log_set(tmp_path, ".jtx", "USS")
    code, data = run_json(capsys, "eseutil", "/ml", str(tmp_path), "--json")
    assert (code, data["base"], data["generations"]) == (0, "USS", [1, 2])
    assert [log["file"] for log in data["logs"]] == [str(first), str(current)]


def test_ml_reads_the_checkpoint_beside_the_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, _current = log_set(tmp_path)
    (tmp_path / "edb.chk").write_bytes(build_checkpoint(log_header(first).signature, EseLgPos(1, 8, 0)))
    code, out, _err = run(capsys, "eseutil", "/ml", str(tmp_path))
    assert code == 0
    assert out.count("      Checkpoint: (0x1,8,0)") == 2


def test_ml_without_generation_1_that_the_checkpoint_needs_is_528(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, _current = log_set(tmp_path)
    (tmp_path / "edb.chk").write_bytes(build_checkpoint(log_header(first).signature, EseLgPos(1, 8, 0)))
    first.unlink()
    code, out, err = run(capsys, "eseutil", "/ml", str(tmp_path))
    assert code == ExitCode.LOG_MISSING
    assert f"ERROR: [-528 JET_errMissingLogFile] Missing log file(s) in {tmp_path}: edb00001.log (generation 1)" in out
    assert "Operation terminated with error -528 (JET_errMissingLogFile)" in out
    assert "Traceback" not in err


def test_ml_with_a_gap_between_generations_is_528(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _first, current = log_set(tmp_path)
    second = tmp_path / "edb00002.log"
    current.rename(second)
    put(tmp_path, "paola-edb.log", "edb.log")
    header = log_header(second)
    reseal_log(current, header._replace(generation=4, prev_created=header.created))
    second.unlink()
    code, data = run_json(capsys, "eseutil", "/ml", str(tmp_path), "--json")
    assert (code, data["code"], data["missing"], data["contiguous"]) == (ExitCode.LOG_MISSING, -528, [2, 3], False)
    assert "edb00002.log - edb00003.log (generations 2-3)" in data["message"]


def test_ml_with_a_foreign_signature_is_530(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, _current = log_set(tmp_path)
    reseal_log_bytes(first, SIGNATURE_RAND_OFFSET)
    code, out, _err = run(capsys, "eseutil", "/ml", str(tmp_path))
    assert code == ExitCode.LOG_DAMAGED
    assert "[-530 JET_errBadLogSignature]" in out
    assert "belongs to another log stream" in out
    assert "Log damaged" not in out


def test_ml_with_a_previous_generation_time_that_does_not_match_is_515(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _first, current = log_set(tmp_path)
    reseal_log_bytes(current, PREV_GEN_SECONDS_OFFSET, 0x01)
    code, out, _err = run(capsys, "eseutil", "/ml", str(tmp_path / "edb"))
    assert code == ExitCode.LOG_DAMAGED
    assert f"[-515 JET_errInvalidLogSequence] {current} (generation 2) does not follow generation 1" in out
    assert "12/19/2016 00:13:17.000 UTC, but" in out  # the seconds byte 16 ^ 1


def test_ml_with_a_flipped_header_byte_is_501_naming_file_and_offset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, _current = log_set(tmp_path)
    flip_byte(first, 100)
    code, out, _err = run(capsys, "eseutil", "/ml", str(tmp_path))
    assert code == ExitCode.LOG_DAMAGED
    assert "      ERROR: Log damaged (unusable). Error -501." in out
    assert f"{first}: log file header is damaged at offset 0: header checksum mismatch" in out


def test_reserve_logs_are_notes_not_part_of_the_set(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log_set(tmp_path)
    (tmp_path / "edbres00001.jrs").write_bytes(bytes(64 * 1024))
    (tmp_path / "edbtmp.log").write_bytes(b"\xda" * 8192)
    code, out, _err = run(capsys, "eseutil", "/ml", str(tmp_path))
    assert code == 0
    assert f"Note: {tmp_path / 'edbres00001.jrs'} is a reserve log (65536 bytes, zero-filled), not part" in out
    assert f"Note: {tmp_path / 'edbtmp.log'} is the next log, prepared ahead (8192 bytes, filled with 0xDA)" in out


# --- /mk -----------------------------------------------------------------------------------------------------


def test_mk_of_a_built_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, _current = log_set(tmp_path)
    chk = tmp_path / "edb.chk"
    chk.write_bytes(build_checkpoint(log_header(first).signature, EseLgPos(1, 0x22, 0)))
    code, out, _err = run(capsys, "eseutil", "/mk", str(chk))
    assert code == 0
    assert "      Checkpoint: (0x1,22,0)" in out
    assert f"      Signature: Create time:12/19/2016 00:13:16.000 UTC Rand:{LOG_RAND} Computer:" in out
    flip_byte(chk, 12)
    code, data = run_json(capsys, "eseutil", "-mk", str(chk), "--json")
    assert (code, data["checkpoint"], data["copy_used"]) == (ExitCode.WARNING, "(0x1,22,0)", 1)
    flip_byte(chk, 4096 + 12)
    code, out, err = run(capsys, "eseutil", "/mk", str(chk))
    assert code == ExitCode.LOG_DAMAGED
    assert f"{chk}: both checkpoint copies are damaged" in err


# --- files that are neither ours nor ESE ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "name", "data", "why"),
    [
        ("/ml", "edbres00001.jrs", bytes(2 * 1024 * 1024), "it is zero-filled"),
        ("/ml", "edb.log", b"", "it is empty"),
        ("/ml", "random.log", bytes(range(256)) * 40, "has no ShadowStore magic at offset 4"),
        ("/mk", "edb.chk", b"\x07" * 100, "it is 100 bytes, shorter than a 4096-byte header"),
        ("/mh", "empty.edb", b"", "it is empty"),
    ],
)
def test_a_file_that_is_neither_gets_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: str, name: str, data: bytes, why: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    code, out, err = run(capsys, "eseutil", mode, str(path))
    assert code == ExitCode.USAGE
    error_line = err.splitlines()[0]
    assert error_line.startswith(f"error: [-1003 JET_errInvalidParameter] {path} is not a ShadowStore or ")
    assert why in error_line
    assert "damaged" not in error_line
    assert "Traceback" not in out + err


def test_a_truncated_real_log_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, _current = log_set(tmp_path)
    truncate_to(first, 1000)
    code, _out, err = run(capsys, "eseutil", "/ml", str(first))
    assert code == ExitCode.USAGE
    assert f"{first} is 1000 bytes, shorter than a log file header (4096 bytes): truncated or not a log" in err


# --- the console script ----------------------------------------------------------------------------------------


def test_entry_runs_the_command_with_its_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = put(tmp_path, "go-ese-HyperV-Current.mdb")
    monkeypatch.setattr(sys, "argv", ["eseutil", "/mh", str(path)])
    with pytest.raises(SystemExit) as done:
        entry()
    assert done.value.code == 0
    assert "            State: Dirty Shutdown" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["eseutil", "/mh", str(tmp_path / "missing.edb")])
    with pytest.raises(SystemExit) as done:
        entry()
    assert done.value.code == ExitCode.NOT_FOUND


def test_module_runs_as_a_program(tmp_path: Path) -> None:
    path = put(tmp_path, "dissect-basic.edb")
    result = subprocess.run(
        [sys.executable, "-m", "shadowstore.cli.eseutil_cmd", "/mh", str(path), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert '"state": "Clean Shutdown"' in result.stdout
