"""Spool benchmark: ``QUEUE_BACKEND=memory`` against ``sqlite``, side by side in one run.

    cd /tmp && npm pack @octokit/webhooks-examples && tar xzf octokit-webhooks-examples-*.tgz
    python -m benchmarks.spool --examples /tmp/package/api.github.com/index.json \\
        [--burst 2000] [--queued 20000] [--restart 100000] [--repeat 3]

Deliveries are the realistic randomised mix of ``benchmarks/corpus.py`` (seed 7), kept to
the events some processor subscribes to (the others are answered 202 ``ignored`` and never
queued). Each server is the app as ``serve`` runs it (``github_app.cli.serve``: same
settings loading, signal handling, gc freeze, uvicorn with uvloop), its dispatcher paused
so admitted events stay queued, no credentials (dry run), each with a fresh STATE_DIR.
The client runs in this process: requests signed and built beforehand, sent over 32
keep-alive connections on plain asyncio streams (``benchmarks.client.send_burst``), so
the server, not the client, sets the pace of the burst.

Measured, per backend, alternating memory/sqlite each round (``--repeat`` rounds);
medians printed:

- ingest: a burst of ``--burst`` signed deliveries after 200 to warm up; server CPU
  microseconds per delivery (psutil user+system), ack latency p50/p99 as the client saw
  it, and (sqlite) deliveries per commit group;
- memory: resident memory of the server process before and after ``--queued`` deliveries
  were admitted, per queued event, over the raw payload bytes of those deliveries;
- disk: the spool's bytes on disk (database + WAL) per queued event (sqlite), a second
  after the burst and once the spool has been quiet for a while (``SETTLE`` seconds at
  most: the WAL is cut after a burst);
- restart: a spool holding ``--restart`` queued events (written as the app writes them),
  then ``python -m github_app serve`` as a user starts it; seconds from the start of the
  process to the first healthy answer, next to the same start on an empty STATE_DIR
  (``--repeat`` rounds, each on a fresh copy of that spool).

Targets (issue 11): sqlite ingest CPU at most 1.25x memory's, ack p99 at most +5 ms; RSS
growth per queued event at most 5% of its raw bytes; restart with 100,000 queued under 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from benchmarks.client import send_burst
from benchmarks.corpus import PayloadFactory

SECRET = "benchmark-webhook-secret"
WEBHOOK = "/api/github/webhooks"
WARM_UP = 200
SETTLE = 5.0  # seconds the disk measurement waits at most for the spool to settle
CONNECTIONS = 32
BACKENDS = ("memory", "sqlite")


@dataclass(frozen=True)
class Delivery:
    event: str
    body: bytes


def deliveries(examples: Path, count: int, seed: int = 7) -> list[Delivery]:
    """``count`` randomised deliveries of events a processor subscribes to."""
    from github_app.dispatch.registry import Registry

    registry = Registry.load()
    factory = PayloadFactory(examples, seed)
    found: list[Delivery] = []
    while len(found) < count:
        sample = factory.sample()
        if registry.subscribes(sample.event, sample.action):
            found.append(Delivery(sample.event, sample.body))
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_for(backend: str, state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "PRIVATE_KEY"))}
    env.update(
        WEBHOOK_SECRET=SECRET,
        QUEUE_BACKEND=backend,
        STATE_DIR=str(state_dir),
        QUEUE_MAX_EVENTS="2000000",
        QUEUE_MAX_BYTES=str(8 * 2**30),
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


class PausedServer:
    """``python -m benchmarks.spool serve``: the app as ``serve`` runs it, dispatcher paused."""

    def __init__(self, backend: str, state_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{WEBHOOK}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.spool", "serve", "--port", str(self.port)],
            env=env_for(backend, state_dir),
            stdout=subprocess.DEVNULL,
        )
        self.ps = psutil.Process(self.process.pid)
        deadline = time.monotonic() + 60
        while not healthy(self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"{backend} server did not start")
            time.sleep(0.05)

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def post_all(url: str, batch: Sequence[Delivery]) -> list[float]:
    """Post every delivery (``CONNECTIONS`` at a time); ack seconds of each; all must be 202.

    Requests are signed and built before the clock starts and sent over plain asyncio
    streams (``benchmarks.client.send_burst``): an httpx client costs about a millisecond
    of this process's CPU per request, which held the "burst" to a few hundred deliveries
    a second, the server mostly idle, every delivery a commit group of its own.
    """
    signed = []
    for delivery in batch:
        signature = hmac.new(SECRET.encode(), delivery.body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": delivery.event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={signature}",
        }
        signed.append({"body": delivery.body, "headers": headers})
    _, latencies, statuses = asyncio.run(send_burst(url, signed, CONNECTIONS))
    if set(statuses) != {202}:
        raise RuntimeError(f"answers other than 202: {dict(statuses)}")
    return latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@dataclass
class Run:
    cpu_us: float
    p50_ms: float
    p99_ms: float
    per_group: float  # deliveries per commit group (sqlite; 0 for memory)


def commit_groups(port: int) -> float:
    """The spool's commit groups so far, from ``/metrics`` (0 without a spool)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    found = re.search(r"^\w+_spool_commits_total (\S+)$", text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def ingest(backend: str, batch: Sequence[Delivery], folder: Path) -> Run:
    server = PausedServer(backend, folder)
    try:
        post_all(server.url, batch[:WARM_UP])
        groups = commit_groups(server.port)
        before = server.cpu()
        latencies = post_all(server.url, batch[WARM_UP:])
        spent = server.cpu() - before
        groups = commit_groups(server.port) - groups
    finally:
        server.stop()
    count = len(batch) - WARM_UP
    return Run(
        spent / count * 1e6,
        percentile(latencies, 0.5) * 1e3,
        percentile(latencies, 0.99) * 1e3,
        count / groups if groups else 0.0,
    )


@dataclass
class Held:
    rss_per_event: float
    raw_per_event: float
    disk_per_event: float  # a second after the burst
    settled_disk_per_event: float  # once the spool was quiet (``SETTLE`` seconds at most)


def spool_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("spool.sqlite3*"))


def held(backend: str, batch: Sequence[Delivery], folder: Path) -> Held:
    server = PausedServer(backend, folder)
    try:
        post_all(server.url, batch[:WARM_UP])
        time.sleep(1.0)
        before = server.rss()
        queued = batch[WARM_UP:]
        post_all(server.url, queued)
        time.sleep(1.0)
        after = server.rss()
        disk = spool_bytes(folder)
        wal = folder / "spool.sqlite3-wal"
        deadline = time.monotonic() + SETTLE
        while wal.exists() and wal.stat().st_size and time.monotonic() < deadline:
            time.sleep(0.1)
        settled = spool_bytes(folder)
    finally:
        server.stop()
    count = len(queued)
    raw = sum(len(d.body) for d in queued) / count
    return Held((after - before) / count, raw, disk / count, settled / count)


def write_spool(folder: Path, batch: Sequence[Delivery], count: int) -> None:
    """A spool holding ``count`` queued events, written with the app's own statements."""
    from github_app.intake.webhooks import decode_body, make_envelope
    from github_app.queue.compression import PayloadCodec
    from github_app.queue.priority import PriorityRules
    from github_app.queue.spool import SpoolStore, insert_event
    from github_app.queue.state_lock import open_state_dir

    codec, rules = PayloadCodec(), PriorityRules()
    lock = open_state_dir(folder)
    store = SpoolStore(folder)
    try:
        ops = []
        for seq in range(1, count + 1):
            delivery = batch[seq % len(batch)]
            json_body, payload = decode_body(delivery.body, "json")
            envelope = make_envelope(
                delivery_id=str(uuid.uuid4()),
                event=delivery.event,
                json_body=json_body,
                payload=payload,
                received_at=time.time(),
                compress=codec.compress,
            )
            ops += insert_event(seq, envelope, rules.classify(envelope), envelope.payload)
            if len(ops) > 10_000:
                store.apply(ops)
                ops = []
        store.apply(ops)
    finally:
        store.close()
        lock.release()


def restart_seconds(folder: Path) -> tuple[float, str]:
    """Seconds from ``python -m github_app serve`` to its first healthy answer, and its log."""
    port = free_port()
    log = folder.parent / f"{folder.name}.log"
    started = time.perf_counter()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "github_app",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env_for("sqlite", folder, LOG_LEVEL="INFO"),
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
        try:
            while not healthy(port):
                if process.poll() is not None:
                    raise RuntimeError(log.read_text()[-2000:])
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
        finally:
            process.terminate()
            process.wait(60)
    return elapsed, log.read_text()


def restart(count: int, batch: Sequence[Delivery], root: Path, rounds: int) -> None:
    """Restart times, ``rounds`` rounds, medians; each round starts from a fresh copy of the
    same spool (a start may process or settle some of the events it recovered)."""
    template = root / "restart-template"
    write_spool(template, batch, count)
    size = sum(p.stat().st_size for p in template.glob("spool.sqlite3*"))
    full_times: list[float] = []
    empty_times: list[float] = []
    for round_ in range(rounds):
        full = root / f"restart-full-{round_}"
        shutil.copytree(template, full)
        seconds, log = restart_seconds(full)
        baseline, _ = restart_seconds(root / f"restart-empty-{round_}")
        full_times.append(seconds)
        empty_times.append(baseline)
        recovered = re.search(r"recovered (\d+) queued event", log)
        print(
            f"round {round_ + 1} restart with {recovered[1] if recovered else '?'} queued "
            f"events: {seconds:.2f}s to healthy (empty STATE_DIR: {baseline:.2f}s)",
            flush=True,
        )
    print(
        f"restart with {count} queued events, medians: {statistics.median(full_times):.2f}s to "
        f"healthy (empty STATE_DIR: {statistics.median(empty_times):.2f}s; target < 5 s); "
        f"spool {size / 2**20:.0f} MiB = {size / count:.0f} B/event",
        flush=True,
    )


def serve(port: int) -> int:
    """The server side: what ``python -m github_app serve`` runs, the dispatcher paused."""
    import anyio

    from github_app.cli import serve as serve_app
    from github_app.config import load_settings
    from github_app.runtime import Runtime

    settings = load_settings(env_file=None, overrides={"HOST": "127.0.0.1", "PORT": str(port)})
    runtime = Runtime(settings, paused=True)
    result: int = anyio.run(serve_app, settings, runtime, backend_options={"use_uvloop": True})
    return result


def alternating(rounds: int) -> Iterator[tuple[int, str]]:
    """(round, backend) for ``rounds`` rounds, the backends' order swapped every round."""
    for round_ in range(rounds):
        for backend in BACKENDS if round_ % 2 == 0 else BACKENDS[::-1]:
            yield round_, backend


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spool", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    server = commands.add_parser("serve")
    server.add_argument("--port", type=int, required=True)
    parser.add_argument("--examples", type=Path, help="webhooks-examples index.json")
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--queued", type=int, default=20_000)
    parser.add_argument("--restart", type=int, default=100_000)
    parser.add_argument("--repeat", "--rounds", type=int, default=3, help="rounds (medians)")
    parser.add_argument("--only", choices=("ingest", "restart"), help="run one measurement only")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.port)
    if args.examples is None:
        parser.error("--examples is required")
    started = time.perf_counter()
    batch = deliveries(args.examples, WARM_UP + max(args.burst, args.queued))
    print(f"{len(batch)} deliveries built in {time.perf_counter() - started:.0f}s", flush=True)
    root = Path(tempfile.mkdtemp(prefix="spool-bench-"))
    try:
        runs: dict[str, list[Run]] = {b: [] for b in BACKENDS}
        for round_, backend in alternating(0 if args.only == "restart" else args.repeat):
            run = ingest(backend, batch[: WARM_UP + args.burst], root / f"i{round_}{backend}")
            runs[backend].append(run)
            print(
                f"round {round_ + 1} {backend:6}: {run.cpu_us:6.0f} us CPU/delivery, "
                f"ack p50 {run.p50_ms:5.1f} ms p99 {run.p99_ms:5.1f} ms"
                + (f", {run.per_group:.1f} deliveries/commit group" if run.per_group else ""),
                flush=True,
            )
        if args.only == "restart":
            restart(args.restart, batch, root, args.repeat)
            return 0
        fields = ("cpu_us", "p50_ms", "p99_ms", "per_group")
        medians = {
            b: Run(*(statistics.median(getattr(r, f) for r in runs[b]) for f in fields))
            for b in BACKENDS
        }
        memory, sqlite = medians["memory"], medians["sqlite"]
        print(
            f"ingest medians: memory {memory.cpu_us:.0f} us, p50 {memory.p50_ms:.1f} ms, "
            f"p99 {memory.p99_ms:.1f} ms | sqlite {sqlite.cpu_us:.0f} us, "
            f"p50 {sqlite.p50_ms:.1f} ms, p99 {sqlite.p99_ms:.1f} ms | CPU ratio "
            f"{sqlite.cpu_us / memory.cpu_us:.2f}x (target <= 1.25x), p99 "
            f"{sqlite.p99_ms - memory.p99_ms:+.1f} ms (target <= +5 ms); "
            f"{sqlite.per_group:.1f} deliveries per commit group",
            flush=True,
        )
        if args.only == "ingest":
            return 0
        held_runs: dict[str, list[Held]] = {b: [] for b in BACKENDS}
        for round_, backend in alternating(args.repeat):
            h = held(backend, batch[: WARM_UP + args.queued], root / f"h{round_}{backend}")
            held_runs[backend].append(h)
            print(
                f"round {round_ + 1} {backend:6}: {args.queued} queued, RSS "
                f"+{h.rss_per_event:.0f} B/event = {h.rss_per_event / h.raw_per_event:.2%} "
                f"of raw; spool on disk {h.disk_per_event:.0f} B/event, settled "
                f"{h.settled_disk_per_event:.0f}",
                flush=True,
            )
        for backend in BACKENDS:
            rss = statistics.median(h.rss_per_event for h in held_runs[backend])
            raw = held_runs[backend][0].raw_per_event
            disk = statistics.median(h.disk_per_event for h in held_runs[backend])
            settled = statistics.median(h.settled_disk_per_event for h in held_runs[backend])
            print(
                f"{args.queued} queued, {backend:6} medians: RSS +{rss:.0f} B/event over "
                f"{raw:.0f} raw B/event = {rss / raw:.2%} (target <= 5% for sqlite); spool on "
                f"disk {disk:.0f} B/event a second after the burst, {settled:.0f} settled",
                flush=True,
            )
        restart(args.restart, batch, root, args.repeat)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
