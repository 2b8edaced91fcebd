"""A requestor that freezes the service's store writer and then waits to be killed.

    python -m tests.service.frozen_requestor HOME SG

It is the real client side (service/remotewriter.py: job, lease renewal, freeze) stopped after Freeze: it prints
``frozen`` and sleeps.
"""

from __future__ import annotations

import sys
import time

from shadowstore.service.client import find_service
from shadowstore.service.remotewriter import RemoteStoreWriter


def main() -> int:
    home, sg = sys.argv[1:3]
    client = find_service(home)
    assert client is not None, "the service is not running"
    writer = RemoteStoreWriter(client, "tests.service.frozen_requestor")
    writer.identify()
    writer.prepare_for_backup("full", [sg])
    writer.prepare_for_snapshot()
    writer.freeze()
    print("frozen", flush=True)
    time.sleep(3600)
    return 0


if __name__ == "__main__":
    sys.exit(main())
