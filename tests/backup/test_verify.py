"""``backup verify``: real backup sets made by the backup program, then damaged at fixed places.

Each corruption test damages one thing with a named helper (``flip_byte``, ``truncate_to``, ``reseal``) and
asserts the problem verify reports: its kind, the file it names and the page or offset in its message.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import pytest
import zstandard

from shadowstore.backup.fsspectarget import FsspecTarget
from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.run import back_up
from shadowstore.backup.target import CHUNK
from shadowstore.backup.verify import MAX_PAGE_PROBLEMS, VerifyReport, verify_set
from shadowstore.format.common import crc32c
from shadowstore.format.logfile import archived_log_name, unpack_log_header
from shadowstore.home import ServerHome
from shadowstore.tools import workload
from tests.cli.clirun import run, run_json
from tests.conftest import QUIET

SG = "First Storage Group"
PAGE = 8192


# --- making real sets -----------------------------------------------------------------------------------


def make_chain(root: Path, level: int | None, seed: int = 1, bulk: bool = False) -> tuple[str, dict[str, str]]:
    """A home under ``root/home`` and, in ``root/t``, a full, an incremental and a differential backup; returns
    the home's id and the backup ids. With ``bulk`` the store is a few hundred pages, some of them free."""
    home = ServerHome.init(str(root / "home"), log_file_size=64 * 1024, policy=QUIET)
    target = LocalTarget(str(root / "t"))
    sg = home.storage_group()
    sg.mount()
    ids = {}
    if bulk:  # a store of a few hundred pages, some of them free
        with sg.store("Mailbox Store").transaction() as tx:
            tx.create_table("bulk")
            for i in range(1200):
                tx.put("bulk", b"%06d" % i, bytes([i % 251]) * 1500)
        with sg.store("Mailbox Store").transaction() as tx:
            for i in range(200, 900):
                tx.delete("bulk", b"%06d" % i)
        sg.checkpoint()
    for n, kind in enumerate(("full", "incremental", "differential")):
        workload.run(sg.store("Mailbox Store"), txns=150, seed=seed * 10 + n)
        ids[kind] = back_up(home, SG, kind, target, level=level).backup_id
    sg.dismount()
    home.close()
    return home.home_id, ids


@dataclass
class Sets:
    root: Path
    level: int | None
    home_id: str
    ids: dict[str, str]

    @property
    def target(self) -> LocalTarget:
        return LocalTarget(str(self.root / "t"))

    @property
    def home(self) -> str:
        return str(self.root / "home")

    def folder(self, kind: str) -> Path:
        return self.root / "t" / self.home_id / SG / self.ids[kind]

    def verify(self, kind: str) -> VerifyReport:
        return verify_set(self.target, self.ids[kind])

    def stored_name(self, source: str) -> str:
        return source + (".zst" if self.level is not None else "")


@pytest.fixture(scope="module", params=[None, 3], ids=["plain", "zstd"])
def pristine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    root = tmp_path_factory.mktemp("pristine")
    return root, (request.param, make_chain(root, request.param))


@pytest.fixture(scope="module", params=[None, 3], ids=["plain", "zstd"])
def pristine_bulk(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    root = tmp_path_factory.mktemp("pristine-bulk")
    return root, (request.param, make_chain(root, request.param, bulk=True))


@pytest.fixture
def bulk_sets(pristine_bulk: tuple[Path, Any], tmp_path: Path) -> Sets:
    """A private copy of a home and target whose store has a few hundred pages, some of them free."""
    root, (level, (home_id, ids)) = pristine_bulk
    shutil.copytree(root, tmp_path / "copy")
    return Sets(tmp_path / "copy", level, home_id, ids)


@pytest.fixture
def sets(pristine: tuple[Path, Any], tmp_path: Path) -> Sets:
    """A private copy of the pristine home and target, free to damage."""
    root, (level, (home_id, ids)) = pristine
    shutil.copytree(root, tmp_path / "copy")
    return Sets(tmp_path / "copy", level, home_id, ids)


# --- damaging them --------------------------------------------------------------------------------------


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate_to(path: Path, size: int) -> None:
    with path.open("r+b") as f:
        f.truncate(size)


def load_manifest(folder: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((folder / "manifest.json").read_text())
    return result


def save_manifest(folder: Path, raw: dict[str, Any]) -> None:
    (folder / "manifest.json").write_text(json.dumps(raw, indent=2))


def entry_of(raw: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(f for f in raw["files"] if f["name"] == name)
    return found


def original_bytes(folder: Path, name: str) -> bytes:
    stored = (folder / name).read_bytes()
    if not name.endswith(".zst"):
        return stored
    out: bytes = zstandard.ZstdDecompressor().decompressobj(read_across_frames=True).decompress(stored)
    return out


def reseal(folder: Path, name: str, original: bytes) -> None:
    """Store ``original`` as file ``name`` (compressed like it was) and re-write the manifest's sizes and
    hashes to match: damage that the hash check cannot see."""
    raw = load_manifest(folder)
    entry = entry_of(raw, name)
    stored = zstandard.ZstdCompressor(level=3).compress(original) if entry["compression"] else original
    (folder / name).write_bytes(stored)
    entry.update(
        size=len(original),
        sha256=hashlib.sha256(original).hexdigest(),
        stored_size=len(stored),
        stored_crc32c=f"{crc32c(stored):08x}",
    )
    save_manifest(folder, raw)


def first_used_page(data: bytes) -> int:
    return next(p for p in range(2, len(data) // PAGE) if any(data[p * PAGE : (p + 1) * PAGE]))


def kinds(report: VerifyReport) -> set[tuple[str, str | None]]:
    return {(p.kind, p.file) for p in report.errors}


# --- sound sets -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["full", "incremental", "differential"])
def test_sound_set_verifies_and_counts_what_it_read(sets: Sets, kind: str) -> None:
    seen: list[tuple[str, int]] = []
    report = verify_set(sets.target, sets.ids[kind], progress=lambda name, done, _size: seen.append((name, done)))
    raw = load_manifest(sets.folder(kind))
    assert report.problems == []
    assert report.ok
    assert report.files == len(raw["files"])
    assert report.bytes == sum(f["size"] for f in raw["files"])
    assert report.stored_bytes == sum(f["stored_size"] for f in raw["files"])
    assert report.logs == raw["last_gen"] - raw["first_gen"] + 1 > 0
    assert report.pages == (sum(d["page_count"] for d in raw["databases"]))
    assert (report.pages > 0) == (kind == "full")
    assert {name for name, _ in seen} == {f["name"] for f in raw["files"]}


def test_extra_file_in_the_set_is_a_warning(sets: Sets) -> None:
    (sets.folder("full") / "stray.txt").write_bytes(b"x")
    report = sets.verify("full")
    assert report.ok
    assert [(p.kind, p.file, p.severity) for p in report.problems] == [("extra", "stray.txt", "warning")]


@pytest.fixture
def memory_target() -> Iterator[FsspecTarget]:
    unique = f"verify-{uuid.uuid4().hex}"
    yield FsspecTarget(f"memory://{unique}/t")
    fsspec.filesystem("memory").rm(f"/{unique}", recursive=True)


def test_sets_in_a_memory_target_verify_the_same(sets: Sets, memory_target: FsspecTarget) -> None:
    for name in sets.target.list():
        memory_target.write_file(name, sets.target.read_file(name))
    for kind in sets.ids:
        assert verify_set(memory_target, sets.ids[kind]).problems == []
    name = f"{sets.home_id}/{SG}/{sets.ids['full']}/{sets.stored_name('E00.chk')}"
    memory_target.write_file(name, [memory_target.read_bytes(name)[:-1]])
    assert kinds(sets.verify("full")) == set()
    assert kinds(verify_set(memory_target, sets.ids["full"])) == {("size", sets.stored_name("E00.chk"))}


# --- damaged files --------------------------------------------------------------------------------------


def test_flipped_byte_in_a_stored_database_is_a_hash_error_naming_the_file(sets: Sets) -> None:
    name = sets.stored_name("priv1.edb")
    path = sets.folder("full") / name
    flip_byte(path, path.stat().st_size // 2)
    report = sets.verify("full")
    assert not report.ok
    assert report.errors[0].kind == "hash"
    assert report.errors[0].file == name
    assert "stored bytes do not" in report.errors[0].detail


def test_truncated_stored_file_is_a_size_error(sets: Sets) -> None:
    name = archived_log_name("E00", load_manifest(sets.folder("incremental"))["first_gen"])
    name = sets.stored_name(name)
    path = sets.folder("incremental") / name
    size = path.stat().st_size
    truncate_to(path, size - 100)
    report = sets.verify("incremental")
    assert report.errors[0] == report.errors[0].__class__(
        "size", name, f"stored size is {size - 100} bytes, the manifest says {size}"
    )


def test_damaged_page_behind_resealed_hashes_is_named_with_page_and_offset(sets: Sets) -> None:
    folder, name = sets.folder("full"), sets.stored_name("priv1.edb")
    data = bytearray(original_bytes(folder, name))
    pgno = first_used_page(bytes(data))
    data[pgno * PAGE + 100] ^= 0x01
    reseal(folder, name, bytes(data))
    report = sets.verify("full")
    assert kinds(report) == {("page", name)}
    detail = report.errors[0].detail
    assert f"page {pgno} at offset {pgno * PAGE} of the original file" in detail
    assert "checksum mismatch" in detail


def test_every_damaged_page_is_counted_and_the_first_twenty_are_named(bulk_sets: Sets) -> None:
    sets = bulk_sets
    folder, name = sets.folder("full"), sets.stored_name("priv1.edb")
    data = bytearray(original_bytes(folder, name))
    used = [p for p in range(2, len(data) // PAGE) if any(data[p * PAGE : (p + 1) * PAGE])]
    damaged = used[:: max(1, len(used) // 25)][:25]
    assert len(damaged) == 25, "the store has enough used pages"
    for pgno in damaged:
        data[pgno * PAGE + 200] ^= 0x10
    reseal(folder, name, bytes(data))
    report = sets.verify("full")
    named = [p.detail for p in report.errors if p.kind == "page" and "at offset" in p.detail]
    assert [int(d.split()[1]) for d in named] == damaged[:MAX_PAGE_PROBLEMS]
    assert ("page", name, "5 more damaged pages not listed") in {(p.kind, p.file, p.detail) for p in report.errors}


def test_free_pages_are_counted_as_free(bulk_sets: Sets) -> None:
    sets = bulk_sets
    folder, zero = sets.folder("full"), bytes(PAGE)
    free = 0
    for entry in load_manifest(folder)["files"]:
        if entry["role"] == "db":
            data = original_bytes(folder, entry["name"])
            free += sum(data[p * PAGE : (p + 1) * PAGE] == zero for p in range(2, len(data) // PAGE))
    assert free > 0, "the stores have free pages"
    report = sets.verify("full")
    assert report.ok
    assert report.free_pages == free


def test_garbage_in_a_free_page_is_an_error(sets: Sets) -> None:
    folder, name = sets.folder("full"), sets.stored_name("priv1.edb")
    data = bytearray(original_bytes(folder, name))
    data.extend(bytes(PAGE))  # one more page, free (zeros) ...
    data[-1] = 0x5A  # ... but not quite
    reseal(folder, name, bytes(data))
    report = sets.verify("full")
    pgno = len(data) // PAGE - 1
    assert ("page", name) in kinds(report)
    assert any(f"page {pgno} at offset {pgno * PAGE}" in p.detail for p in report.errors)
    assert any("page count of the copy" in p.detail for p in report.errors)  # the manifest disagrees too


def test_missing_log_file_is_named(sets: Sets) -> None:
    folder = sets.folder("differential")
    gen = load_manifest(folder)["first_gen"]
    name = sets.stored_name(archived_log_name("E00", gen))
    (folder / name).unlink()
    report = sets.verify("differential")
    assert kinds(report) == {("missing", name)}


def test_log_generation_left_out_of_the_manifest_breaks_the_chain(sets: Sets) -> None:
    folder = sets.folder("full")
    raw = load_manifest(folder)
    gen = raw["first_gen"]
    name = sets.stored_name(archived_log_name("E00", gen))
    raw["files"] = [f for f in raw["files"] if f["name"] != name]
    save_manifest(folder, raw)
    (folder / name).unlink()
    report = sets.verify("full")
    assert kinds(report) == {("chain", archived_log_name("E00", gen))}
    assert f"log generation {gen} of {gen}-{raw['last_gen']} is not in the set" in report.errors[0].detail


def test_full_set_without_the_logs_its_databases_need_is_a_coverage_error(sets: Sets) -> None:
    folder = sets.folder("full")
    raw = load_manifest(folder)
    raw["databases"][0]["replay_start_gen"] = raw["first_gen"] - 1
    save_manifest(folder, raw)
    report = sets.verify("full")
    assert kinds(report) == {("coverage", None)}
    expected = f"need log generations {raw['first_gen'] - 1}-{raw['last_gen']}; the set holds {raw['first_gen']}-"
    assert expected in report.errors[0].detail


def test_log_of_another_home_is_a_signature_error(sets: Sets, tmp_path: Path) -> None:
    folder = sets.folder("incremental")
    gen = load_manifest(folder)["last_gen"]
    foreign = closed_log_of_another_home(tmp_path / "other", gen)
    name = sets.stored_name(archived_log_name("E00", gen))
    reseal(folder, name, foreign)
    report = sets.verify("incremental")
    assert ("signature", name) in kinds(report)
    assert "another log stream" in next(p.detail for p in report.errors if p.kind == "signature")


def closed_log_of_another_home(path: Path, gen: int) -> bytes:
    """Generation ``gen`` of a new home's log stream, once it is closed."""
    home = ServerHome.init(str(path), log_file_size=64 * 1024, policy=QUIET)
    sg = home.storage_group()
    sg.mount()
    log = os.path.join(sg.config.log_dir, archived_log_name("E00", gen))
    for seed in range(100):
        if os.path.exists(log):
            break
        workload.run(sg.store("Mailbox Store"), txns=50, seed=seed)
    sg.dismount()
    home.close()
    return Path(log).read_bytes()


def test_damaged_block_in_a_resealed_log_is_a_log_error(sets: Sets) -> None:
    folder = sets.folder("incremental")
    name = sets.stored_name(archived_log_name("E00", load_manifest(folder)["first_gen"]))
    data = bytearray(original_bytes(folder, name))
    data[4096 + 64] ^= 0x01  # inside the first block after the 4096-byte header
    reseal(folder, name, bytes(data))
    report = sets.verify("incremental")
    assert kinds(report) == {("log", name)}
    assert "damaged block 0 at offset 4096" in report.errors[0].detail


def test_log_not_created_right_after_the_one_before_breaks_the_chain(sets: Sets) -> None:
    folder = sets.folder("differential")
    raw = load_manifest(folder)
    gen = raw["last_gen"]
    assert gen > raw["first_gen"]
    name = sets.stored_name(archived_log_name("E00", gen))
    data = original_bytes(folder, name)
    header = unpack_log_header(data)
    moved = header._replace(prev_created_us=header.prev_created_us + 1).pack()
    reseal(folder, name, moved + data[len(moved) :])
    report = sets.verify("differential")
    assert kinds(report) == {("chain", name)}
    assert f"generation {gen} does not follow generation {gen - 1}" in report.errors[0].detail


def test_one_damaged_header_copy_is_a_warning_two_are_an_error(sets: Sets) -> None:
    folder, name = sets.folder("full"), sets.stored_name("priv1.edb")
    data = bytearray(original_bytes(folder, name))
    data[100] ^= 0x01  # header copy in page 0
    reseal(folder, name, bytes(data))
    report = sets.verify("full")
    assert report.ok
    assert [(p.kind, p.file, p.severity) for p in report.problems] == [("header", name, "warning")]
    assert "header copy in page 0 at offset 0 is damaged" in report.problems[0].detail
    data[PAGE + 100] ^= 0x01  # and the one in page 1
    reseal(folder, name, bytes(data))
    report = sets.verify("full")
    assert kinds(report) == {("header", name)}
    assert f"header copy in page 1 at offset {PAGE} is damaged" in report.errors[1].detail


def test_database_copy_ending_inside_a_page_is_a_size_error(sets: Sets) -> None:
    folder, name = sets.folder("full"), sets.stored_name("pub1.edb")
    data = original_bytes(folder, name)
    pages = len(data) // PAGE
    reseal(folder, name, data[:-100])
    report = sets.verify("full")
    assert [p.detail for p in report.errors] == [
        f"the file ends {PAGE - 100} bytes into page {pages - 1}",
        f"page count of the copy is {pages - 1}, the manifest says {pages}",
    ]


def test_log_longer_than_its_header_says_is_a_log_error(sets: Sets) -> None:
    folder = sets.folder("incremental")
    name = sets.stored_name(archived_log_name("E00", load_manifest(folder)["first_gen"]))
    data = original_bytes(folder, name)
    reseal(folder, name, data + bytes(512))
    report = sets.verify("incremental")
    assert [(p.kind, p.file, p.detail) for p in report.errors] == [
        ("log", name, f"it is {len(data) + 512} bytes, its header says {len(data)}")
    ]


def test_log_generation_twice_in_the_set_is_a_chain_error(sets: Sets) -> None:
    folder = sets.folder("incremental")
    raw = load_manifest(folder)
    entry = dict(entry_of(raw, sets.stored_name(archived_log_name("E00", raw["first_gen"]))))
    shutil.copyfile(folder / entry["name"], folder / ("again-" + entry["name"]))
    raw["files"].append({**entry, "name": "again-" + entry["name"]})
    save_manifest(folder, raw)
    report = sets.verify("incremental")
    assert [(p.kind, p.detail) for p in report.errors] == [
        ("chain", f"log generation {raw['first_gen']} is in the set 2 times")
    ]


def test_logs_swapped_between_generations_are_named(sets: Sets) -> None:
    folder = sets.folder("differential")
    raw = load_manifest(folder)
    first, second = (sets.stored_name(archived_log_name("E00", raw["first_gen"] + i)) for i in (0, 1))
    first_bytes, second_bytes = original_bytes(folder, first), original_bytes(folder, second)
    reseal(folder, first, second_bytes)
    reseal(folder, second, first_bytes)
    report = sets.verify("differential")
    gen = raw["first_gen"]
    assert ("log", first, f"its header says generation {gen + 1}, not {gen}") in {
        (p.kind, p.file, p.detail) for p in report.errors
    }
    assert ("log", second, f"its header says generation {gen}, not {gen + 1}") in {
        (p.kind, p.file, p.detail) for p in report.errors
    }


class SmallChunks(LocalTarget):
    """Reads in 512-byte chunks, so that a file is many chunks even when it is small."""

    def read_file(self, name: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        return super().read_file(name, 512)


@pytest.mark.parametrize("pristine", [3], ids=["zstd"], indirect=True)  # only compressed bytes can fail to decompress
def test_stored_bytes_that_do_not_decompress_are_still_hashed_to_the_end(sets: Sets) -> None:
    name = sets.stored_name("priv1.edb")
    flip_byte(sets.folder("full") / name, 0)  # the zstd frame magic: decompression fails at once
    size = entry_of(load_manifest(sets.folder("full")), name)["size"]
    report = verify_set(SmallChunks(sets.target.url), sets.ids["full"])
    assert [(p.kind, p.file, p.detail.split(" (")[0]) for p in report.errors] == [
        ("hash", name, "stored bytes do not match the manifest's crc32c"),
        ("size", name, f"original size is 0 bytes, the manifest says {size}"),
        ("hash", name, "the stored bytes do not decompress"),
    ]


# --- incomplete sets and broken chains ------------------------------------------------------------------


def test_set_without_manifest_is_incomplete_and_nothing_is_read(sets: Sets) -> None:
    (sets.folder("full") / "manifest.json").unlink()
    report = sets.verify("full")
    assert [(p.kind, p.file) for p in report.problems] == [("incomplete", "manifest.json")]
    assert report.files == report.bytes == 0


@pytest.mark.parametrize("kind", ["incremental", "differential"])
def test_set_whose_full_was_deleted_has_a_base_error(sets: Sets, kind: str) -> None:
    shutil.rmtree(sets.folder("full"))
    report = sets.verify(kind)
    assert kinds(report) == {("base", sets.ids["full"])}
    assert "not in this target" in report.errors[0].detail


def test_set_whose_base_is_incomplete_has_a_base_error(sets: Sets) -> None:
    (sets.folder("full") / "manifest.json").unlink()
    report = sets.verify("incremental")
    assert kinds(report) == {("base", sets.ids["full"])}
    assert "incomplete" in report.errors[0].detail


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"kind": "copy"}, "a copy backup it cannot build on"),
        ({"log_signature": {"random": 1, "created": 2, "computer": "elsewhere"}}, "a backup of another log stream"),
    ],
    ids=["copy-base", "other-stream"],
)
def test_base_of_the_wrong_kind_or_stream_is_an_error(sets: Sets, change: dict[str, Any], problem: str) -> None:
    folder = sets.folder("full")
    save_manifest(folder, load_manifest(folder) | change)
    report = sets.verify("incremental")
    assert kinds(report) == {("base", sets.ids["full"])}
    assert report.errors[0].detail.endswith(f"builds on {sets.ids['full']}, {problem}")


def test_log_listed_under_a_generation_outside_the_range_breaks_the_chain(sets: Sets) -> None:
    folder = sets.folder("differential")
    raw = load_manifest(folder)
    first, last = raw["first_gen"], raw["last_gen"]
    entry_of(raw, sets.stored_name(archived_log_name("E00", first)))["generation"] = last + 5
    save_manifest(folder, raw)
    details = [p.detail for p in sets.verify("differential").errors if p.kind == "chain"]
    assert f"log generation {last + 5} is outside the set's range {first}-{last}" in details
    assert f"log generation {first} of {first}-{last} is not in the set" in details


def test_log_listed_twice_breaks_the_chain(sets: Sets) -> None:
    folder = sets.folder("differential")
    raw = load_manifest(folder)
    first, last = raw["first_gen"], raw["last_gen"]
    assert last > first
    entry_of(raw, sets.stored_name(archived_log_name("E00", last)))["generation"] = first
    save_manifest(folder, raw)
    details = [p.detail for p in sets.verify("differential").errors if p.kind == "chain"]
    assert f"log generation {first} is in the set 2 times" in details
    assert f"log generation {last} of {first}-{last} is not in the set" in details


def test_gap_in_the_chain_is_an_error(sets: Sets) -> None:
    """An incremental whose base skips a link (the program refuses to write one; an edited or foreign manifest
    can still say so)."""
    home = ServerHome.open(sets.home, policy=QUIET)
    sg = home.storage_group()
    sg.mount()
    workload.run(sg.store("Mailbox Store"), txns=100, seed=77)
    second = back_up(home, SG, "incremental", sets.target)
    sg.dismount()
    home.close()
    folder = sets.root / "t" / sets.home_id / SG / second.backup_id
    raw = load_manifest(folder)
    raw["based_on"] = sets.ids["full"]  # skips the first incremental: generations are missing between them
    save_manifest(folder, raw)
    report = verify_set(sets.target, second.backup_id)
    assert ("base", sets.ids["full"]) in kinds(report)
    assert any("gap in the chain" in p.detail for p in report.errors)


# --- manifests that are refused -------------------------------------------------------------------------


class RecordingTarget(LocalTarget):
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.reads: list[str] = []

    def read_file(self, name: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        self.reads.append(name)
        return super().read_file(name, chunk_size)


def _rename_to(value: str) -> Callable[[dict[str, Any]], None]:
    return lambda entry: entry.update(name=value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_rename_to("../x"), "file name '../x' would leave the backup set"),
        (_rename_to("/etc/passwd"), "file name '/etc/passwd' would leave the backup set"),
        (lambda e: e.update(size=-1), "impossible size -1"),
        (lambda e: e.update(stored_size=1 << 60), f"impossible stored_size {1 << 60}"),
        (lambda e: e.update(size="12"), "impossible size '12'"),
    ],
    ids=["dotdot", "absolute", "negative", "huge", "string"],
)
def test_unsafe_manifest_is_refused_and_nothing_outside_the_set_is_read(
    sets: Sets, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    folder = sets.folder("full")
    (folder.parent / "x").write_bytes(b"outside the set")
    raw = load_manifest(folder)
    change(raw["files"][0])
    save_manifest(folder, raw)
    target = RecordingTarget(str(sets.root / "t"))
    report = verify_set(target, sets.ids["full"])
    assert [(p.kind, p.file) for p in report.problems] == [("manifest", "manifest.json")]
    assert message in report.problems[0].detail
    assert target.reads
    assert all(name.endswith("/manifest.json") for name in target.reads)


def test_wrong_but_plausible_size_is_a_size_error(sets: Sets) -> None:
    folder = sets.folder("full")
    raw = load_manifest(folder)
    entry = entry_of(raw, sets.stored_name("E00.chk"))
    entry["size"] += 1
    save_manifest(folder, raw)
    report = sets.verify("full")
    assert kinds(report) == {("size", entry["name"])}
    assert f"the manifest says {entry['size']}" in report.errors[0].detail


# --- the command line -----------------------------------------------------------------------------------


def test_cli_verify_ok(sets: Sets, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(
        capsys, "--home", sets.home, "backup", "verify", sets.ids["full"], "--to", str(sets.target.url)
    )
    assert code == 0
    report = sets.verify("full")
    assert out.strip().splitlines()[-1] == (
        f"verified 4 files, {report.bytes:,} bytes ({report.pages:,} database pages, {report.free_pages:,} of them "
        f"free; {report.logs} log generation{'' if report.logs == 1 else 's'}): OK"
    )
    code, out, _err = run(
        capsys, "--home", sets.home, "backup", "verify", sets.ids["incremental"], "--to", sets.target.url
    )
    assert code == 0
    assert "database pages" not in out  # an incremental holds logs only


def test_cli_verify_damaged_set_exits_22_naming_the_first_problem(
    sets: Sets, capsys: pytest.CaptureFixture[str]
) -> None:
    name = sets.stored_name("priv1.edb")
    path = sets.folder("full") / name
    flip_byte(path, path.stat().st_size // 2)
    code, out, err = run(capsys, "--home", sets.home, "backup", "verify", sets.ids["full"], "--to", sets.target.url)
    assert code == 22
    assert f"error: [hash] {name}: stored bytes do not match" in out
    assert "failed verification" in err
    assert f"first: {name}: stored bytes" in err


def test_cli_verify_json(sets: Sets, capsys: pytest.CaptureFixture[str]) -> None:
    truncate_to(sets.folder("full") / sets.stored_name("E00.chk"), 10)
    args = ("--home", sets.home, "backup", "verify", sets.ids["full"], "--to", sets.target.url, "--json")
    code, data = run_json(capsys, *args)
    assert code == 22
    assert data["ok"] is False
    assert data["id"] == sets.ids["full"]
    assert {"sg", "kind", "target", "files", "bytes", "stored_bytes", "pages", "logs", "errors"} <= set(data)
    assert data["problems"][0] == {
        "kind": "size",
        "file": sets.stored_name("E00.chk"),
        "detail": data["problems"][0]["detail"],
        "severity": "error",
    }
    assert data["problems"][0]["detail"].startswith("stored size is 10 bytes")


def test_cli_verify_unknown_set_is_not_found(sets: Sets, capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, "--home", sets.home, "backup", "verify", "nope", "--to", sets.target.url)
    assert code == 4
    assert "there is no backup set 'nope'" in err
