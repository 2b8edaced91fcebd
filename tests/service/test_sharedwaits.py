"""The service's commit waits in shared memory (service/sharedwaits.py): named by /v1/health, mode 0600,
counting each delivery's commit as a backup program maps it (and as /metrics shows them), removed at stop; a
file that is not the service's is refused on both sides; and a shadow-copy backup through the service paces
itself by them by default."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from shadowstore.engine.flushwaits import SIZE, FlushWaits, split
from shadowstore.service.remotemail import RemoteMail
from shadowstore.service.sharedwaits import create_shared, open_shared, shared_waits_path
from tests.service.running import Service

SG = "First Storage Group"
MESSAGE = b"From: a@example.com\r\nSubject: waits\r\n\r\nbody\r\n"


def test_the_waits_are_in_a_private_shared_file_that_counts_each_commit_and_goes_with_the_service(
    service: Service,
) -> None:
    path = service.client.get("/v1/health")["flush_waits"]
    assert path.startswith("/dev/shm/shadowstore-")
    info = os.stat(path)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_size == SIZE
    read = open_shared(path)
    assert read is not None
    before = sum(split(read())[0])
    mail = RemoteMail(service.client)
    mail.create_mailbox("waits")
    for _ in range(5):
        mail.add("waits", "INBOX", [MESSAGE], [{}])
    every, quiet = split(read())
    assert sum(every) - before >= 5  # each delivery a durable commit (the mailbox's creation too)
    assert every == quiet  # no backup ran
    answer = service.client.get("/v1/flush-waits")
    assert (every, quiet) == (answer["buckets"], answer["quiet"])
    metrics = service.client.request("GET", "/metrics").text
    counted = re.search(r'shadowstore_log_flush_wait_seconds_bucket\{backup="none",le="\+Inf"\} (\d+)', metrics)
    assert counted is not None, metrics
    assert int(counted.group(1)) >= sum(quiet)  # (a scrape later than the reading)
    assert 'shadowstore_log_flush_wait_seconds_bucket{backup="running",le="+Inf"} 0.0' in metrics
    service.stop()
    assert not os.path.exists(path)


def test_a_snapshot_backup_through_the_service_yields_to_commits_by_default(service: Service, tmp_path: Path) -> None:
    target = str(tmp_path / "sets")
    common = ["backup", "run", "--sg", SG, "--method", "snapshot", "--provider", "copy", "--to", target, "--json"]
    done = json.loads(service.cli(*common, "--kind", "full").stdout)
    assert done["failed"] == []
    assert done["pace"]["mode"] == "auto"
    assert done["pace"]["unread"] == 0  # it read the service's waits every time
    report = Path(done["report"]).read_text()
    assert "The copy yielded to commits (--max-rate auto)" in report
    unpaced = json.loads(service.cli(*common, "--kind", "copy", "--max-rate", "0").stdout)
    assert "pace" not in unpaced
    streaming = json.loads(service.cli("backup", "run", "--sg", SG, "--kind", "copy", "--to", target, "--json").stdout)
    assert "pace" not in streaming  # a streaming backup holds its session: full speed unless told otherwise


def test_a_file_that_is_not_the_services_is_neither_taken_over_nor_read(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs.waits"
    theirs.write_bytes(bytes(SIZE))
    theirs.chmod(0o644)  # readable by others: not one the service made
    assert create_shared(str(theirs)) is None
    short = tmp_path / "short.waits"
    short.write_bytes(bytes(SIZE - 8))
    assert open_shared(str(short)) is None
    assert open_shared(str(tmp_path / "absent.waits")) is None
    link = tmp_path / "link.waits"
    link.symlink_to(theirs)
    assert create_shared(str(link)) is None  # a link planted where the service makes its file
    if os.geteuid() == 0:
        os.chown(theirs, 65534, 65534)
        theirs.chmod(0o600)
        assert create_shared(str(theirs)) is None
        assert open_shared(str(theirs)) is None


def test_a_file_left_by_a_service_that_crashed_is_taken_over_and_zeroed(tmp_path: Path) -> None:
    path = str(tmp_path / "left.waits")
    first = create_shared(path)
    assert isinstance(first, FlushWaits)
    first.record(1_000_000)
    read = open_shared(path)
    assert read is not None
    assert split(read())[0] == split(first.reading())[0]
    assert sum(split(read())[0]) == 1
    second = create_shared(path)
    assert second is not None
    assert sum(second.reading()) == 0
    assert sum(read()) == 0  # the same file: a reader mapped before sees the counts begin again


def test_a_copied_home_keeps_its_id_but_gets_a_file_of_its_own(tmp_path: Path) -> None:
    first, copy = tmp_path / "home", tmp_path / "copy-of-home"
    assert shared_waits_path("4f2a", str(first)) != shared_waits_path("4f2a", str(copy))
    assert shared_waits_path("4f2a", str(first)) == shared_waits_path("4f2a", str(tmp_path / "." / "home"))
