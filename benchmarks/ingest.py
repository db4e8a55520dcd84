"""Webhook intake benchmark: the real app against a bare starlette endpoint, in one run.

    .venv/bin/python -m benchmarks.ingest [--duration 10] [--rounds 3] [--connections 64]

Needs wrk (``apt-get install wrk``); not part of CI. Each round runs, in alternating
order, two servers on core 0 (uvicorn, uvloop + httptools, access log off):
A = the app via ``benchmarks.serve_app`` with its dispatcher paused (intake only: verify, dedupe,
classify, compress, enqueue); B = ``benchmarks.bare_app`` (HMAC check + ``json.loads`` + 202).
wrk on core 1 (2 threads) warms each up for 2 s, then POSTs the signed ``issues.opened``
fixture (+ ``installation``, compact, ~12 KB), a fresh ``X-GitHub-Delivery`` each time.

Prints per run and as medians: deliveries/s, p50/p99 latency, server CPU us per delivery
(psutil user+system / completed requests) with its kernel share (sys%), how busy the
server kept its core (busy%), how much of that core other work took (other%: a noisy
run is measured again, twice at most), non-2xx count, RSS and status codes; then the
A/B ratio and reference figures. Any answer but 202 (503 = queue full, 200 = duplicate)
marks the run INVALID. ``--only app|bare`` runs one server. Exit status 0 when every run
is valid, 1 otherwise or on a server failure, 2 when wrk or the app is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
FIXTURE = REPO / "tests" / "fixtures" / "issues.opened.json"
LUA_SCRIPT = BENCH_DIR / "webhook.lua"
SECRET = "benchmark-webhook-secret"
WEBHOOK_PATH = "/api/github/webhooks"
INSTALLATION = {"id": 1, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="}
WARMUP_SECONDS = 2
WRK_THREADS = 2
STARTUP_DEADLINE = 60.0  # seconds for a server to import, bind and answer a first delivery
STOP_DEADLINE = 10.0
SATURATED = 0.9  # a server using less of its core than this was not the bottleneck
NOISY = 0.1  # more than this share of the server's core used by others: a noisy run
NOISY_RERUNS = 2  # a noisy run is measured again at most this many times

# name, deliveries/s, CPU us per delivery: measured earlier on this kind of machine
# (2 cores, server and load generator each pinned to one), not in this run.
REFERENCE: tuple[tuple[str, int, int], ...] = (
    ("Probot, empty handler (node)", 13_000, 78),
    ("@octokit/webhooks (node)", 19_000, 51),
    ("bare starlette + uvicorn", 12_000, 82),
    ("raw ASGI callable on uvicorn", 15_000, 65),
)


class BenchmarkError(Exception):
    """A server or wrk did not behave; the message says which and why."""


@dataclass(frozen=True)
class Server:
    key: str  # "A" or "B"
    name: str
    module: str

    def argv(self, port: int) -> list[str]:
        return [sys.executable, "-m", self.module, "--port", str(port), "--secret", SECRET]


APP = Server("A", "app (paused dispatcher)", "benchmarks.serve_app")
BARE = Server("B", "bare starlette", "benchmarks.bare_app")


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    p50_us: float
    p99_us: float
    statuses: dict[int, int]
    socket_errors: dict[str, int]

    @property
    def non_2xx(self) -> int:
        return sum(n for code, n in self.statuses.items() if not 200 <= code < 300)


@dataclass(frozen=True)
class Run:
    server: Server
    round: int
    wrk: WrkResult
    cpu_us_per_delivery: float
    sys_share: float  # kernel share of the server's CPU time
    other_share: float  # share of the server core's time busy with anything but the server
    busy_share: float  # server CPU time / wall time: near 1.0 when the server is the bottleneck
    rss_mb: float
    warnings: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.wrk.requests / self.wrk.duration_s if self.wrk.duration_s else 0.0

    @property
    def valid(self) -> bool:
        return not self.warnings


# -- payload ----------------------------------------------------------------------------


def build_payload() -> bytes:
    """The fixture as a GitHub App receives it: with ``installation``, compact JSON."""
    payload: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    payload["installation"] = INSTALLATION
    return json.dumps(payload, separators=(",", ":")).encode()


def sign(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


# -- processes --------------------------------------------------------------------------


def pick_cores() -> tuple[int, int] | None:
    """(server core, wrk core): the first two CPUs this process may run on."""
    allowed = sorted(os.sched_getaffinity(0))
    return (allowed[0], allowed[1]) if len(allowed) >= 2 else None


def pinned(argv: list[str], core: int | None) -> list[str]:
    return argv if core is None else ["taskset", "-c", str(core), *argv]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def read_log(log: IO[bytes], limit: int = 4000) -> str:
    log.flush()
    log.seek(0)
    text = log.read().decode(errors="replace")
    return text[-limit:] if len(text) > limit else text


def post_delivery(port: int, body: bytes, delivery: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(
            "POST",
            WEBHOOK_PATH,
            body=body,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "issues",
                "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": sign(body),
            },
        )
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_ready(proc: subprocess.Popen[bytes], port: int, body: bytes, log: IO[bytes]) -> bytes:
    """Poll until the server accepts a signed delivery with 202, or fail by the deadline."""
    deadline = time.monotonic() + STARTUP_DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchmarkError(
                f"server exited with code {proc.returncode} during startup:\n{read_log(log)}"
            )
        try:
            status, answer = post_delivery(port, body, f"ready-{secrets.token_hex(8)}")
        except (OSError, http.client.HTTPException):  # not listening yet
            time.sleep(0.05)
            continue
        if status != 202:
            raise BenchmarkError(
                f"server answered the first signed delivery with {status}, not 202: "
                f"{answer[:500]!r}\n{read_log(log)}"
            )
        return answer
    raise BenchmarkError(f"server not ready after {STARTUP_DEADLINE:.0f} s:\n{read_log(log)}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=STOP_DEADLINE)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_DEADLINE)


@contextlib.contextmanager
def running(server: Server, core: int | None, body: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Start ``server`` pinned to ``core``, wait until it takes a delivery.

    Yields (pid, port, the body of its answer to that first delivery).
    """
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            pinned(server.argv(port), core),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            first_answer = wait_ready(proc, port, body, log)
            yield proc.pid, port, first_answer
            if proc.poll() is not None:
                raise BenchmarkError(
                    f"{server.name} exited with code {proc.returncode} under load:\n{read_log(log)}"
                )
        finally:
            stop(proc)


def run_wrk(
    port: int, seconds: int, connections: int, core: int | None, body_file: Path, signature: str
) -> WrkResult:
    argv = pinned(
        [
            "wrk",
            f"-t{WRK_THREADS}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "-s",
            str(LUA_SCRIPT),
            f"http://127.0.0.1:{port}{WEBHOOK_PATH}",
            "--",
            str(body_file),
            signature,
            secrets.token_hex(4),  # run nonce: delivery ids never repeat across wrk runs
        ],
        core,
    )
    try:
        done = subprocess.run(argv, capture_output=True, timeout=seconds + 60, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(f"wrk did not finish within {seconds + 60} s") from exc
    out = done.stdout.decode(errors="replace")
    line = next((x for x in out.splitlines() if x.startswith("WRK_RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise BenchmarkError(
            f"wrk failed (exit {done.returncode}):\n{out}\n{done.stderr.decode(errors='replace')}"
        )
    data = json.loads(line.removeprefix("WRK_RESULT "))
    return WrkResult(
        requests=int(data["requests"]),
        duration_s=data["duration_us"] / 1e6,
        p50_us=float(data["p50_us"]),
        p99_us=float(data["p99_us"]),
        statuses={int(k): int(v) for k, v in data["statuses"].items()},
        socket_errors={k: int(v) for k, v in data["errors"].items() if k != "status" and v},
    )


def answer_status(answer: bytes) -> str | None:
    """The app's ``status`` field ("queued", "ignored", "duplicate"); None for an empty body."""
    if not answer.strip():
        return None
    try:
        data = json.loads(answer)
    except ValueError:
        return "unreadable"
    status = data.get("status") if isinstance(data, dict) else None
    return str(status) if status is not None else "missing"


def core_busy(core: int | None) -> float:
    """Busy (non-idle) seconds of one CPU so far, all processes and interrupts included."""
    if core is None:
        return 0.0
    times = psutil.cpu_times(percpu=True)[core]
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def cpu_seconds(proc: psutil.Process) -> tuple[float, float]:
    """(user, system) CPU seconds the server process has used so far."""
    times = proc.cpu_times()
    return float(times.user), float(times.system)


def measure(
    server: Server,
    round_no: int,
    args: argparse.Namespace,
    cores: tuple[int, int] | None,
    body: bytes,
    body_file: Path,
) -> Run:
    server_core, wrk_core = cores if cores else (None, None)
    signature = sign(body)
    warnings: list[str] = []
    with running(server, server_core, body) as (pid, port, first_answer):
        proc = psutil.Process(pid)
        run_wrk(port, WARMUP_SECONDS, args.connections, wrk_core, body_file, signature)
        before, core_before = cpu_seconds(proc), core_busy(server_core)
        result = run_wrk(port, args.duration, args.connections, wrk_core, body_file, signature)
        after, core_after = cpu_seconds(proc), core_busy(server_core)
        rss_mb = proc.memory_info().rss / 2**20
        # One more delivery after the run: is the server still queueing (not full, not ignoring)?
        try:
            last_status, last_answer = post_delivery(port, body, f"after-{secrets.token_hex(8)}")
        except (OSError, http.client.HTTPException) as exc:
            last_status, last_answer = 0, repr(exc).encode()
    # The app says what it did with a delivery; anything but "queued" measures something else.
    if (outcome := answer_status(first_answer)) not in (None, "queued"):
        warnings.append(
            f"first delivery answered {outcome!r}, not 'queued': {first_answer[:200]!r}"
        )
    if last_status != 202 or answer_status(last_answer) not in (None, "queued"):
        warnings.append(f"delivery after the run answered {last_status}: {last_answer[:200]!r}")
    if result.requests == 0:
        warnings.append("no request completed")
    # Every delivery is new and correctly signed, and the queue is sized never to fill:
    # 202 is the only right answer (200 = taken for a duplicate, 503 = queue full).
    unexpected = {code: n for code, n in sorted(result.statuses.items()) if code != 202}
    if unexpected:
        codes = ", ".join(f"{code}: {n}" for code, n in unexpected.items())
        why = " -- 503 means the queue was full" if 503 in unexpected else ""
        warnings.append(f"answers other than 202 ({codes}){why}")
    if result.socket_errors:
        warnings.append(f"socket errors {result.socket_errors}")
    user, system = after[0] - before[0], after[1] - before[1]
    per_delivery = (user + system) * 1e6 / result.requests if result.requests else float("nan")
    sys_share = system / (user + system) if user + system > 0 else 0.0
    other = core_after - core_before - user - system
    other_share = max(0.0, other / result.duration_s) if result.duration_s else 0.0
    busy_share = (user + system) / result.duration_s if result.duration_s else 0.0
    return Run(
        server,
        round_no,
        result,
        per_delivery,
        sys_share,
        other_share,
        busy_share,
        rss_mb,
        warnings,
    )


# -- report -----------------------------------------------------------------------------

HEADER = (
    f"{'':4}{'server':<26}{'deliveries/s':>13}{'p50 ms':>9}{'p99 ms':>9}"
    f"{'CPU us/dlv':>12}{'sys%':>6}{'busy%':>7}{'other%':>7}{'non-2xx':>9}{'RSS MB':>8}  statuses"
)


def row(label: str, run: Run) -> str:
    statuses = " ".join(f"{code}x{n}" for code, n in sorted(run.wrk.statuses.items()))
    return (
        f"{label:<4}{run.server.name:<26}{run.rate:>13,.0f}{run.wrk.p50_us / 1000:>9.2f}"
        f"{run.wrk.p99_us / 1000:>9.2f}{run.cpu_us_per_delivery:>12.1f}"
        f"{100 * run.sys_share:>6.0f}{100 * run.busy_share:>7.0f}{100 * run.other_share:>7.0f}"
        f"{run.wrk.non_2xx:>9}"
        f"{run.rss_mb:>8.0f}  {statuses}{'' if run.valid else '  <-- INVALID'}"
    )


def median_row(server: Server, runs: Sequence[Run]) -> str:
    statuses: Counter[int] = Counter()
    for r in runs:
        statuses.update(r.wrk.statuses)
    return (
        f"{server.key:<4}{server.name:<26}"
        f"{statistics.median(r.rate for r in runs):>13,.0f}"
        f"{statistics.median(r.wrk.p50_us for r in runs) / 1000:>9.2f}"
        f"{statistics.median(r.wrk.p99_us for r in runs) / 1000:>9.2f}"
        f"{statistics.median(r.cpu_us_per_delivery for r in runs):>12.1f}"
        f"{100 * statistics.median(r.sys_share for r in runs):>6.0f}"
        f"{100 * statistics.median(r.busy_share for r in runs):>7.0f}"
        f"{100 * statistics.median(r.other_share for r in runs):>7.0f}"
        f"{sum(r.wrk.non_2xx for r in runs):>9}"
        f"{max(r.rss_mb for r in runs):>8.0f}  "
        + " ".join(f"{code}x{n}" for code, n in sorted(statuses.items()))
    )


def report(runs: Sequence[Run], servers: Sequence[Server]) -> bool:
    """Print medians, the A/B ratio and the references; return whether all runs were valid."""
    by_server = {s.key: [r for r in runs if r.server == s] for s in servers}
    rounds = max(len(v) for v in by_server.values())
    print(f"\nMedians over {rounds} round(s) (non-2xx and statuses summed, RSS max):")
    print(HEADER)
    for server in servers:
        print(median_row(server, by_server[server.key]))
    a, b = by_server.get(APP.key), by_server.get(BARE.key)
    if a and b:
        rate_a = statistics.median(r.rate for r in a)
        rate_b = statistics.median(r.rate for r in b)
        cpu_a = statistics.median(r.cpu_us_per_delivery for r in a)
        cpu_b = statistics.median(r.cpu_us_per_delivery for r in b)
        print(
            f"\nratio A/B: deliveries/s {rate_a / rate_b:.2f}, CPU per delivery {cpu_a / cpu_b:.2f}"
            f"  (A costs {cpu_a - cpu_b:+.1f} us per delivery over the bare endpoint)"
        )
        print(
            f"one full core's worth (1 s / CPU per delivery, steadier than the rate on a busy"
            f" machine): A {1e6 / cpu_a:,.0f}/s, B {1e6 / cpu_b:,.0f}/s"
        )
    print("\nReference, measured earlier on this kind of machine (not in this run):")
    for name, rate, cpu in REFERENCE:
        print(f"    {name:<32}~{rate:>7,}/s  {cpu:>4} us CPU per delivery")
    if a and b:
        met = statistics.median(r.rate for r in a) >= statistics.median(r.rate for r in b)
        print(
            "Target: the app at least the bare starlette rate (same run) -> "
            + ("MET" if met else "NOT MET")
        )
    notes: list[str] = []
    if idle := [r for r in runs if r.busy_share < SATURATED]:
        notes.append(
            f"in {len(idle)} run(s) the server used less than {SATURATED:.0%} of its core"
            " (busy%): the load generator or the machine, not the server, set that rate."
        )
    if noisy := [r for r in runs if r.other_share > NOISY]:
        notes.append(
            f"in {len(noisy)} run(s) other work took more than {NOISY:.0%} of the server's core"
            " (other%): the machine was busy, those numbers are low and noisy; rerun."
        )
    if notes:
        print()
        for note in notes:
            print(f"Note: {note}")
    invalid = [r for r in runs if not r.valid]
    if invalid:
        print("\n" + "!" * 78)
        print("!!! INVALID RUNS: the numbers above do not measure accepted deliveries")
        for r in invalid:
            print(f"!!!   round {r.round} {r.server.name}: {'; '.join(r.warnings)}")
        print("!" * 78)
    return not invalid


# -- main -------------------------------------------------------------------------------


def app_importable() -> str | None:
    """None when ``github_app.server.create_app`` imports, else the error text."""
    probe = subprocess.run(
        [sys.executable, "-c", "from github_app.server import create_app"],
        cwd=REPO,
        capture_output=True,
        timeout=60,
        check=False,
    )
    if probe.returncode == 0:
        return None
    lines = probe.stderr.decode(errors="replace").strip().splitlines()
    return lines[-1] if lines else f"exit code {probe.returncode}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark webhook intake: the app (A) against a bare starlette endpoint (B)."
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=3, help="A/B pairs, order alternating")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument(
        "--only", choices=["app", "bare"], help="run one server only (no A/B ratio)"
    )
    args = parser.parse_args(argv)
    if args.duration < 1 or args.rounds < 1 or args.connections < WRK_THREADS:
        parser.error(f"need --duration >= 1, --rounds >= 1, --connections >= {WRK_THREADS}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print(
            "wrk is not installed. Install it with:  apt-get install wrk  "
            "(Debian/Ubuntu; as root, after apt-get update)",
            file=sys.stderr,
        )
        return 2
    servers: list[Server] = [APP, BARE]
    if args.only:
        servers = [APP] if args.only == "app" else [BARE]
    if APP in servers and (error := app_importable()) is not None:
        print(
            f"cannot import github_app.server.create_app ({error}); "
            "run with --only bare to measure the bare endpoint alone",
            file=sys.stderr,
        )
        return 2
    cores = pick_cores() if shutil.which("taskset") else None

    body = build_payload()
    print("auto-issue-processor webhook intake benchmark")
    print(
        f"payload: {FIXTURE.relative_to(REPO)} + installation, {len(body):,} bytes compact JSON, "
        "X-GitHub-Event: issues, unique X-GitHub-Delivery per request"
    )
    print(
        f"wrk: {WRK_THREADS} threads, {args.connections} connections, {args.duration} s per run "
        f"after a {WARMUP_SECONDS} s warm-up, {args.rounds} round(s), order alternating"
    )
    if cores:
        print(f"pinning: servers on core {cores[0]}, wrk on core {cores[1]}")
    else:
        print("WARNING: no taskset or fewer than 2 usable cores; nothing pinned")
    print(
        f"python {platform.python_version()}, uvicorn (uvloop + httptools), "
        f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.2f}"
    )
    print()
    print(HEADER)

    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as tmp:
        body_file = Path(tmp) / "body.json"
        body_file.write_bytes(body)
        for round_no in range(1, args.rounds + 1):
            order = servers if round_no % 2 else list(reversed(servers))
            for server in order:
                for attempt in range(NOISY_RERUNS + 1):
                    try:
                        run = measure(server, round_no, args, cores, body, body_file)
                    except BenchmarkError as exc:
                        print(f"\n{server.name}: {exc}", file=sys.stderr)
                        return 1
                    if run.other_share <= NOISY or attempt == NOISY_RERUNS:
                        break
                    print(row("--", run) + "  <-- noisy (other%), measured again", flush=True)
                runs.append(run)
                print(row(f"r{round_no}{server.key}", run), flush=True)
    return 0 if report(runs, servers) else 1


if __name__ == "__main__":
    sys.exit(main())
