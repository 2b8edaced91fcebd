"""Run every benchmark and print a Markdown table of the results (as used in docs/performance.md).

Each benchmark measures ShadowStore and its named peer in the same run; results are also saved as JSON in
bench/results/. Nothing here runs in CI.
"""

from __future__ import annotations

import sys

import bench_backup
import bench_bulk
import bench_commits
import bench_replay
import bench_restore
from common import Result


def main() -> int:
    results: list[Result] = []
    for module in (bench_commits, bench_bulk, bench_replay, bench_backup, bench_restore):
        sys.argv = [module.__name__]
        results += module.main()
    print("\n| benchmark | ShadowStore | peer | ratio | target |")
    print("|---|---:|---:|---:|---|")
    for r in results:
        verdict = "met" if r.met else "**not met**"
        print(
            f"| {r.name} | {r.ours:,.0f} {r.unit} | {r.peer_name} {r.peer:,.0f} | {r.ratio:.2f} | "
            f">= {r.target_ratio} ({verdict}) |"
        )
    return 0 if all(r.met for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
