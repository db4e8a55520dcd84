"""Prometheus metrics: what the runner observes, plus the status document as gauges.

Two sources, one registry per runtime (never the process-global one, so two
apps in one process, as in the tests, do not collide):

- The runner reports each processor call and each finished event through the
  ``RunObserver`` hook; those feed a processing-latency histogram and
  counters labelled by priority, event and processor. Labels are bounded: the
  priority has four values, events reaching the runner are those some
  processor subscribes to, processors are the registry's. Never a delivery
  id, an issue or a repository.
- Everything else (queue depth and bytes per level, width, intake counts,
  cached tokens, host) is read at scrape time from ``StatusReporter``, so the
  endpoint and ``/admin/status`` cannot disagree.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import anyio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from github_app.queue.event import QueuedEvent

PREFIX = "auto_issue_processor"
PROCESSING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
END_TO_END_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)

StatusSource = Callable[[], Mapping[str, Any]]
Children = tuple[Histogram, Counter, Counter]  # latency, ok count, failed count


class Metrics:
    """The runtime's metric registry; also the runner's ``RunObserver``."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("priority", "event", "processor")
        self.processing_seconds = Histogram(
            f"{PREFIX}_processing_seconds",
            "Time one processor took on one event.",
            labels,
            buckets=PROCESSING_BUCKETS,
            registry=self.registry,
        )
        self.processor_runs = Counter(
            f"{PREFIX}_processor_runs",
            "Processor calls by outcome (ok or failed).",
            (*labels, "outcome"),
            registry=self.registry,
        )
        self.events_processed = Counter(
            f"{PREFIX}_events_processed",
            "Events the runner finished, by outcome (ok: every processor succeeded).",
            ("priority", "event", "outcome"),
            registry=self.registry,
        )
        self.event_seconds = Histogram(
            f"{PREFIX}_event_seconds",
            "From receipt of the delivery to the end of its processing (queue wait included).",
            ("priority",),
            buckets=END_TO_END_BUCKETS,
            registry=self.registry,
        )
        # labels() costs about as much as the update itself: keep the children per label set
        # (the label sets are bounded, so is this dict).
        self._processor_children: dict[tuple[str, str, str], Children] = {}
        self._event_children: dict[tuple[str, str], Children] = {}
        self._collector: StatusCollector | None = None
        self._scrape_lock: anyio.Lock | None = None

    def processor_finished(
        self, item: QueuedEvent, processor: str, seconds: float, ok: bool
    ) -> None:
        key = (item.priority.name, item.envelope.event, processor)
        children = self._processor_children.get(key)
        if children is None:
            children = (
                self.processing_seconds.labels(*key),
                self.processor_runs.labels(*key, "ok"),
                self.processor_runs.labels(*key, "failed"),
            )
            self._processor_children[key] = children
        children[0].observe(seconds)
        (children[1] if ok else children[2]).inc()

    def event_finished(self, item: QueuedEvent, ok: bool) -> None:
        key = (item.priority.name, item.envelope.event)
        children = self._event_children.get(key)
        if children is None:
            children = (
                self.event_seconds.labels(key[0]),
                self.events_processed.labels(*key, "ok"),
                self.events_processed.labels(*key, "failed"),
            )
            self._event_children[key] = children
        (children[1] if ok else children[2]).inc()
        children[0].observe(max(0.0, self._clock() - item.envelope.received_at))

    def processing_buckets(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The processing histogram summed over its label sets: upper bounds and cumulative
        counts (the last count is the +Inf bucket), for the dashboard's p50 and p99."""
        counts = [0.0] * (len(PROCESSING_BUCKETS) + 1)
        for family in self.processing_seconds.collect():
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    bound = float(sample.labels["le"])
                    index = (
                        PROCESSING_BUCKETS.index(bound)
                        if bound in PROCESSING_BUCKETS
                        else len(PROCESSING_BUCKETS)
                    )
                    counts[index] += sample.value
        return PROCESSING_BUCKETS, tuple(counts)

    def watch(self, status: StatusSource) -> None:
        """Expose the status document's numbers as gauges and counters at scrape time."""
        self._collector = StatusCollector(status)
        self.registry.register(self._collector)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type, computed in the calling thread."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    async def scrape(self) -> tuple[bytes, str]:
        """``render`` without stalling the event loop that acknowledges webhooks.

        Formatting every series takes milliseconds once label sets fill up, so it runs
        in a worker thread (prometheus-client's values are thread-safe). The status
        document is read here, on the loop, because the parts' stats change only there.
        """
        if self._scrape_lock is None:
            self._scrape_lock = anyio.Lock()
        async with self._scrape_lock:
            if self._collector is not None:
                self._collector.snapshot = self._collector.read()
            try:
                body = await anyio.to_thread.run_sync(generate_latest, self.registry)
            finally:
                if self._collector is not None:
                    self._collector.snapshot = None
        return body, CONTENT_TYPE_LATEST


class StatusCollector(Collector):
    """Reads one status document per scrape and turns its numbers into metric families."""

    def __init__(self, status: StatusSource) -> None:
        self.read = status
        self.snapshot: Mapping[str, Any] | None = None  # set by ``Metrics.scrape``

    def describe(self) -> list[Metric]:
        return []  # families vary with the parts present; collected fresh each scrape

    def collect(self) -> Iterator[Metric]:
        doc = self.snapshot if self.snapshot is not None else self.read()
        queue = doc["queue"]
        yield _by_priority(
            "queue_depth", "Events waiting, per priority.", queue["depth_by_priority"]
        )
        yield _by_priority(
            "queue_bytes",
            "Compressed payload bytes waiting, per priority.",
            queue["bytes_by_priority"],
        )
        yield _gauge("queue_in_flight", "Events taken and not yet done.", queue["in_flight"])
        spool = queue.get("spool")
        if isinstance(spool, Mapping):
            yield _gauge(
                "spool_bytes", "Size of the spool on disk (database and WAL).", spool["bytes"]
            )
            yield _gauge(
                "spool_available",
                "1 when the spool's last commit succeeded.",
                int(not spool["problem"]),
            )
            yield CounterMetricFamily(
                f"{PREFIX}_spool_commits", "Commit groups written to the spool.", spool["commits"]
            )
        yield from _shared_queue(queue.get("shared"))
        refused = CounterMetricFamily(
            f"{PREFIX}_queue_refused",
            "Offers refused (queue full), per priority.",
            labels=["priority"],
        )
        for priority, count in queue["refused_by_priority"].items():
            refused.add_metric([priority], count)
        yield refused
        dead = queue.get("dead_letters")
        if isinstance(dead, Mapping):
            yield _gauge(
                "dead_letters", "Dead letters kept, inspectable and re-drivable.", dead["depth"]
            )
            removed = CounterMetricFamily(
                f"{PREFIX}_dead_letters_removed",
                "Dead letters taken out: dropped (the queue of them was full: lost), "
                "redriven, purged, superseded (GitHub redelivered them).",
                labels=["outcome"],
            )
            for outcome in ("dropped", "redriven", "purged", "superseded"):
                removed.add_metric([outcome], dead[outcome])
            yield removed
        totals = doc["totals"]
        # processed/failed are events_processed_total above, with labels.
        for name in ("admitted", "retried", "expired", "dead_lettered"):
            if isinstance(totals.get(name), int):
                yield CounterMetricFamily(
                    f"{PREFIX}_events_{name}", f"Events {name.replace('_', '-')}.", totals[name]
                )
        dispatcher = doc["dispatcher"]
        yield _gauge(
            "dispatcher_width", "Events processed at once at most now.", dispatcher["width"]
        )
        yield _gauge("dispatcher_in_flight", "Events being processed.", dispatcher["in_flight"])
        intake = doc["intake"]
        deliveries = CounterMetricFamily(
            f"{PREFIX}_deliveries", "Webhook deliveries by what happened.", labels=["outcome"]
        )
        deliveries.add_metric(["received"], intake["received"])
        for outcome in ("queued", "duplicates", "ignored", "pings", "refused"):
            deliveries.add_metric([outcome], intake[outcome])
        yield deliveries
        rejected = CounterMetricFamily(
            f"{PREFIX}_deliveries_rejected", "Deliveries rejected, by reason.", labels=["reason"]
        )
        for reason, count in intake["rejected"].items():
            rejected.add_metric([reason], count)
        yield rejected
        yield _gauge("ready", "1 when the app accepts NORMAL work.", int(doc["ready"]["ready"]))
        yield _gauge("uptime_seconds", "Seconds since start.", doc["app"]["uptime_seconds"])
        github = doc["github"]
        yield _gauge("tokens_cached", "Installation tokens cached.", github["tokens_cached"])
        shared = github.get("shared_limits")
        if isinstance(shared, Mapping):  # QUEUE_BACKEND=redis
            yield _gauge(
                "github_limits_shared",
                "1 while GitHub's limits are shared in Redis, 0 while this replica paces alone.",
                int(shared["kept_in"] == "redis"),
            )
        yield _gauge(
            "config_error_repositories",
            "Repositories whose config file is invalid.",
            len(doc["config_errors"]),
        )
        yield from _recovery(doc.get("recovery"))
        for section in ("controller", "breaker"):
            yield from _numeric_fields(section, doc.get(section))
        host = doc["host"]
        yield _gauge("host_cpu_percent", "Host CPU use, percent.", host["cpu_percent"])
        yield _gauge("process_rss_bytes", "Resident memory of this process.", host["rss_bytes"])


def _shared_queue(shared: Any) -> Iterator[Metric]:
    """QUEUE_BACKEND=redis: the queue all replicas share, and the replicas seen recently."""
    if not isinstance(shared, Mapping):
        return
    yield _by_priority(
        "shared_queue_depth",
        "Events in the shared queue (all replicas), waiting or taken, per priority.",
        shared["depth_by_priority"],
    )
    yield _by_priority(
        "shared_queue_pending",
        "Events of the shared queue read by a replica and not settled yet, per priority.",
        shared["pending_by_priority"],
    )
    yield _gauge("shared_dead_letters", "Dead letters in the shared queue.", shared["dead_letters"])
    yield _gauge(
        "redis_available", "1 when Redis answered this replica.", int(not shared["problem"])
    )
    yield CounterMetricFamily(
        f"{PREFIX}_shared_queue_claimed",
        "Events this replica claimed from replicas that stopped answering.",
        shared["claimed"],
    )
    beats = GaugeMetricFamily(
        f"{PREFIX}_replica_beat_age_seconds",
        "Seconds since each replica seen recently sent its heartbeat.",
        labels=["replica"],
    )
    for replica in shared["replicas"]:
        beats.add_metric([replica["replica_id"]], replica["beat_age"])
    yield beats


def _recovery(recovery: Any) -> Iterator[Metric]:
    """Redelivery requests by outcome, events recovered and given up, the last round's end."""
    if not isinstance(recovery, Mapping):
        return
    requests = CounterMetricFamily(
        f"{PREFIX}_redelivery_requests",
        "Redeliveries asked of GitHub by recovery: accepted (202) or refused.",
        labels=["outcome"],
    )
    requests.add_metric(["accepted"], recovery["requested"])
    requests.add_metric(["refused"], recovery["request_failed"])
    yield requests
    yield CounterMetricFamily(
        f"{PREFIX}_recovered_deliveries",
        "Events recovery asked for that came back and were admitted.",
        recovery["recovered"],
    )
    yield CounterMetricFamily(
        f"{PREFIX}_recovery_given_up",
        "Events recovery gave up on after RECOVERY_MAX_ATTEMPTS requests.",
        recovery["given_up"],
    )
    yield CounterMetricFamily(
        f"{PREFIX}_recovery_rounds", "Rounds of recovery run.", recovery["rounds"]
    )
    yield _gauge(
        "recovery_outstanding", "Redeliveries requested, not back yet.", recovery["outstanding"]
    )
    last = recovery.get("last_round")
    if isinstance(last, Mapping) and last.get("finished_at") is not None:
        yield _gauge(
            "recovery_last_round_timestamp_seconds",
            "When the last round of recovery ended (epoch).",
            last["finished_at"],
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def _by_priority(name: str, documentation: str, values: Mapping[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=["priority"])
    for priority, value in values.items():
        family.add_metric([priority], value)
    return family


def _numeric_fields(section: str, values: Any) -> Iterator[Metric]:
    """Top-level numbers of a part's stats (controller, breaker) as gauges, whatever they are."""
    if not isinstance(values, Mapping):
        return
    for key, value in values.items():
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, int | float) and key.isidentifier():
            yield _gauge(f"{section}_{key}", f"{section} {key.replace('_', ' ')}.", value)
