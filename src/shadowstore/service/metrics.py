"""Prometheus metrics of the service (``GET /metrics``), read from the engine's state at each scrape.

Gauges come from what is on disk or in memory when scraped (nothing to drift): the last successful backup of
each kind per storage group (from the stores' headers, so they survive a restart), the current log generation,
the checkpoint depth in generations, and which stores are mounted. Backup durations and bytes are observed as
the service's backup sessions complete. How long durable commits waited for the log disk comes from the home's
histogram (engine/flushwaits.py), in octaves, apart for commits made while a backup ran: what a paced backup
watches, for the operator to watch too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from shadowstore.engine.backup import SLOT_OF_KIND
from shadowstore.engine.flushwaits import BUCKETS, lower_ns, split
from shadowstore.engine.store import Store
from shadowstore.errors import ShadowStoreError
from shadowstore.format.dbheader import DbHeader

if TYPE_CHECKING:
    from shadowstore.service.host import InformationStore

_DURATION_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, float("inf"))


class ServiceMetrics:
    """The registry of one service (one per host, so tests may run several)."""

    def __init__(self, host: InformationStore) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_EngineCollector(host))
        self.backup_seconds = Histogram(
            "shadowstore_backup_duration_seconds",
            "Duration of completed streaming backups",
            ["sg", "kind"],
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.backup_bytes = Counter(
            "shadowstore_backup_bytes",
            "Bytes read by completed streaming backups",
            ["sg", "kind"],
            registry=self.registry,
        )
        self.backups = Counter(
            "shadowstore_backups",
            "Streaming backup sessions by how they ended: completed, failed or aborted",
            ["sg", "kind", "result"],
            registry=self.registry,
        )

    def backup_done(self, sg: str, kind: str, seconds: float, count: int) -> None:
        self.backup_seconds.labels(sg, kind).observe(seconds)
        self.backup_bytes.labels(sg, kind).inc(count)

    def backup_ended(self, sg: str, kind: str, result: str) -> None:
        """A session ended: ``result`` is completed, failed (an error of the backup) or aborted (its program, an
        administrator, a lapsed lease or a dismount ended it)."""
        self.backups.labels(sg, kind, result).inc()


class _EngineCollector(Collector):
    def __init__(self, host: InformationStore) -> None:
        self.host = host

    def collect(self) -> Iterator[Metric]:
        last = GaugeMetricFamily(
            "shadowstore_last_backup_timestamp_seconds",
            "Time of the last successful backup of each kind (newest over the storage group's stores)",
            labels=["sg", "kind"],
        )
        generation = GaugeMetricFamily("shadowstore_log_generation", "Current log generation", labels=["sg"])
        depth = GaugeMetricFamily(
            "shadowstore_checkpoint_depth_generations",
            "Log generations between the checkpoint and the current log",
            labels=["sg"],
        )
        mounted = GaugeMetricFamily("shadowstore_store_mounted", "1 when the store is mounted", labels=["sg", "store"])
        commits = CounterMetricFamily(
            "shadowstore_mail_commits", "Transactions the commit batcher committed", labels=["sg", "store"]
        )
        deliveries = CounterMetricFamily(
            "shadowstore_mail_deliveries", "Delivery requests those transactions carried", labels=["sg", "store"]
        )
        for (sg_name, store_name), batcher in self.host.mail.batchers().items():
            commits.add_metric([sg_name, store_name], batcher.commits)
            deliveries.add_metric([sg_name, store_name], batcher.works)
        by_socket = CounterMetricFamily(
            "shadowstore_mail_socket_deliveries",
            "Deliveries stored from the mail socket (service/mailsocket.py); the others came over HTTP",
            value=self.host.mail.socket_deliveries,
        )
        shared_reads = CounterMetricFamily(
            "shadowstore_mail_shared_reads",
            "Reads from the mail socket whose messages went through shared memory (service/sharedread.py)",
            value=self.host.mail.shared_reads,
        )
        waits = HistogramMetricFamily(
            "shadowstore_log_flush_wait_seconds",
            "How long durable commits waited for the log disk, while no backup ran and while one did",
            labels=["backup"],
        )
        home = self.host.home
        if home is not None:
            every, quiet = split(home.flush_waits.reading())
            waits.add_metric(["none"], _octaves(quiet), None)
            waits.add_metric(["running"], _octaves([a - b for a, b in zip(every, quiet, strict=True)]), None)
            for sg in home.storage_groups():
                headers = [h for h in map(_header, sg.stores.values()) if h is not None]
                for kind, slot in SLOT_OF_KIND.items():
                    times = [getattr(h, slot).time_us for h in headers]
                    newest = max((t for t in times if t), default=0)
                    if newest:
                        last.add_metric([sg.name, kind], newest / 1e6)
                for store in sg.stores.values():
                    mounted.add_metric([sg.name, store.name], 1.0 if store.mounted else 0.0)
                if sg.mounted:
                    current = sg.log.disk_generation
                    generation.add_metric([sg.name], float(current))
                    depth.add_metric([sg.name], float(current - sg.checkpoint_position.gen))
        yield from (last, generation, depth, mounted, commits, deliveries, by_socket, shared_reads, waits)


def _octaves(counts: list[int]) -> list[tuple[str, float]]:
    """Cumulative counts of ``counts`` (engine/flushwaits.py buckets) at every octave's bound: 4 µs to 1 s."""
    cumulative, total, bound = [], 0, 4
    for index in range(BUCKETS):
        if index == bound:
            cumulative.append((f"{lower_ns(index) / 1e9:g}", float(total)))
            bound += 4
        total += counts[index]
    cumulative.append(("+Inf", float(total)))
    return cumulative


def _header(store: Store) -> DbHeader | None:
    if store.header is not None:
        return store.header
    try:
        return store.read_header()
    except (ShadowStoreError, OSError):
        return None  # a store that cannot be read has no backup time to show; status says why
