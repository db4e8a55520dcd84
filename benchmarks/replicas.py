"""Replicas on one Redis: 1, 2 and 3 copies of the app against the simulated GitHub, side by side.

    python -m benchmarks.replicas [--replicas 1,2,3] [--repeat 1] [--ingest 1000]
        [--deliveries 600] [--installations 10] [--kill-deliveries 300] [--claim-idle 5]

For each replica count, three phases, each on a fresh Redis (``redis-server`` on a
free port in its own folder, AOF ``everysec`` as README advises) and fresh replicas
(``python -m github_app serve`` with ``QUEUE_BACKEND=redis``, each on its own port,
with real credentials against ``benchmarks.github_sim`` in its own process, GitHub's
per-installation limits: 80 writes a minute, 100 concurrent requests, 5,000 an hour).
A sender spreads signed ``issues.opened`` deliveries over the replicas round-robin,
request by request, as a reverse proxy would (one that cannot connect to a replica
sends the request to the next; a request cut off mid-way is a failed delivery, which
GitHub's log keeps for recovery).

ingest  GitHub stalled (every API answer takes a minute), so nothing is processed:
        ``--ingest`` deliveries at once over 32 connections; aggregate deliveries
        per second (first sent to last answered) and the ack p99; Redis memory per
        queued event (``INFO memory`` ``used_memory`` after minus before, over the
        events admitted, all still queued).
drain   ``--deliveries`` deliveries over ``--installations`` installations, about half
        of which make the labeler write one label; the time from the first delivery
        to the last label, against the bound one write a second per installation
        sets, and the secondary-limit answers GitHub gave (target 0: N replicas
        must write to an installation as one process does).
kill    ``--kill-deliveries`` deliveries that each make one write, sent at
        ``--kill-rate`` a second; when half are answered one replica is killed with
        -9 (with one replica, it is started again at once). Lost: deliveries
        answered 202 whose label never came (target 0); the others claim the dead
        replica's events after ``--claim-idle`` seconds (REDIS_CLAIM_IDLE).

A rich progress bar per phase, then a table of medians over ``--repeat`` runs
(``--json FILE`` keeps every run's figures). Not part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from benchmarks.client import (
    REPO,
    SECRET,
    build_deliveries,
    free_port,
    percentile,
    private_key_file,
    read_status,
    request_bytes,
    simulator,
    wait_http,
    write_bound,
)
from tests.redis_server import RedisServer

STALL_MS = 60_000.0  # GitHub "stalled": longer than any ingest phase lasts
LATENCY = 0.05
WRITES_PER_MINUTE = 80

console = Console()


# --- the cluster ------------------------------------------------------------------------


@dataclass
class Replica:
    port: int
    folder: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [sys.executable, "-m", "github_app", "serve", "--host", "127.0.0.1"]
        log = (self.folder / "replica.log").open("ab")
        self.process = subprocess.Popen(
            [*args, "--port", str(self.port)],
            env=self.env,
            cwd=self.folder,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


@contextlib.contextmanager
def cluster(
    sim: str, replicas: int, args: argparse.Namespace
) -> Iterator[tuple[RedisServer, list[Replica]]]:
    """A fresh Redis and ``replicas`` fresh copies of the app on it, ready to take deliveries."""
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit("redis-server is not installed (Debian: apt-get install redis-server)")
    with tempfile.TemporaryDirectory(prefix="replicas-") as directory:
        root = Path(directory)
        server = RedisServer(root / "redis", executable)
        server.start()
        key = private_key_file(directory)
        started: list[Replica] = []
        try:
            for index in range(replicas):
                folder = root / f"replica-{index}"
                folder.mkdir()
                env = {
                    **os.environ,
                    "APP_ID": "1",
                    "PRIVATE_KEY_PATH": key,
                    "WEBHOOK_SECRET": SECRET,
                    "GITHUB_API_URL": sim,
                    "DRY_RUN": "false",
                    "LOG_LEVEL": "WARNING",
                    "QUEUE_BACKEND": "redis",
                    "REDIS_URL": server.url,
                    "REDIS_CLAIM_IDLE": str(args.claim_idle),
                    "WORKERS_MIN": str(args.workers),
                    "WORKERS_MAX": str(args.workers),
                    "SHUTDOWN_TIMEOUT": "2",
                    "RECOVERY_INTERVAL": "0",
                    "PYTHONPATH": str(REPO),
                }
                replica = Replica(free_port(), folder, env)
                replica.start()
                started.append(replica)
            for replica in started:
                wait_http(replica.url + "/readyz", timeout=60)
            yield server, started
        except BaseException:
            for replica in started:
                log = (replica.folder / "replica.log").read_text(errors="replace")
                if log.strip():
                    console.print(f"[red]replica on {replica.port}:[/red]\n{log[-3000:]}")
            raise
        finally:
            for replica in started:
                replica.stop()
            server.stop()
            if args.keep_logs is not None:  # every replica's log and Redis's, for a post-mortem
                kept = args.keep_logs / f"{time.strftime('%H%M%S')}-{replicas}"
                shutil.copytree(root, kept, ignore=shutil.ignore_patterns("*.pem", "*.aof*"))


def used_memory(server: RedisServer) -> int:
    client = redis.Redis.from_url(server.url)
    try:
        info = client.info("memory")
        return int(info["used_memory"])
    finally:
        client.close()


# --- the sender: round-robin over the replicas, as a proxy -------------------------------


@dataclass
class Sent:
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    accepted: list[dict[str, Any]] = field(default_factory=list)  # deliveries answered 202
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def rate(self) -> float:
        return len(self.latencies) / max(1e-9, self.finished_at - self.started_at)


async def send_spread(
    urls: list[str],
    deliveries: list[dict[str, Any]],
    *,
    concurrency: int = 32,
    rate: float | None = None,
    on_answer: Callable[[Sent], None] = lambda sent: None,
) -> Sent:
    """POST every delivery, request k to replica k mod N (the next one that accepts a
    connection); keep-alive connections per sender and replica; plain asyncio streams with
    prebuilt requests so the sender's own CPU does not count."""
    prepared = [
        (delivery, [request_bytes(url, delivery) for url in urls]) for delivery in deliveries
    ]
    pending = iter(enumerate(prepared))
    turn = itertools.count()
    down: set[int] = set()
    sent = Sent(started_at=time.perf_counter())
    start = time.perf_counter()

    async def sender() -> None:
        connections: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
        try:
            for index, (delivery, requests) in pending:
                if rate is not None:
                    await asyncio.sleep(max(0.0, start + index / rate - time.perf_counter()))
                status = 0
                began = time.perf_counter()
                first = next(turn)
                for offset in range(len(urls)):
                    target = (first + offset) % len(urls)
                    if target in down and offset < len(urls) - 1:
                        continue
                    try:
                        if target not in connections:
                            parsed = httpx.URL(urls[target])
                            connections[target] = await asyncio.open_connection(
                                parsed.host, parsed.port
                            )
                    except OSError:
                        down.add(target)  # the proxy cannot connect: the next replica
                        status = 502
                        continue
                    reader, writer = connections[target]
                    try:
                        writer.write(requests[target])
                        status = await read_status(reader)
                    except (OSError, asyncio.IncompleteReadError):
                        connections.pop(target, None)
                        down.add(target)
                        status = 0  # cut off mid-way: GitHub logs a failed delivery
                    break
                sent.latencies.append(time.perf_counter() - began)
                sent.statuses[status] += 1
                if status == 202:
                    sent.accepted.append(delivery)
                on_answer(sent)
        finally:
            for _, writer in connections.values():
                writer.close()

    await asyncio.gather(*(sender() for _ in range(concurrency)))
    sent.finished_at = time.perf_counter()
    return sent


# --- what the simulated GitHub saw -------------------------------------------------------


def sim_stats(sim: str) -> dict[str, Any]:
    found: dict[str, Any] = httpx.get(sim + "/_sim/stats", timeout=10).json()
    return found


def secondary_answers(stats: dict[str, Any]) -> int:
    counts = stats["counts"]
    return int(counts.get("write_limit_hits", 0) + counts.get("concurrency_violations", 0))


def labelled(stats: dict[str, Any]) -> set[tuple[str, int]]:
    return {(repo, number) for _, _, repo, number, _ in stats["labels"]}


def issue_of(delivery: dict[str, Any]) -> tuple[str, int]:
    payload = json.loads(delivery["body"])
    return payload["repository"]["full_name"], payload["issue"]["number"]


def writing(count: int, installations: int, seed: int) -> list[dict[str, Any]]:
    """``count`` deliveries that each make the labeler write one label."""
    found = [d for d in build_deliveries(count * 3, installations, seed) if d["writes"]]
    return found[:count]


def wait_labels(
    sim: str, wanted: set[tuple[str, int]], timeout: float, progress: Progress, task: Any
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        stats = sim_stats(sim)
        done = len(wanted & labelled(stats))
        progress.update(task, completed=done)
        if done >= len(wanted) or time.monotonic() > deadline:
            time.sleep(1.0)  # stragglers (a second write of one issue) before counting
            return sim_stats(sim)
        time.sleep(0.25)


# --- the phases --------------------------------------------------------------------------


def phase_ingest(sim: str, n: int, args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    deliveries = writing(args.ingest, args.installations, seed=11)
    httpx.post(sim + "/_sim/reset")
    httpx.post(sim + "/_sim/config", json={"service_ms": STALL_MS})
    try:
        with cluster(sim, n, args) as (server, replicas):
            before = used_memory(server)
            task = progress.add_task(f"{n} replica(s): ingest", total=len(deliveries))
            sent = asyncio.run(
                send_spread(
                    [r.url for r in replicas],
                    deliveries,
                    on_answer=lambda s: progress.update(task, completed=len(s.latencies)),
                )
            )
            after = used_memory(server)
            for replica in replicas:
                replica.kill()  # their events wait on a stalled GitHub: no graceful stop
    finally:
        httpx.post(sim + "/_sim/config", json={"service_ms": 0})
    accepted = len(sent.accepted)
    return {
        "ingest_accepted": accepted,
        "ingest_per_second": round(sent.rate, 1),
        "ack_p50_ms": round(statistics.median(sent.latencies) * 1000, 2),
        "ack_p99_ms": round(percentile(sent.latencies, 0.99) * 1000, 2),
        "redis_bytes_per_queued_event": round((after - before) / max(1, accepted)),
    }


def phase_drain(sim: str, n: int, args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    deliveries = build_deliveries(args.deliveries, args.installations, seed=7)
    per_installation = Counter(d["installation"] for d in deliveries if d["writes"])
    wanted = {issue_of(d) for d in deliveries if d["writes"]}
    bound = write_bound(max(per_installation.values()), WRITES_PER_MINUTE) + LATENCY
    with cluster(sim, n, args) as (_, replicas):
        httpx.post(sim + "/_sim/reset")
        task = progress.add_task(f"{n} replica(s): drain", total=len(wanted))
        started = time.time()
        sent = asyncio.run(send_spread([r.url for r in replicas], deliveries))
        stats = wait_labels(sim, wanted, args.timeout, progress, task)
    last = max((t for t, *_ in stats["labels"]), default=float("nan"))
    return {
        "drain_accepted": sent.statuses.get(202, 0),
        "drain_seconds": round(last - started, 2),
        "pacing_bound_seconds": round(bound, 2),
        "drain_ratio_to_bound": round((last - started) / bound, 3),
        "labels_written": len(wanted & labelled(stats)),
        "labels_expected": len(wanted),
        "secondary_limit_answers": secondary_answers(stats),
    }


def phase_kill(sim: str, n: int, args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    deliveries = writing(args.kill_deliveries, args.installations, seed=23)
    with cluster(sim, n, args) as (_, replicas):
        httpx.post(sim + "/_sim/reset")
        task = progress.add_task(f"{n} replica(s): kill -9", total=len(deliveries))
        victim = replicas[0]

        def answered(sent: Sent) -> None:
            progress.update(task, completed=len(sent.latencies))
            if len(sent.latencies) == len(deliveries) // 2 and victim.process is not None:
                victim.kill()
                if n == 1:  # nobody else to claim its events: it comes back
                    victim.start()

        sent = asyncio.run(
            send_spread(
                [r.url for r in replicas], deliveries, rate=args.kill_rate, on_answer=answered
            )
        )
        wanted = {issue_of(d) for d in sent.accepted}
        progress.update(
            task, completed=0, total=len(wanted), description=f"{n} replica(s): claimed"
        )
        timeout = args.claim_idle + len(wanted) / args.installations + args.timeout
        stats = wait_labels(sim, wanted, timeout, progress, task)
    writes = Counter((repo, number) for _, _, repo, number, _ in stats["labels"])
    return {
        "kill_accepted": len(wanted),
        "kill_not_accepted": len(deliveries) - len(wanted),  # failed: recovery's to ask for
        "lost": len(wanted - set(writes)),
        "written_twice": sum(1 for count in writes.values() if count > 1),
    }


PHASES = {"ingest": phase_ingest, "drain": phase_drain, "kill": phase_kill}

ROWS = [
    ("ingest_per_second", "ingest, deliveries/s (all replicas)"),
    ("ack_p50_ms", "ack p50, ms"),
    ("ack_p99_ms", "ack p99, ms"),
    ("redis_bytes_per_queued_event", "Redis memory per queued event, bytes"),
    ("drain_seconds", "drain of the burst, s"),
    ("pacing_bound_seconds", "pacing bound, s"),
    ("drain_ratio_to_bound", "drain / bound"),
    ("secondary_limit_answers", "secondary-limit answers"),
    ("labels_written", "labels written"),
    ("labels_expected", "labels expected"),
    ("kill_accepted", "kill -9: deliveries answered 202"),
    ("kill_not_accepted", "kill -9: deliveries failed (recoverable)"),
    ("lost", "kill -9: lost (202, never processed), all runs"),
    ("written_twice", "kill -9: issues written twice, all runs"),
]


SUMMED = {"lost", "written_twice"}  # a loss in any run must show: added up, not a median


def medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    keys = {key for run in runs for key in run}
    return {
        key: (sum if key in SUMMED else statistics.median)(run[key] for run in runs if key in run)
        for key in keys
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", default="1,2,3", help="replica counts, comma-separated")
    parser.add_argument("--phases", default="ingest,drain,kill")
    parser.add_argument("--repeat", type=int, default=1, help="runs per count (medians)")
    parser.add_argument("--ingest", type=int, default=1000)
    parser.add_argument("--deliveries", type=int, default=600)
    parser.add_argument("--installations", type=int, default=10)
    parser.add_argument("--kill-deliveries", type=int, default=300)
    parser.add_argument("--kill-rate", type=float, default=100.0, help="deliveries a second")
    parser.add_argument("--claim-idle", type=float, default=5.0, help="REDIS_CLAIM_IDLE")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=120.0, help="beyond the pacing bound")
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    parser.add_argument("--keep-logs", type=Path, help="copy each cluster's logs here")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.replicas.split(",")]
    phases = [PHASES[name] for name in args.phases.split(",")]
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with (
        simulator(LATENCY, WRITES_PER_MINUTE) as sim,
        Progress(*columns, console=console) as progress,
    ):
        for run in range(args.repeat):
            for n in counts:  # side by side in every run: the machine's noise hits them alike
                figures: dict[str, Any] = {"replicas": n, "run": run + 1}
                for phase in phases:
                    figures.update(phase(sim, n, args, progress))
                runs[n].append(figures)
                console.log(json.dumps(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(runs, indent=2))
    table = Table(title=f"replicas on one Redis (medians of {args.repeat} run(s))")
    table.add_column("")
    for n in counts:
        table.add_column(f"{n} replica{'s' if n > 1 else ''}", justify="right")
    summary = {n: medians(runs[n]) for n in counts}
    for key, label in ROWS:
        if any(key in summary[n] for n in counts):
            table.add_row(label, *(f"{summary[n].get(key, float('nan')):g}" for n in counts))
    console.print(table)


if __name__ == "__main__":
    main()
