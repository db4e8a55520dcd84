"""Shared pacing: GitHub's limits kept in Redis for several replicas, side by side with alone.

    redis-server --port 6390 --save '' --appendonly no --daemonize yes --dir /var/tmp
    python -m benchmarks.shared_pacing --redis-url redis://127.0.0.1:6390/0 \\
        [--replicas 3] [--writes 12] [--interval 0.25] [--reads 2000] [--rounds 3]

Part 1, the discipline: ``--replicas`` gateways in this process, each on its own Redis
connection as separate replicas would be, write ``--writes`` labels each to one
installation of the simulated GitHub (``benchmarks.github_sim`` through
``httpx.ASGITransport``, 20 ms latency), all at once, at ``GITHUB_WRITE_INTERVAL``
``--interval``. The simulator answers a secondary limit to a 4th write within 2.5
intervals. Printed for the limits shared in Redis and for each replica pacing alone: the
writes GitHub took, secondary-limit answers, and the gaps between writes as GitHub
received them (smallest, median) in intervals.

Part 2, the cost: ``--reads`` GETs, 16 at a time, through one gateway whose budget is kept
in this process, then in Redis (a booking before each request, the budget shared after
it), the points allowance out of the way; microseconds per read, medians over
``--rounds`` rounds in alternating order.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import time
import uuid
from collections.abc import Sequence

import anyio
import httpx
from githubkit.exception import GitHubException
from redis.asyncio import Redis

from benchmarks.client import private_key_pem
from benchmarks.github_sim import GitHubSim, Limits
from github_app.config import Settings, load_settings
from github_app.github.gateway import GitHubGateway
from github_app.github.secondary_limits import SecondaryLimits
from github_app.github.shared_limits import RedisLimits

INSTALLATION = 1
LATENCY = 0.02
READERS = 16
NO_POINTS_LIMIT = SecondaryLimits(points_per_minute=10**9)  # 900 a minute would pace the reads


def new_prefix() -> str:
    """Keys of this run only (they expire by themselves): runs never see each other's."""
    return f"aip:bench:{uuid.uuid4().hex[:8]}:limits:"


def settings(interval: float) -> Settings:
    pem = private_key_pem()
    return load_settings(
        {
            "WEBHOOK_SECRET": "benchmark",
            "APP_ID": "1",
            "PRIVATE_KEY": pem,
            "GITHUB_WRITE_INTERVAL": str(interval),
            "QUEUE_BACKEND": "memory",
        },
        env_file=None,
    )


async def discipline(
    config: Settings, url: str, replicas: int, writes: int, shared: bool
) -> tuple[int, int, list[float]]:
    """Writes GitHub took, secondary-limit answers, gaps between arrivals (in intervals)."""
    interval = config.github_write_interval
    sim = GitHubSim(Limits(latency=LATENCY, installation_writes=3, write_window=2.5 * interval))
    clients = [Redis.from_url(url) for _ in range(replicas)] if shared else []
    run_prefix = new_prefix()
    gateways = [
        GitHubGateway(
            config,
            transport=httpx.ASGITransport(app=sim),
            shared=RedisLimits(clients[index], prefix=run_prefix) if shared else None,
        )
        for index in range(replicas)
    ]

    async def write(gateway: GitHubGateway, number: int) -> None:
        with contextlib.suppress(GitHubException):  # the simulator counts its refusals
            await gateway.installation(INSTALLATION).arequest(
                "POST", f"/repos/o/r/issues/{number}/labels", json={"labels": ["bug"]}
            )

    async with anyio.create_task_group() as group:
        for index, gateway in enumerate(gateways):
            for number in range(writes):
                group.start_soon(write, gateway, index * writes + number)
    for gateway in gateways:
        await gateway.aclose()
    for client in clients:
        await client.aclose()
    arrived = sorted(label[0] for label in sim.labels)
    gaps = [(b - a) / interval for a, b in itertools.pairwise(arrived)]
    return len(arrived), sim.counts["violations"], gaps


async def read_cost(config: Settings, url: str, reads: int, shared: bool) -> float:
    """Microseconds per read through one gateway."""
    sim = GitHubSim(Limits())
    client = Redis.from_url(url) if shared else None
    gateway = GitHubGateway(
        config,
        transport=httpx.ASGITransport(app=sim),
        shared=RedisLimits(client, prefix=new_prefix()) if client is not None else None,
        limits=NO_POINTS_LIMIT,
    )
    github = gateway.installation(INSTALLATION)
    await github.arequest("GET", "/repos/o/r/issues/1")  # the token, the first connection
    left = iter(range(reads))

    async def reader() -> None:
        for number in left:
            await github.arequest("GET", f"/repos/o/r/issues/{number}")

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(READERS):
            group.start_soon(reader)
    elapsed = time.perf_counter() - started
    await gateway.aclose()
    if client is not None:
        await client.aclose()
    return elapsed / reads * 1e6


async def run(args: argparse.Namespace) -> None:
    config = settings(args.interval)
    print(
        f"{args.replicas} replicas x {args.writes} writes to one installation, "
        f"interval {args.interval}s, GitHub latency {LATENCY * 1000:.0f} ms"
    )
    for shared in (True, False):
        took, refused, gaps = await discipline(
            config, args.redis_url, args.replicas, args.writes, shared
        )
        name = "shared in Redis" if shared else "each alone"
        print(
            f"  {name:15}: {took:3d} writes taken, {refused:2d} secondary-limit answers, "
            f"gap min {min(gaps, default=0):.3f} median {statistics.median(gaps or [0]):.3f} "
            "intervals"
        )
    costs: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(args.rounds):
        for shared in (False, True) if round_ % 2 == 0 else (True, False):
            costs[shared].append(await read_cost(config, args.redis_url, args.reads, shared))
    local, redis = statistics.median(costs[False]), statistics.median(costs[True])
    print(
        f"{args.reads} reads, {READERS} at a time, medians of {args.rounds} rounds: "
        f"{local:.0f} us/read in this process, {redis:.0f} us/read in Redis "
        f"({redis / local:.2f}x)"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shared_pacing", description=__doc__)
    parser.add_argument("--redis-url", required=True, help="a Redis (keys under aip:bench:)")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--writes", type=int, default=12, help="per replica")
    parser.add_argument("--interval", type=float, default=0.25)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    anyio.run(run, parser.parse_args(argv))


if __name__ == "__main__":
    main()
