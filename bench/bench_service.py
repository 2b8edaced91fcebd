"""Mail through the Information Store service against the same work in direct mode, 1 and 16 clients.

The same generated messages (made once, before any timing) are delivered in batches of ``--batch`` messages,
each batch one durable commit, into one mailbox per client; then, once the checkpoint the import set off is
over (``--settle``), each client reads its mailbox back in full.
Direct mode: the clients are threads of this process calling the mailbox layer on a home opened here.
Through the service: ``shadowstore serve`` runs in its own process and each client is a thread of this process
with its own connection to the Unix socket (a client program, as the CLI is). The service batches commits of
concurrent clients (service/batching.py); direct mode commits each client's batch on its own.

Targets (issue 13): through the service >= 0.8x direct at 1 client (import and read), and > 1x at 16 clients
(import).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Callable

from common import Result, running_service, save, scratch
from shadowstore.engine.maintenance import MaintenancePolicy
from shadowstore.home import ServerHome
from shadowstore.mail.generate import generate_messages
from shadowstore.mail.mailstore import MailStore
from shadowstore.service.client import ServiceClient
from shadowstore.service.remotemail import RemoteMail

Deliver = Callable[[str, list[bytes]], None]
Read = Callable[[str], int]


def _messages(clients: int, per_client: int) -> list[list[bytes]]:
    return [list(generate_messages(100 + c, per_client, recipient=f"bench{c:02d}@example.com")) for c in range(clients)]


def _run(clients: int, work: Callable[[int], object]) -> float:
    failures: list[BaseException] = []

    def guarded(c: int) -> None:
        try:
            work(c)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=guarded, args=(c,)) for c in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if failures:
        raise failures[0]
    return elapsed


def _measure(mail: list[object], corpus: list[list[bytes]], batch: int) -> tuple[float, float]:
    """(seconds to deliver everything, seconds to read everything) with one backend per client."""
    clients = len(corpus)
    for c in range(clients):
        mail[c].create_mailbox(f"bench{c:02d}")  # type: ignore[attr-defined]

    def deliver(c: int) -> None:
        messages = corpus[c]
        for i in range(0, len(messages), batch):
            chunk = messages[i : i + batch]
            mail[c].add(f"bench{c:02d}", "INBOX", chunk, [{} for _ in chunk])  # type: ignore[attr-defined]

    def read(c: int) -> None:
        count = sum(1 for _ in mail[c].messages(f"bench{c:02d}"))  # type: ignore[attr-defined]
        assert count == len(corpus[c]), (count, len(corpus[c]))

    delivered = _run(clients, deliver)
    time.sleep(SETTLE[0])  # why: the checkpoint the import set off is over before the reads (see --settle)
    return delivered, _run(clients, read)


class _Direct:
    """MailStore with the backend's ``add`` signature."""

    def __init__(self, mail: MailStore) -> None:
        self.mail = mail

    def create_mailbox(self, name: str) -> None:
        self.mail.create_mailbox(name)

    def add(self, mailbox: str, folder: str, raws: list[bytes], props: list[dict[str, object]]) -> None:
        self.mail.add_messages(mailbox, folder, list(zip(raws, props, strict=True)))

    def messages(self, mailbox: str) -> object:
        return self.mail.messages(mailbox)


def direct(corpus: list[list[bytes]], batch: int, log_mib: int) -> tuple[float, float]:
    with scratch("ss-mail-direct-") as d:
        home = ServerHome.init(os.path.join(d, "home"), policy=MaintenancePolicy(), log_file_size=log_mib << 20)
        sg = home.storage_group()
        sg.mount()
        store = MailStore(sg.store("Mailbox Store"))
        try:
            return _measure([_Direct(store) for _ in corpus], corpus, batch)
        finally:
            sg.dismount()


def service(corpus: list[list[bytes]], batch: int, log_mib: int) -> tuple[float, float]:
    with scratch("ss-mail-svc-") as d:
        home = os.path.join(d, "home")
        ServerHome.init(home, log_file_size=log_mib << 20)
        with running_service(home) as socket:
            clients = [ServiceClient(socket=socket) for _ in corpus]
            try:
                measured = _measure([RemoteMail(c) for c in clients], corpus, batch)
                BATCHING.append(_batch_factor(clients[0]))
                return measured
            finally:
                for client in clients:
                    client.close()


SETTLE = [2.0]  # seconds between the import and the reads, in both modes (--settle)
BATCHING: list[float] = []  # deliveries per commit in each service run, from the service's metrics


def _batch_factor(client: ServiceClient) -> float:
    text = client.request("GET", "/metrics").text
    values = {}
    for line in text.splitlines():
        for name in ("shadowstore_mail_commits_total", "shadowstore_mail_deliveries_total"):
            if line.startswith(name + "{"):
                values[name] = float(line.rsplit(" ", 1)[1])
    return values["shadowstore_mail_deliveries_total"] / max(1.0, values["shadowstore_mail_commits_total"])


def main() -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1600, help="messages in all, split among the clients")
    parser.add_argument("--batch", type=int, default=16, help="messages per delivery (one durable commit)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each side, interleaved; the best is kept")
    parser.add_argument("--log-file-size", type=int, default=1, help="MiB per log file of both homes (default 1)")
    parser.add_argument(
        "--settle",
        type=float,
        default=2.0,
        help="seconds between the import and the reads, so that the reads do not race the checkpoint of 150 MB "
        "the import set off (default 2; 0 measures them racing it)",
    )
    args = parser.parse_args()
    SETTLE[0] = args.settle
    results = []
    for clients, target in ((1, 0.8), (16, 1.0)):
        corpus = _messages(clients, args.messages // clients)
        count = sum(len(c) for c in corpus)
        size = sum(len(m) for c in corpus for m in c) / 1e6
        best: dict[str, tuple[float, float]] = {}
        BATCHING.clear()
        for _ in range(args.runs):
            for name, fn in (("direct", direct), ("service", service)):
                write, read = fn(corpus, args.batch, args.log_file_size)
                old = best.get(name, (float("inf"), float("inf")))
                best[name] = (min(old[0], write), min(old[1], read))
        for what, index in (("import", 0), ("read", 1)):
            ours, peer = count / best["service"][index], count / best["direct"][index]
            detail = f"{size / best['service'][index]:.1f} MB/s vs {size / best['direct'][index]:.1f} MB/s"
            if what == "import":
                detail += f", {max(BATCHING):.2f} deliveries per commit"
            results.append(
                Result(
                    f"mail {what} via service, {clients} client(s)",
                    ours,
                    peer,
                    "direct",
                    "msg/s",
                    target if what == "import" else (0.8 if clients == 1 else 0.0),
                    detail,
                )
            )
    for r in results:
        print(r.line())
    print(
        "saved",
        save(
            "service",
            results,
            {"batch": args.batch, "messages": args.messages, "log_mib": args.log_file_size, "settle": args.settle},
        ),
    )
    return results


if __name__ == "__main__":
    main()
