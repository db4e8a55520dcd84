"""GitHub client benchmark: a burst through the real app against a simulated GitHub.

Command (from the repository root)::

    python -m benchmarks.client [--deliveries 600] [--installations 10] [--latency 0.05]
        [--workers 8] [--scenario all|burst|tight|overhead]

Each scenario starts the simulated GitHub (``benchmarks/github_sim.py`` with GitHub's
per-installation limits: 100 concurrent requests, 80 writes a minute, 5,000 requests an
hour; ``--latency`` per answer; a labeler config in every repository) and the app
itself (``python -m github_app serve``, real credentials: a generated key,
``GITHUB_API_URL`` pointing at the simulator), each in its own process, then:

burst   sends ``--deliveries`` signed ``issues.opened`` deliveries (GitHub's example
        payload) over ``--installations`` installations and 5 repositories each, about
        half of them titled so that the labeler writes one label, 32 at a time; then
        waits until every expected label is written. Prints the time from the first
        delivery to the last label write, the bound that 1 s per-installation write pacing
        sets (the installation with the most writes), requests per delivery (everything
        the simulator answered: token mints, config reads, writes), tokens minted, the 304
        ratio of GETs, limit violations, and the webhook ack p50/p99.
tight   the same burst with the simulator allowing only 30 writes a minute per
        installation: every label must still be written; prints secondary-limit answers.
overhead  client cost per request: the same sequential GET through a plain
        ``httpx.AsyncClient``, through githubkit with its defaults, and through the
        gateway's installation client, against the simulator with no latency, in
        alternating blocks in one process; medians and the difference in microseconds.

Reference (from the issue, Probot 14 with default throttling, same burst): 278 s to
the last label, 1.48 requests per delivery, 40% of deliveries acknowledged only after
9 s; with 30 writes/minute Probot lost 61 of 91 labels. Not part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

REPO = Path(__file__).resolve().parent.parent

SECRET = "benchmark-webhook-secret"
WRITE_TITLE = "App crashes on start"
QUIET_TITLE = "Question about the setup"
PROBOT = {"seconds": 278.0, "requests_per_delivery": 1.48, "tight_lost": "61 of 91"}
LABELER_CONFIG = (
    b"labeler:\n  rules:\n    - label: bug\n      keywords: [crash, crashes, traceback]\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextlib.contextmanager
def process(
    args: list[str], env: dict[str, str] | None = None, cwd: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, env=env, cwd=cwd)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def simulator(latency: float, writes_per_minute: int) -> Iterator[str]:
    """The simulated GitHub with GitHub's per-installation limits, in its own process."""
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "auto-issue-processor.yml"
        config.write_bytes(LABELER_CONFIG)
        args = [sys.executable, "-m", "benchmarks.github_sim", "--port", str(port)]
        args += ["--latency", str(latency), "--installation-writes", str(writes_per_minute)]
        args += ["--installation-concurrency", "100", "--budget", "5000"]
        with process([*args, "--repo-config", str(config)], cwd=str(REPO)):
            url = f"http://127.0.0.1:{port}"
            wait_http(url + "/_sim/stats")
            yield url


def private_key_pem() -> str:
    """A fresh RSA key in PEM, the app's private key for a run against the simulated GitHub."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def private_key_file(directory: str) -> str:
    """A fresh private key written to ``directory``/app.pem, for ``PRIVATE_KEY_PATH``."""
    path = Path(directory) / "app.pem"
    path.write_text(private_key_pem())
    return str(path)


@contextlib.contextmanager
def the_app(api_url: str, workers: int) -> Iterator[tuple[str, int]]:
    with tempfile.TemporaryDirectory() as directory:
        port = free_port()
        env = {
            **os.environ,
            "APP_ID": "1",
            "PRIVATE_KEY_PATH": private_key_file(directory),
            "WEBHOOK_SECRET": SECRET,
            "GITHUB_API_URL": api_url,
            "DRY_RUN": "false",
            "LOG_LEVEL": "ERROR",
            "WORKERS_MIN": str(workers),
            "WORKERS_MAX": str(workers),
            "PYTHONPATH": str(REPO),
        }
        args = [sys.executable, "-m", "github_app", "serve", "--host", "127.0.0.1"]
        with process([*args, "--port", str(port)], env=env, cwd=directory) as proc:
            url = f"http://127.0.0.1:{port}"
            wait_http(url + "/healthz")
            yield url, proc.pid


def build_deliveries(count: int, installations: int, seed: int = 7) -> list[dict[str, Any]]:
    """Payloads with their installation and whether the labeler should write."""
    from githubkit.webhooks import sign

    template = json.loads((REPO / "github_app" / "examples" / "issues.opened.json").read_text())
    rng = random.Random(seed)
    deliveries = []
    for index in range(count):
        installation = 1000 + rng.randrange(installations)
        writes = rng.random() < 0.5
        payload = json.loads(json.dumps(template))
        owner = f"org{installation}"
        repo = f"repo{rng.randrange(5)}"
        payload["installation"] = {"id": installation, "node_id": "I_1"}
        payload["repository"]["full_name"] = f"{owner}/{repo}"
        payload["repository"]["name"] = repo
        payload["repository"]["owner"]["login"] = owner
        issue = payload["issue"]
        issue["number"] = index + 1
        issue["title"] = WRITE_TITLE if writes else QUIET_TITLE
        issue["body"] = "It fails every time." if writes else "How do I configure it?"
        issue["labels"] = []
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(SECRET, body, "sha256"),
        }
        deliveries.append(
            {"body": body, "headers": headers, "installation": installation, "writes": writes}
        )
    return deliveries


def request_bytes(url: str, delivery: dict[str, Any]) -> bytes:
    """A delivery as the bytes of one HTTP/1.1 POST to the app's webhook at ``url``."""
    parsed = httpx.URL(url)
    head = ["POST /api/github/webhooks HTTP/1.1", f"Host: {parsed.host}:{parsed.port or 80}"]
    head += [f"{k}: {v}" for k, v in delivery["headers"].items()]
    body: bytes = delivery["body"]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def read_status(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 answer (length or chunked body) off ``reader``; its status code."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("closed before answering")
    length, chunked = 0, False
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "transfer-encoding":
            chunked = "chunked" in value.lower()
    if chunked:
        while size := int((await reader.readline()).strip() or b"0", 16):
            await reader.readexactly(size + 2)
        await reader.readline()
    else:
        await reader.readexactly(length)
    return int(status_line.split()[1])


async def send_burst(
    url: str, deliveries: list[dict[str, Any]], concurrency: int = 32
) -> tuple[float, list[float], Counter[int]]:
    """POST every delivery over ``concurrency`` keep-alive connections; ack time per delivery.

    Plain asyncio streams with prebuilt request bytes, so the sender's own CPU (httpx
    costs about a millisecond per request) does not inflate the measured latencies.
    """
    parsed = httpx.URL(url)
    host, port = parsed.host, parsed.port or 80
    requests = [request_bytes(url, delivery) for delivery in deliveries]
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    pending = iter(requests)

    async def sender() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for request in pending:
                started = time.perf_counter()
                writer.write(request)
                status = await read_status(reader)
                latencies.append(time.perf_counter() - started)
                statuses[status] += 1
        finally:
            writer.close()

    started_at = time.time()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return started_at, latencies, statuses


def write_bound(writes: int, per_minute: int, interval: float = 1.0) -> float:
    """When the last of ``writes`` can be sent at best: ``interval`` apart, ``per_minute`` a minute.

    With GitHub's 80 a minute and 1 s pacing this is (writes - 1) s; with 30 a minute,
    write k > 30 must also wait until write k - 30 is a minute old.
    """
    times: list[float] = []
    for k in range(writes):
        at = times[-1] + interval if times else 0.0
        if k >= per_minute:
            at = max(at, times[k - per_minute] + 60.0)
        times.append(at)
    return times[-1] if times else 0.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_burst(name: str, args: argparse.Namespace, writes_per_minute: int) -> dict[str, Any]:
    deliveries = build_deliveries(args.deliveries, args.installations)
    expected = {d["installation"]: 0 for d in deliveries}
    for delivery in deliveries:
        expected[delivery["installation"]] += delivery["writes"]
    total_writes = sum(expected.values())
    bound = write_bound(max(expected.values()), writes_per_minute) + args.latency
    with (
        simulator(args.latency, writes_per_minute) as sim,
        the_app(sim, args.workers) as (app, pid),
    ):
        httpx.post(sim + "/_sim/reset")
        app_process = psutil.Process(pid)
        cpu_before = sum(app_process.cpu_times()[:2])
        started_at, latencies, statuses = asyncio.run(send_burst(app, deliveries, args.senders))
        burst_seconds = time.time() - started_at
        app_cpu_burst = sum(app_process.cpu_times()[:2]) - cpu_before
        deadline = time.monotonic() + args.timeout
        while True:
            stats = httpx.get(sim + "/_sim/stats", timeout=10).json()
            written = {(repo, number) for _, _, repo, number, _ in stats["labels"]}
            if len(written) >= total_writes or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        time.sleep(1.0)  # let stragglers (double writes, if any) arrive before counting
        stats = httpx.get(sim + "/_sim/stats", timeout=10).json()
        app_cpu_total = sum(app_process.cpu_times()[:2]) - cpu_before
    counts = stats["counts"]
    labels = stats["labels"]
    written = {(repo, number) for _, _, repo, number, _ in labels}
    last = max((t for t, *_ in labels), default=float("nan"))
    elapsed = last - started_at
    result = {
        "scenario": name,
        "writes_per_minute": writes_per_minute,
        "deliveries": len(deliveries),
        "accepted": statuses.get(202, 0),
        "statuses": dict(statuses),
        "expected_labels": total_writes,
        "labels_written": len(written),
        "label_requests": counts.get("label_writes", 0),
        "max_writes_one_installation": max(expected.values()),
        "seconds_to_last_label": round(elapsed, 2),
        "pacing_bound_seconds": round(bound, 2),
        "ratio_to_bound": round(elapsed / bound, 3),
        "requests": counts.get("requests", 0),
        "requests_per_delivery": round(counts.get("requests", 0) / len(deliveries), 3),
        "tokens_minted": counts.get("tokens", 0),
        "gets": counts.get("gets", 0),
        "not_modified": counts.get("not_modified", 0),
        "ratio_304": round(counts.get("not_modified", 0) / max(1, counts.get("gets", 0)), 3),
        "violations": counts.get("violations", 0),
        "secondary_limit_answers": counts.get("write_limit_hits", 0)
        + counts.get("concurrency_violations", 0),
        "max_in_flight_per_installation": max(stats["max_in_flight"].values(), default=0),
        "senders": args.senders,
        "burst_seconds": round(burst_seconds, 2),
        "app_cpu_ms_per_delivery_during_burst": round(app_cpu_burst / len(deliveries) * 1000, 3),
        "app_cpu_seconds_total": round(app_cpu_total, 2),
        "ack_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "ack_p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "ack_max_ms": round(max(latencies) * 1000, 2),
    }
    print(json.dumps(result), flush=True)
    return result


async def overhead(api: str, rounds: int, block: int) -> dict[str, float]:
    import githubkit

    from github_app.config import load_settings
    from github_app.github.gateway import GitHubGateway

    with tempfile.TemporaryDirectory() as directory:
        settings = load_settings(
            {
                "APP_ID": "1",
                "PRIVATE_KEY_PATH": private_key_file(directory),
                "WEBHOOK_SECRET": SECRET,
                "GITHUB_API_URL": api,
                "DRY_RUN": "false",
            },
            env_file=None,
        )
    gateway = GitHubGateway(settings)
    ours = gateway.installation(1)
    await ours.arequest("GET", "/repos/o/r/issues/1")  # mint the token
    token = await gateway.tokens.get(1)
    plain = httpx.AsyncClient(
        base_url=api, headers={"Authorization": f"token {token}"}, timeout=10.0
    )
    stock = githubkit.GitHub(token, base_url=api + "/")
    path = "/repos/o/r/issues/1"

    async def via_plain() -> None:
        (await plain.get(path)).raise_for_status()

    async def via_stock() -> None:
        await stock.arequest("GET", path)

    async def via_ours() -> None:
        await ours.arequest("GET", path)

    clients = {"httpx": via_plain, "githubkit_default": via_stock, "gateway": via_ours}
    samples: dict[str, list[float]] = {name: [] for name in clients}
    for call in clients.values():  # warm up
        for _ in range(5):
            await call()
    for round_ in range(rounds):
        order = list(clients.items())
        if round_ % 2:
            order.reverse()
        for name, call in order:
            # githubkit's defaults open a new client (and connection) per call: tens of ms.
            for _ in range(block // 20 if name == "githubkit_default" else block):
                started = time.perf_counter()
                await call()
                samples[name].append(time.perf_counter() - started)
    await plain.aclose()
    await gateway.aclose()
    medians = {name: statistics.median(values) * 1e6 for name, values in samples.items()}
    result = {f"{name}_median_us": round(value, 1) for name, value in medians.items()}
    result["gateway_overhead_us"] = round(medians["gateway"] - medians["httpx"], 1)
    result["githubkit_default_overhead_us"] = round(
        medians["githubkit_default"] - medians["httpx"], 1
    )
    result["requests_per_client"] = rounds * block
    result["requests_githubkit_default"] = rounds * (block // 20)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=600)
    parser.add_argument("--installations", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=400.0)
    parser.add_argument("--senders", type=int, default=32, help="deliveries in flight at once")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--block", type=int, default=200)
    parser.add_argument("--scenario", choices=["all", "burst", "tight", "overhead"], default="all")
    args = parser.parse_args(argv)
    results: list[dict[str, Any]] = []
    if args.scenario in ("all", "burst"):
        results.append(run_burst("burst", args, writes_per_minute=80))
    if args.scenario in ("all", "tight"):
        results.append(run_burst("tight", args, writes_per_minute=30))
    if args.scenario in ("all", "overhead"):
        with simulator(0.0, 10_000) as sim:
            figures = asyncio.run(overhead(sim, args.rounds, args.block))
        print(json.dumps({"scenario": "overhead", **figures}), flush=True)
    for result in results:
        print(
            f"{result['scenario']:>6} ({result['writes_per_minute']} writes/min): "
            f"{result['seconds_to_last_label']} s to the last label "
            f"(bound {result['pacing_bound_seconds']} s, x{result['ratio_to_bound']}; "
            f"Probot {PROBOT['seconds']} s), "
            f"{result['labels_written']}/{result['expected_labels']} labels, "
            f"{result['requests_per_delivery']} requests/delivery "
            f"(Probot {PROBOT['requests_per_delivery']}), "
            f"{result['tokens_minted']} tokens, 304 ratio {result['ratio_304']}, "
            f"{result['violations']} violations, "
            f"ack p99 {result['ack_p99_ms']} ms"
        )


if __name__ == "__main__":
    main()
