"""Durable single-row commits per second, 1 and 16 threads, against SQLite (WAL, synchronous=FULL).

Both sides commit one 16-byte key and a 100-byte value per transaction and return only once it is durable.
SQLite is measured two ways with 16 threads (a connection per thread with a busy timeout, and one shared
connection behind a lock) and the better of the two is the peer figure.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import threading

from common import Result, best_of, save, scratch, timed
from shadowstore.engine.maintenance import MaintenancePolicy
from shadowstore.home import ServerHome

VALUE = b"v" * 100


def ours(threads: int, per_thread: int) -> float:
    with scratch("ss-commits-") as d:
        home = ServerHome.init(os.path.join(d, "home"), policy=MaintenancePolicy())
        sg = home.storage_group()
        sg.mount()
        store = sg.store("Mailbox Store")
        with store.transaction() as tx:
            tx.create_table("t")

        def work(tid: int) -> None:
            for i in range(per_thread):
                with store.transaction() as tx:
                    tx.put("t", b"%04d-%011d" % (tid, i), VALUE)

        elapsed = timed(lambda: _run_threads(threads, work))
        sg.dismount()
        return threads * per_thread / elapsed


def sqlite_per_connection(threads: int, per_thread: int) -> float:
    with scratch("ss-sqlite-") as d:
        path = os.path.join(d, "db.sqlite")
        _sqlite_setup(path)

        def work(tid: int) -> None:
            con = _sqlite_connect(path)
            for i in range(per_thread):
                con.execute("BEGIN IMMEDIATE")
                con.execute("INSERT INTO t VALUES (?, ?)", (b"%04d-%011d" % (tid, i), VALUE))
                con.execute("COMMIT")
            con.close()

        return threads * per_thread / timed(lambda: _run_threads(threads, work))


def sqlite_shared(threads: int, per_thread: int) -> float:
    with scratch("ss-sqlite-") as d:
        path = os.path.join(d, "db.sqlite")
        _sqlite_setup(path)
        con = _sqlite_connect(path, check_same_thread=False)
        lock = threading.Lock()

        def work(tid: int) -> None:
            for i in range(per_thread):
                with lock:
                    con.execute("BEGIN IMMEDIATE")
                    con.execute("INSERT INTO t VALUES (?, ?)", (b"%04d-%011d" % (tid, i), VALUE))
                    con.execute("COMMIT")

        rate = threads * per_thread / timed(lambda: _run_threads(threads, work))
        con.close()
        return rate


def _sqlite_connect(path: str, check_same_thread: bool = True) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None, timeout=60, check_same_thread=check_same_thread)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    return con


def _sqlite_setup(path: str) -> None:
    con = _sqlite_connect(path)
    con.execute("CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
    con.close()


def _run_threads(count: int, fn: object) -> None:
    workers = [threading.Thread(target=fn, args=(t,)) for t in range(count)]  # type: ignore[arg-type]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def main() -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--txns", type=int, default=8000, help="transactions per measurement")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results = []
    one_ours = best_of(args.runs, lambda: ours(1, args.txns))
    one_sqlite = best_of(args.runs, lambda: sqlite_per_connection(1, args.txns))
    results.append(Result("durable commits/s, 1 thread", one_ours, one_sqlite, "SQLite", "txn/s", 1.0))
    per = args.txns // 16
    many_ours = best_of(args.runs, lambda: ours(16, per))
    many_conn = best_of(args.runs, lambda: sqlite_per_connection(16, per))
    many_shared = best_of(args.runs, lambda: sqlite_shared(16, per))
    results.append(
        Result(
            "durable commits/s, 16 threads",
            many_ours,
            max(many_conn, many_shared),
            "SQLite",
            "txn/s",
            3.0,
            f"(SQLite per-connection {many_conn:,.0f}, shared {many_shared:,.0f})",
        )
    )
    for r in results:
        print(r.line())
    save("commits", results)
    return results


if __name__ == "__main__":
    main()
