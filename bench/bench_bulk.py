"""Bulk load: rows per second in one transaction, against SQLite ``executemany`` in one transaction.

Both sides insert the same random 16-byte keys with 100-byte values into an empty table and commit once
(durably). Target: at least 25% of SQLite's rate.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3

from common import Result, best_of, save, scratch, timed
from shadowstore.engine.maintenance import MaintenancePolicy
from shadowstore.home import ServerHome


def rows(count: int, seed: int = 1) -> list[tuple[bytes, bytes]]:
    rng = random.Random(seed)
    return [(rng.randbytes(16), rng.randbytes(100)) for _ in range(count)]


def ours(data: list[tuple[bytes, bytes]]) -> float:
    with scratch("ss-bulk-") as d:
        home = ServerHome.init(os.path.join(d, "home"), policy=MaintenancePolicy())
        sg = home.storage_group()
        sg.mount()
        store = sg.store("Mailbox Store")
        with store.transaction() as tx:
            tx.create_table("t")

        def load() -> None:
            with store.transaction() as tx:
                put = tx.put
                for key, value in data:
                    put("t", key, value)

        rate = len(data) / timed(load)
        sg.dismount()
        return rate


def sqlite(data: list[tuple[bytes, bytes]]) -> float:
    with scratch("ss-bulk-sqlite-") as d:
        con = sqlite3.connect(os.path.join(d, "db.sqlite"), isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")

        def load() -> None:
            con.execute("BEGIN")
            con.executemany("INSERT INTO t VALUES (?, ?)", data)
            con.execute("COMMIT")

        rate = len(data) / timed(load)
        con.close()
        return rate


def main() -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    data = rows(args.rows)
    result = Result(
        f"bulk load rows/s ({args.rows:,} rows, one transaction)",
        best_of(args.runs, lambda: ours(data)),
        best_of(args.runs, lambda: sqlite(data)),
        "SQLite",
        "rows/s",
        0.25,
    )
    print(result.line())
    save("bulk", [result])
    return [result]


if __name__ == "__main__":
    main()
