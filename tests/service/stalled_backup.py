"""A backup program that stops after its first chunk and waits (to be killed, or to see its session ended).

    python -m tests.service.stalled_backup HOME TARGET KIND [SECONDS]

It is the real program (``back_up_remote``: session, heartbeats, target lease) with a progress callback that
prints ``copying <file>`` once and then sleeps (an hour, or SECONDS, then goes on). Exit code: the error's, when
the service ends its session.
"""

from __future__ import annotations

import sys
import time

from shadowstore.backup.localtarget import LocalTarget
from shadowstore.backup.report import BackupReport
from shadowstore.errors import ShadowStoreError
from shadowstore.home import ServerHome
from shadowstore.service.client import find_service
from shadowstore.service.remotebackup import back_up_remote


def main() -> int:
    home_dir, target_dir, kind = sys.argv[1:4]
    pause = float(sys.argv[4]) if len(sys.argv) > 4 else 3600.0
    home = ServerHome.open(home_dir)
    client = find_service(home.path)
    assert client is not None, "the service is not running"
    said = False

    def progress(name: str, _done: int, _size: int | None, _total: int) -> None:
        nonlocal said
        if not said:
            said = True
            print(f"copying {name}", flush=True)
            time.sleep(pause)

    try:
        back_up_remote(
            client, home, "First Storage Group", kind, LocalTarget(target_dir), report=BackupReport(home.fs, home.path),
            progress=progress,
        )  # fmt: skip
    except ShadowStoreError as exc:
        print(f"error: {exc}", flush=True)
        return int(exc.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
