"""Queue benchmark: 100,000 randomised deliveries through MemoryQueue and the payload codec.

Command (from the repository root; the examples come from npm, see benchmarks/corpus.py)::

    cd /tmp && npm pack @octokit/webhooks-examples && tar xzf octokit-webhooks-examples-*.tgz
    .venv/bin/python -m benchmarks.queue_burst --examples /tmp/package/api.github.com/index.json

The deliveries are built by ``benchmarks/corpus.py`` with ``--seed`` (default 7); the
shipped dictionary was trained on seed 1, so training and measuring use different
randomised payloads. Each delivery is compressed by the app's codec (the shipped
dictionary), timed one by one, decompressed and checked; plain zstd at the same level
runs side by side on the same payloads. Then the whole burst is offered to one queue
(nothing refused: bounds above the burst) and drained with take + done, timed in
batches of 100. A second, identical queue is drained while checking, at every take,
that no eligible event of a higher level was waiting (priority order), and recording
which installation was served; Jain's fairness index is computed per level over the
first quarter of that level's dequeues (while the backlog lasts), on each
installation's service divided by its max-min fair share, next to the same index for
plain arrival order (FIFO). The clock is fixed, so neither ageing nor TTL interferes.

Printed: enqueue and dequeue microseconds per event (median over batches), queued bytes
/ raw bytes with and without the dictionary, compress + decompress microseconds per
event (median), RSS before and after the queue is filled and the process's peak RSS,
the priority-order fraction, and Jain's index; and the median time of one ``stats()``
call with the whole burst queued, then with 64 of its events in flight. Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import psutil
import zstandard

from benchmarks.corpus import PayloadFactory
from github_app.envelope import Envelope
from github_app.intake.webhooks import routing_fields
from github_app.queue.compression import DEFAULT_LEVEL, PayloadCodec
from github_app.queue.memory import MemoryQueue
from github_app.queue.priority import Priority, PriorityRules

BATCH = 100
IN_FLIGHT = 64  # events taken (their issues busy) for the second stats() timing


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


# The deliveries are generated in a child process (the RSS printed is the parent's):
# parsing and randomising 1.5 GB of JSON fragments the allocator, and the RSS should
# show the queued events, not that garbage.
_factory: Any = None


def _start_worker(examples: Path, seed: int) -> None:
    global _factory
    _factory = PayloadFactory(examples, seed)


def _generate(count: int) -> tuple[list[tuple[Any, ...]], list[float], list[float], int, int]:
    assert _factory is not None
    codec = PayloadCodec()
    plain = zstandard.ZstdCompressor(level=DEFAULT_LEVEL)
    plain_d = zstandard.ZstdDecompressor()
    clock = time.perf_counter_ns
    rows: list[tuple[Any, ...]] = []
    codec_us: list[float] = []
    plain_us: list[float] = []
    raw_bytes = plain_bytes = 0
    for sample in _factory.samples(count):
        body = sample.body
        t0 = clock()
        packed = codec.compress(body)
        back = codec.decompress(packed)
        t1 = clock()
        other = plain.compress(body)
        plain_back = plain_d.decompress(other)
        t2 = clock()
        if back != body or plain_back != body:
            raise RuntimeError("round trip failed")
        codec_us.append((t1 - t0) / 1000)
        plain_us.append((t2 - t1) / 1000)
        raw_bytes += len(body)
        plain_bytes += len(other)
        fields = routing_fields(json.loads(body))
        rows.append((sample.event, packed, len(body), tuple(sorted(fields.items()))))
    return rows, codec_us, plain_us, raw_bytes, plain_bytes


def build(examples: Path, seed: int, count: int) -> tuple[list[tuple[Envelope, Priority]], dict]:
    rules = PriorityRules()
    events: list[tuple[Envelope, Priority]] = []
    codec_us: list[float] = []
    plain_us: list[float] = []
    raw_bytes = plain_bytes = packed_bytes = 0
    chunks = [min(1000, count - start) for start in range(0, count, 1000)]
    context = multiprocessing.get_context("fork")
    with context.Pool(1, initializer=_start_worker, initargs=(examples, seed)) as pool:
        for rows, c_us, p_us, raw, plain in pool.imap(_generate, chunks):
            codec_us += c_us
            plain_us += p_us
            raw_bytes += raw
            plain_bytes += plain
            for event, packed, size, fields in rows:
                envelope = Envelope(
                    delivery_id=f"d{len(events)}",
                    event=event,
                    received_at=0.0,
                    payload=packed,
                    raw_size=size,
                    **dict(fields),
                )
                packed_bytes += len(packed)
                events.append((envelope, rules.classify(envelope)))
    figures = {
        "raw_bytes": raw_bytes,
        "packed_bytes": packed_bytes,
        "plain_bytes": plain_bytes,
        "codec_us": statistics.median(codec_us),
        "plain_us": statistics.median(plain_us),
        "dictionary_id": PayloadCodec().dictionary_id,
    }
    return events, figures


def new_queue(count: int) -> MemoryQueue:
    # LOW may fill half the bound: twice the burst lets every delivery in.
    return MemoryQueue(2 * count + 2, 2**40, clock=lambda: 0.0)


def timed_fill(queue: MemoryQueue, events: list[tuple[Envelope, Priority]]) -> list[float]:
    per_event = []
    offer = queue.offer
    for start in range(0, len(events), BATCH):
        batch = events[start : start + BATCH]
        t0 = time.perf_counter_ns()
        for envelope, priority in batch:
            offer(envelope, priority)
        per_event.append((time.perf_counter_ns() - t0) / 1000 / len(batch))
    return per_event


def timed_stats(queue: MemoryQueue, calls: int = 21) -> float:
    """Median microseconds of one ``stats()`` call (the sampler and every scrape make one)."""
    times = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        queue.stats()
        times.append((time.perf_counter_ns() - t0) / 1000)
    return statistics.median(times)


def timed_drain(queue: MemoryQueue) -> list[float]:
    per_event = []
    take, done = queue.take, queue.done
    while len(queue):
        t0 = time.perf_counter_ns()
        n = 0
        for _ in range(BATCH):
            item = take()
            if item is None:
                break
            done(item)
            n += 1
        if n:
            per_event.append((time.perf_counter_ns() - t0) / 1000 / n)
    return per_event


def checked_drain(queue: MemoryQueue) -> tuple[float, list[tuple[Priority, int | None]]]:
    """Fraction of takes with no eligible higher-level event waiting; who was served, in order."""
    respected = total = 0
    served: list[tuple[Priority, int | None]] = []
    while True:
        ready = queue.ready_by_priority()
        item = queue.take()
        if item is None:
            break
        best = min((p for p, n in ready.items() if n), default=item.priority)
        total += 1
        respected += item.priority <= best
        served.append((item.priority, item.envelope.installation_id))
        queue.done(item)
    return respected / total, served


def max_min_shares(demand: dict[int | None, int], slots: int) -> dict[int | None, float]:
    """Water-filling: each installation gets an equal share, capped by what it asked for."""
    shares: dict[int | None, float] = {}
    remaining = dict(demand)
    left = float(slots)
    while remaining and left > 1e-9:
        even = left / len(remaining)
        small = {k: v for k, v in remaining.items() if v <= even}
        if not small:
            for key in remaining:
                shares[key] = even
            return shares
        for key, value in small.items():
            shares[key] = value
            left -= value
            del remaining[key]
    return shares


def jain(values: list[float]) -> float:
    total = sum(values)
    squares = sum(v * v for v in values)
    return total * total / (len(values) * squares) if squares else 1.0


def fairness(sequence: list[int | None], demand: dict[int | None, int]) -> float:
    window = max(1, len(sequence) // 4)
    served = Counter(sequence[:window])
    shares = max_min_shares(demand, window)
    return jain([served.get(key, 0) / share for key, share in shares.items() if share > 0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="queue benchmark")
    parser.add_argument("--examples", type=Path, required=True)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    rss_start = rss_mb()
    started = time.monotonic()
    events, figures = build(args.examples, args.seed, args.events)
    built = time.monotonic() - started
    levels = Counter(priority.name for _, priority in events)
    installations = len({e.installation_id for e, _ in events})
    print(
        f"{len(events)} deliveries (seed {args.seed}), {installations} installations, "
        f"built in {built:.0f}s; levels: {dict(sorted(levels.items()))}"
    )
    raw = figures["raw_bytes"]
    print(f"raw JSON: {raw / 2**20:.1f} MiB, {raw / len(events):.0f} bytes per delivery")

    rss_before = rss_mb()
    queue = new_queue(len(events))
    enqueue = timed_fill(queue, events)
    rss_full = rss_mb()
    stats = queue.stats()
    assert stats.depth == len(events), "the benchmark queue refused deliveries"
    queued_bytes = stats.bytes
    stats_full = timed_stats(queue)
    taken = [item for item in (queue.take() for _ in range(IN_FLIGHT)) if item is not None]
    stats_busy = timed_stats(queue)
    for item in taken:
        queue.done(item)
    dequeue = timed_drain(queue)
    assert len(queue) == 0

    check_queue = new_queue(len(events))
    for envelope, priority in events:
        check_queue.offer(envelope, priority)
    order_fraction, served = checked_drain(check_queue)

    by_level_served: dict[Priority, list[int | None]] = defaultdict(list)
    for priority, installation in served:
        by_level_served[priority].append(installation)
    by_level_arrival: dict[Priority, list[int | None]] = defaultdict(list)
    for envelope, priority in events:
        by_level_arrival[priority].append(envelope.installation_id)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(f"enqueue  median {statistics.median(enqueue):6.2f} us/event (batches of {BATCH})")
    print(f"dequeue  median {statistics.median(dequeue):6.2f} us/event (take + done)")
    print(
        f"stats()  median {stats_full:8.1f} us with {len(events)} queued, "
        f"{stats_busy:8.1f} us with {IN_FLIGHT} of them in flight"
    )
    print(
        f"queued bytes / raw bytes: {queued_bytes / raw:.4f} "
        f"(dictionary {figures['dictionary_id']}; plain zstd level {DEFAULT_LEVEL}: "
        f"{figures['plain_bytes'] / raw:.4f}; saving {1 - queued_bytes / raw:.1%})"
    )
    print(
        f"compress + decompress median: {figures['codec_us']:.1f} us/event with the "
        f"dictionary, {figures['plain_us']:.1f} us without"
    )
    print(
        f"RSS at start {rss_start:.0f} MiB; {len(events)} compressed envelopes built "
        f"{rss_before:.0f} MiB; all of them queued {rss_full:.0f} MiB "
        f"(queue structures +{rss_full - rss_before:.0f} MiB); peak {peak:.0f} MiB"
    )
    print(f"priority order respected: {order_fraction:.4%} of {len(served)} dequeues")
    print(
        "Jain's fairness index across installations (first quarter of each level's "
        "dequeues, service / max-min fair share):"
    )
    for priority in Priority:
        sequence = by_level_served.get(priority)
        if not sequence:
            continue
        demand = Counter(sequence)
        rr = fairness(sequence, demand)
        fifo = fairness(by_level_arrival[priority], demand)
        print(
            f"  {priority.name:8} {len(sequence):6} events, {len(demand):3} installations: "
            f"queue {rr:.3f}, arrival order (FIFO) {fifo:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
