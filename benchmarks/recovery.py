"""Recovery after an outage: how long until every lost event is back, and what it costs.

    python -m benchmarks.recovery [--events 1000] [--outage 400] [--write-interval 0.05]
        [--runs 3]

The simulated GitHub of ``benchmarks.github_sim`` (in this process, behind the app's
HTTP transport) sends a stream of ``--events`` issue events to the real app (uvicorn on
loopback) and logs every attempt as GitHub's delivery log does (``DeliveryLog``). The
app is stopped for ``--outage`` of them (their deliveries fail: nothing listens), then started
again; its recovery loop reads the log, asks for the lost ones, and the
simulated GitHub redelivers each request at once. Measured per run, from the
restarted server listening to the last recovered event processed: the time,
and the GitHub API calls recovery made (log pages and redelivery requests)
per recovered delivery. Every event must be processed exactly once.

Redelivery requests are paced like writes: GitHub asks for a second between
them (``GITHUB_WRITE_INTERVAL``'s default); the benchmark runs at
``--write-interval`` so a run takes seconds, and the time at 1 s a request is
that many seconds plus the same overhead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.client import private_key_pem
from benchmarks.github_sim import DeliveryLog, GitHubSim, World

REPO = Path(__file__).resolve().parent.parent
SECRET = "benchmark-webhook-secret"
API = "https://api.github.com"
INTERVAL = 2.0  # RECOVERY_INTERVAL: a round's requests are admitted before the next


async def send(sim: DeliveryLog, client: Any, url: str, guid: str, redelivery: bool) -> int:
    import httpx

    body, headers = sim.bodies[guid]
    try:
        status = (await client.post(url, content=body, headers=headers)).status_code
    except httpx.TransportError:
        status = 0
    sim.record(guid, status, "opened", redelivery)
    return status


async def one_run(events: int, outage: int, write_interval: float) -> dict[str, float]:
    import anyio
    import httpx
    import uvicorn
    from githubkit.webhooks import sign

    from github_app.config import load_settings
    from github_app.dispatch.registry import Registry
    from github_app.processor import Context, Processor, ProcessorConfig
    from github_app.processor_help import ProcessorHelp
    from github_app.runtime import Runtime
    from github_app.server import create_app

    pem = private_key_pem()
    github = GitHubSim(world=World(installation=42), base_url=API)
    sim = github.deliveries
    sim.installation = 42
    processed: Counter[str] = Counter()
    last_done = [0.0]

    waiting: list[tuple[int, anyio.Event]] = []

    async def count(ctx: Context[Any]) -> None:
        processed[ctx.envelope.delivery_id] += 1
        last_done[0] = time.monotonic()
        for target, reached in waiting:
            if sum(processed.values()) >= target:
                reached.set()

    async def all_processed(target: int) -> None:
        reached = anyio.Event()
        waiting.append((target, reached))
        if sum(processed.values()) < target:
            await reached.wait()

    registry = Registry(
        [
            Processor(
                name="counter",
                help=ProcessorHelp("counts events"),
                events=("issues",),
                config_type=ProcessorConfig,
                handle=count,
            )
        ]
    )
    example = json.loads((REPO / "github_app/examples/issues.opened.json").read_text())
    for n in range(events):
        payload = {**example, "installation": {"id": 42}}
        payload["issue"] = {**example["issue"], "number": n + 1}
        body = json.dumps(payload).encode()
        guid = f"bench-{n}"
        sim.bodies[guid] = (
            body,
            {
                "Content-Type": "application/json",
                "X-GitHub-Event": "issues",
                "X-GitHub-Delivery": guid,
                "X-Hub-Signature-256": sign(SECRET, body, "sha256"),
            },
        )
    with tempfile.TemporaryDirectory() as state_dir:
        settings = load_settings(
            {
                "APP_ID": "1",
                "PRIVATE_KEY": pem,
                "WEBHOOK_SECRET": SECRET,
                "GITHUB_WRITE_INTERVAL": str(write_interval),
                # at 1/20 of GitHub's pace, its 900 points a minute would bind instead (a
                # redelivery request is a POST: 5 points); at 1 s a request they do not
                "GITHUB_SECONDARY_LIMITS": "off",
                "RECOVERY_INTERVAL": str(INTERVAL),
                "LOG_LEVEL": "WARNING",
                "STATE_DIR": state_dir,
            },
            env_file=None,
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}{settings.webhook_path}"
        transport = httpx.ASGITransport(app=github)

        async def serve(runtime: Runtime, serving: anyio.Event, stop: anyio.Event) -> None:
            server = uvicorn.Server(
                uvicorn.Config(
                    create_app(settings, runtime=runtime),
                    lifespan="on",
                    log_config=None,
                    access_log=False,
                )
            )
            with listening(port) as sock:
                async with anyio.create_task_group() as group:
                    group.start_soon(server.serve, [sock])
                    while not server.started:  # noqa: ASYNC110 - uvicorn sets a flag, no event
                        await anyio.sleep(0.005)
                    serving.set()
                    await stop.wait()
                    server.should_exit = True

        first, second = outage_bounds(events, outage)
        async with httpx.AsyncClient(timeout=10) as client:
            # before the outage: delivered and processed (no recovery round in this life)
            runtime = Runtime(settings, registry=registry, transport=transport, recovery_delay=3600)
            serving, stop = anyio.Event(), anyio.Event()
            async with anyio.create_task_group() as group:
                group.start_soon(serve, runtime, serving, stop)
                await serving.wait()
                for n in range(first):
                    await send(sim, client, url, f"bench-{n}", False)
                await all_processed(first)
                stop.set()
            # the outage: nothing listens, every delivery fails
            for n in range(first, second):
                await send(sim, client, url, f"bench-{n}", False)
            # back up: the stream goes on, recovery brings the lost ones back
            runtime = Runtime(settings, registry=registry, transport=transport, recovery_delay=0)
            serving, stop = anyio.Event(), anyio.Event()
            async with anyio.create_task_group() as group:
                group.start_soon(serve, runtime, serving, stop)
                await serving.wait()
                restarted = time.monotonic()
                for n in range(second, events):
                    await send(sim, client, url, f"bench-{n}", False)
                # GitHub redelivers each request at once, several at a time
                async with anyio.create_task_group() as redeliveries:
                    while len(processed) < events:
                        pending, sim.pending = sim.pending, []
                        for guid in pending:
                            redeliveries.start_soon(send, sim, client, url, guid, True)
                        await anyio.sleep(0.005)
                await anyio.sleep(2 * INTERVAL + 0.5)  # two more rounds: nothing more is asked
                stop.set()
    duplicates = {g: c for g, c in processed.items() if c != 1}
    if duplicates or len(processed) != events:
        raise SystemExit(f"not exactly once: {len(processed)} of {events}, {duplicates}")
    recovered = second - first
    calls = sim.calls["list"] + sim.calls["redeliver"]
    return {
        "seconds_to_last_recovered": last_done[0] - restarted,
        "recovered": recovered,
        "log_pages": sim.calls["list"],
        "redelivery_requests": sim.calls["redeliver"],
        "calls_per_recovered": calls / recovered if recovered else 0.0,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def listening(port: int) -> Iterator[socket.socket]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    try:
        yield sock
    finally:
        sock.close()


def outage_bounds(events: int, outage: int) -> tuple[int, int]:
    first = (events - outage) // 2
    return first, first + outage


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--outage", type=int, default=400)
    parser.add_argument("--write-interval", type=float, default=0.05)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    import anyio

    results = [
        anyio.run(one_run, args.events, args.outage, args.write_interval) for _ in range(args.runs)
    ]
    for key in results[0]:
        values = [r[key] for r in results]
        runs = ", ".join(f"{v:.3f}" for v in values)
        print(f"{key}: median {statistics.median(values):.3f} (runs: {runs})")


if __name__ == "__main__":
    main()
