"""``shadowstore workload run|check``: a deterministic workload for crash tests from outside the process."""

from __future__ import annotations

import sys

import click

from shadowstore.cli.common import CliContext, json_option, pass_ctx, print_json
from shadowstore.engine.transaction import MAX_VALUE_SIZE
from shadowstore.home import DEFAULT_SG
from shadowstore.tools import workload

# Checked before the home is opened. Why --committed has the bound of --txns, not what the storage group holds:
# that is known only once it is mounted, and check() costs what the store holds, so any count in range is quick.
TXNS = click.IntRange(0, workload.MAX_TXNS)
VALUE_SIZE = click.IntRange(0, MAX_VALUE_SIZE)  # the engine's largest value (a bigger one would never be stored)
THREADS = click.IntRange(1, workload.MAX_THREADS)


@click.group("workload")
def workload_group() -> None:
    """Run and verify a deterministic workload."""


@workload_group.command("run")
@click.option("--sg", default=DEFAULT_SG, show_default=True, help="Storage group.")
@click.option("--store", default="Mailbox Store", show_default=True, help="Store name or file name.")
@click.option("--txns", type=TXNS, required=True, help="Number of transactions to commit.")
@click.option("--seed", type=int, required=True, help="Seed that keys and values derive from.")
@click.option("--value-size", type=VALUE_SIZE, default=100, show_default=True, help="Bytes per value.")
@click.option("--threads", type=THREADS, default=1, show_default=True, help="Committing threads.")
@click.option("--print-times", is_flag=True, help="Print 'committed <n> <commit time, µs since 1970>'.")
@pass_ctx
def run(
    ctx: CliContext, sg: str, store: str, txns: int, seed: int, value_size: int, threads: int, print_times: bool
) -> None:
    """Mount, commit TXNS transactions printing 'committed <n>' after each durable commit, dismount."""
    home = ctx.open_home()
    group = home.storage_group(sg)
    group.mount()
    try:
        target = group.store(store)

        def report(n: int, commit_time_us: int) -> None:
            sys.stdout.write(f"committed {n} {commit_time_us}\n" if print_times else f"committed {n}\n")
            sys.stdout.flush()

        workload.run(target, txns=txns, seed=seed, value_size=value_size, threads=threads, on_commit=report)
    finally:
        group.dismount()


@workload_group.command("check")
@click.option("--sg", default=DEFAULT_SG, show_default=True)
@click.option("--store", default="Mailbox Store", show_default=True)
@click.option("--seed", type=int, required=True)
@click.option("--committed", type=TXNS, required=True, help="Transactions 1..N that must all be present.")
@click.option("--value-size", type=VALUE_SIZE, default=100, show_default=True)
@click.option("--exact", is_flag=True, help="Also fail if a transaction after N is present (point-in-time restores).")
@json_option
@pass_ctx
def check(
    ctx: CliContext, sg: str, store: str, seed: int, committed: int, value_size: int, exact: bool, as_json: bool
) -> None:
    """Mount (recovering if needed) and verify the workload; exit 30 naming any mismatch."""
    home = ctx.open_home()
    group = home.storage_group(sg)
    recovery = group.mount()
    try:
        result = workload.check(group.store(store), seed=seed, committed=committed, value_size=value_size, exact=exact)
    finally:
        group.dismount()
    if as_json:
        print_json(
            {
                "ok": True,
                "seed": seed,
                "committed": committed,
                "present": result.present,
                "beyond": result.beyond,
                "recovered_stores": recovery.stores,
                "replayed_records": recovery.records,
            }
        )
        return
    if recovery.stores:
        click.echo(f"soft recovery replayed {recovery.records} transaction(s) into {', '.join(recovery.stores)}")
    click.echo(
        f"ok: transactions 1..{committed} of seed {seed} are present and intact; "
        f"{len(result.beyond)} later transaction(s) complete; none partial"
    )


def register(cli: click.Group) -> None:
    cli.add_command(workload_group)
