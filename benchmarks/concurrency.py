"""Adaptive drain width against fixed widths, all on the same simulated GitHub, in one run.

Command (from the repository root; needs the ``bench`` extra for the plots; about
20 minutes on 2 cores, an hour with ``--repeat 3``)::

    .venv/bin/pip install -e '.[dev,bench]'
    .venv/bin/python -m benchmarks.concurrency [--events 2000] [--widths 1,2,4,8,16,32,64,128]
        [--only sweep|halve|slower|installations|mixed] [--repeat N] [--plot out.png]
        [--mixed-plot out.png] [--decisions out.jsonl]

Every run starts a fresh simulated GitHub (``github_sim.py``, its own uvicorn
process) and a fresh app (``serve_adaptive.py``: the real app with app
credentials from a freshly generated RSA key, ``GITHUB_API_URL`` = the
simulator), then POSTs ``--events`` signed ``issues.opened`` deliveries over
HTTP as a burst and waits until each was processed (or the run's time cap).

Backend: ``--service-ms`` (+/- 10 %) per request while at most ``--capacity`` are in
service, slower in proportion beyond; secondary-limit 403 + retry-after past
``--secondary-cap`` concurrent requests, and 403 to the offender (everyone, for the
global cap) until the retry-after has passed. The repositories have no config file
(404): the labeler runs with its defaults. Scenarios:

1. sweep: fixed widths 1, 2, 4 ... 128 (``--widths`` for fewer),
   then the adaptive controller; the events of 1-3 are spread over
   ``WIDTH_INSTALLATIONS`` (the app writes one at a time per installation);
2. capacity halves when half the events are done (fixed 8, 16, 32 and adaptive);
3. latency triples when half the events are done, capacity unchanged (same);
4. 50 installations with per-installation limits (writes per window and
   concurrent requests): fixed 8, 16, 32, 64 and adaptive, with the bounds the
   limits and the app's pacing set (its token mints are spaced like writes);
5. mixed: the realistic mix, swept like 1. The events are spread over 200
   installations, one repository each, whose config file has one labeler rule.
   An installation's first event mints a token, reads the config and writes a
   label (3 requests; the simulator answers the mint at once: the app sends its
   own principal's requests one at a time, so 200 mints served like other
   requests would hold every width for 200 x 150 ms);
   of its later events half write a label (1 request) and half match no rule
   (no request at all). The simulator models no per-installation limits here,
   so the client layer is out of the way as in 1 (``Backend.client_argv``: at
   GitHub's pace its token mints alone, one a second, would take 200 s for
   every width): only the width matters. Its width over time is drawn on its
   own (``--mixed-plot``).

Adaptive runs use the app's own defaults (``WORKERS_MIN``, ``WORKERS_MAX``),
fixed runs set both to the width. ``--repeat N`` runs everything N times and
reports, per run, the repeat of median throughput. Each scenario ends with the
targets: throughput at least 0.9x of the best fixed width, p99 at most 1.5x,
settled within 10 s after a change, no secondary-limit answer after the first
back-off. Settled: the width stays within 25 % of where the new phase ends; a
routine probe (the controller's decisions log names it) that dips below that
band from inside it and is back within ``PROBE_RETURN`` seconds is a deliberate
measurement the controller takes back, and is left out (the report says how
many); a dip that stays out longer counts from its start.

Throughput = events processed OK / time from the first delivery to the last
completion (for a mid-run change: OK completions after the change / time
after it). Latency = an event's processing time in the app (p50/p99 over OK
events). 403s = secondary-limit answers the simulator gave. Ratios are against
the best fixed width measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import hashlib
import hmac
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.client import private_key_file
from github_app.control.controller import ROUTINE_PROBE

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
FIXTURE = REPO / "tests" / "fixtures" / "issues.opened.json"
SECRET = "benchmark-webhook-secret"
WEBHOOK = "/api/github/webhooks"
SWEEP = (1, 2, 4, 8, 16, 32, 64, 128)  # --widths 1,16,32 for a quicker run
SCENARIO_WIDTHS = (8, 16, 32)
INSTALLATION_WIDTHS = (8, 16, 32, 64)  # 64: WORKERS_MAX's default, ~one slot per installation
MIXED_INSTALLATIONS = 200
# The width scenarios' events are spread over this many installations: the app sends one
# write at a time per installation (about 6 a second at 150 ms), so one would bind every width.
WIDTH_INSTALLATIONS = 50
# A routine probe's dip below the settle band that is back inside within this many seconds
# is a measurement, not a failure to settle (the probe's epoch, then a step or two back).
PROBE_RETURN = 5.0
MIXED_CONFIG = b"labeler:\n  rules:\n    - label: bug\n      keywords: [crash]\n"


@dataclass
class Backend:
    capacity: int
    service_ms: float
    secondary_cap: int
    retry_after: int = 2
    inst_concurrency: int = 0
    inst_writes: int = 0
    inst_window: float = 60.0
    serve_mints: bool = False  # token mints take service time and capacity
    repo_config: str | None = None  # a file: every repository's config (None: 404)

    def client_argv(self) -> list[str]:
        """The app's client layer (pacing, secondary-limit discipline) set to this backend.

        The app keeps GitHub's documented secondary limits ahead of time, per
        installation and for its own principal (one write a second, 900 points a
        minute), and its token mints are writes of that principal. The simulator
        models only the limits a backend sets, so the client layer is set to match:
        without per-installation limits it is out of the way (discipline off, no
        write interval, 100 requests at once) and only the width matters; at
        GitHub's pace the discipline alone would bind (one installation's 2000 label
        writes at 5 points each: 3 a second; a cold burst over 200 installations:
        one token mint a second). The app also sends one write at a time per
        installation, off or not, so the width scenarios spread their events over
        ``WIDTH_INSTALLATIONS``. With per-installation limits the write interval is
        the simulator's write rate with a 5 % margin, as an operator would set
        GITHUB_WRITE_INTERVAL to GitHub's 80 writes a minute (it spaces the app's
        token mints too).
        """
        if not self.inst_writes:
            return [
                "--github-concurrency=100",
                "--write-interval=0",
                "--secondary-limits=off",
            ]
        return [
            f"--github-concurrency={self.inst_concurrency or 100}",
            f"--write-interval={self.write_interval:.3f}",
        ]

    @property
    def write_interval(self) -> float:
        """The app's write interval for a backend with per-installation write limits."""
        return 1.05 * self.inst_window / self.inst_writes

    def argv(self) -> list[str]:
        """The simulated GitHub's options for this backend."""
        return [
            f"--capacity={self.capacity}",
            f"--service-ms={self.service_ms}",
            "--jitter=0.1",
            f"--secondary-cap={self.secondary_cap}",
            f"--retry-after={self.retry_after}",
            "--hold-offenders",
            f"--installation-concurrency={self.inst_concurrency}",
            f"--installation-writes={self.inst_writes}",
            f"--write-window={self.inst_window}",
            *(["--serve-mints"] if self.serve_mints else []),
            *([f"--repo-config={self.repo_config}"] if self.repo_config else []),
        ]


@dataclass
class Result:
    name: str
    events: int
    ok: int
    failed: int
    seconds: float
    throughput: float
    p50: float
    p99: float
    hits: int
    hits_after_backoff: int | None
    capped: bool
    change_at: float | None = None
    phase_throughput: float | None = None
    settle: float | None = None
    final_width: float | None = None  # the adaptive width the new phase settles at
    probe_dips: int = 0  # routine probe dips the settle time leaves out (taken back in time)
    start: float = 0.0
    start_width: int | None = None  # the adaptive width before its first decision
    observations: list[tuple[float, float, str]] = field(default_factory=list)
    decisions: list[tuple[float, int, str, str]] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def process(argv: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m argv...`` from the checkout."""
    proc = subprocess.Popen([sys.executable, "-m", *argv], cwd=REPO)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_up(url: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def deliveries(
    count: int, installations: int, repos: int, *, quiet: bool = False
) -> list[tuple[bytes, dict[str, str]]]:
    """Signed ``issues.opened`` deliveries, round robin over the installations.

    ``quiet``: every other round after the first, the titles match no labeler rule
    (those events make no request once the installation's token and config are known).
    """
    template = json.loads(FIXTURE.read_text())
    out = []
    for n in range(count):
        payload = copy.deepcopy(template)
        installation = 1 + n % installations
        repo = f"org{installation}/repo{n % repos}"
        payload["installation"] = {"id": installation, "node_id": "MDIz"}
        payload["repository"]["full_name"] = repo
        payload["repository"]["name"] = repo.split("/")[1]
        payload["repository"]["owner"]["login"] = repo.split("/")[0]
        payload["issue"]["number"] = n + 1
        silent = quiet and (n // installations) % 2 == 1
        payload["issue"]["title"] = (
            f"Question about setup #{n}" if silent else f"Crash on start #{n}"
        )
        payload["issue"]["labels"] = []
        body = json.dumps(payload).encode()
        signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": signature,
        }
        out.append((body, headers))
    return out


async def deliver(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]
) -> None:
    """POST one delivery; a connection dropped under load is retried with the same delivery id
    (GitHub's redelivery), which the app answers 200 if it had admitted the first."""
    for attempt in range(3):
        try:
            answer = await client.post(url, content=body, headers=headers)
        except httpx.TransportError:
            if attempt == 2:
                raise
            await asyncio.sleep(0.5)
            continue
        if answer.status_code == 202 or (attempt and answer.status_code == 200):
            return
        raise RuntimeError(f"delivery refused: {answer.status_code} {answer.text}")


async def post_all(url: str, items: Sequence[tuple[bytes, dict[str, str]]]) -> None:
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
        queue = list(items)

        async def worker() -> None:
            while queue:
                body, headers = queue.pop()
                await deliver(client, url, body, headers)

        await asyncio.gather(*(worker() for _ in range(16)))


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(
    name: str,
    backend: Backend,
    key_file: str,
    events: int,
    *,
    width: int | None,
    cap: float,
    change: dict[str, float] | None = None,
    installations: int = 1,
    repos: int = 10,
    quiet: bool = False,
) -> Result:
    """One run; ``width`` None: adaptive, with the app's default bounds."""
    sim_port, app_port = free_port(), free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    app = f"http://127.0.0.1:{app_port}"
    bounds = [f"--workers-min={width}", f"--workers-max={width}"] if width else []
    sim_argv = ["benchmarks.github_sim", f"--port={sim_port}", *backend.argv()]
    app_argv = [
        "benchmarks.serve_adaptive",
        f"--port={app_port}",
        f"--api={sim}",
        f"--key-file={key_file}",
        *bounds,
        *backend.client_argv(),
    ]
    items = deliveries(events, installations, repos, quiet=quiet)
    with process(sim_argv), process(app_argv):
        wait_up(sim + "/_sim/stats")
        wait_up(app + "/healthz")
        start = time.time()
        asyncio.run(post_all(app + WEBHOOK, items))
        change_at = None
        capped = False
        while True:
            samples = httpx.get(app + "/_bench/samples", timeout=10).json()
            done = len(samples["observations"])
            if change is not None and change_at is None and done >= events // 2:
                httpx.post(sim + "/_sim/config", json=change, timeout=5)
                change_at = time.time()
            if done >= events and samples["in_flight"] == 0:
                break
            if time.time() - start > cap:
                capped = True
                break
            time.sleep(0.1)
        stats = httpx.get(sim + "/_sim/stats", timeout=10).json()
    observations = [tuple(o) for o in samples["observations"]]
    decisions = [tuple(d) for d in samples["decisions"]]
    ok = [o for o in observations if o[2] == "ok"]
    end = max((o[0] for o in ok), default=time.time())
    seconds = end - start
    latencies = [o[1] for o in ok]
    hits: list[float] = stats["secondary_hits"]
    backoffs = [d[0] for d in decisions if d[2] == "backoff"]
    after = None
    if width is None:
        first = backoffs[0] if backoffs else None
        after = 0 if first is None else sum(1 for t in hits if t > first + 0.5)
    result = Result(
        name=name,
        events=events,
        ok=len(ok),
        failed=len(observations) - len(ok),
        seconds=seconds,
        throughput=len(ok) / seconds if seconds > 0 else 0.0,
        p50=percentile(latencies, 0.5),
        p99=percentile(latencies, 0.99),
        hits=len(hits),
        hits_after_backoff=after,
        capped=capped,
        change_at=change_at,
        start=start,
        start_width=samples.get("start_width"),
        observations=observations,  # type: ignore[arg-type]
        decisions=decisions,  # type: ignore[arg-type]
    )
    if change_at is not None:
        later = [o for o in ok if o[0] > change_at]
        result.phase_throughput = len(later) / max(1e-9, end - change_at)
        if width is None:  # a fixed width has nothing to settle
            result.settle, result.final_width, result.probe_dips = settle_time(result, change_at)
    return result


def median_run(runs: list[Result], phase: bool = False) -> Result:
    """The repeat of median throughput (its latencies and decisions go with it)."""
    ordered = sorted(runs, key=lambda r: (r.phase_throughput or 0) if phase else r.throughput)
    chosen = ordered[(len(ordered) - 1) // 2]
    if len(runs) > 1:
        chosen.name = f"{chosen.name} (median of {len(runs)})"
    return chosen


def settle_time(result: Result, change_at: float) -> tuple[float | None, float | None, int]:
    """Seconds after the change until the width stays within 25 % of where the phase ends,
    that width (the median of the phase's second half), and how many routine probe dips
    were left out; (None, None, 0) for a fixed width.

    A routine probe (the controller's decision whose reason says ``ROUTINE_PROBE``) is
    a deliberate step down from a settled width that the next epochs take back unless
    the smaller width serves as much. Its dip is not "unsettled" when it starts inside
    the band and the width is back inside within ``PROBE_RETURN`` seconds; a dip that
    stays out longer counts from its start, like any other excursion.
    """
    phase = [d for d in result.decisions if d[0] >= change_at]
    if not phase:
        return None, None, 0
    final = statistics.median(d[1] for d in phase[len(phase) // 2 :])
    settled_at = change_at
    dips = 0
    probe_at: float | None = None  # the open probe dip started here
    inside_before = False
    for t, width, _, reason in phase:
        inside = abs(width - final) <= 0.25 * final
        if probe_at is not None:
            if not inside:
                if t - probe_at > PROBE_RETURN:  # not taken back in time: it counts
                    settled_at, probe_at = t, None
                continue
            dips += 1
            probe_at = None
        elif not inside:
            if inside_before and ROUTINE_PROBE in reason:
                probe_at = t
            else:
                settled_at = t
        inside_before = inside
    return settled_at - change_at, final, dips


def line(result: Result, best: Result | None, phase: bool = False) -> str:
    tput = result.phase_throughput if phase else result.throughput
    ref = (best.phase_throughput if phase else best.throughput) if best else None
    ratio = f"{tput / ref:5.2f}" if ref and tput is not None else "    -"
    p99_ratio = f"{result.p99 / best.p99:5.2f}" if best and best.p99 else "    -"
    after = "-" if result.hits_after_backoff is None else str(result.hits_after_backoff)
    settle = "-" if result.settle is None else f"{result.settle:.1f}s"
    return (
        f"{result.name:<12} {tput or 0:8.1f} {ratio} {result.p50 * 1000:7.0f} "
        f"{result.p99 * 1000:7.0f} {p99_ratio} {result.hits:6d} {after:>6} "
        f"{result.ok:5d} {result.failed:5d} {settle:>7}{'  (time cap)' if result.capped else ''}"
    )


HEADER = (
    f"{'run':<12} {'ev/s':>8} {'x best':>5} {'p50 ms':>7} {'p99 ms':>7} {'x p99':>5} "
    f"{'403s':>6} {'after':>6} {'ok':>5} {'fail':>5} {'settle':>7}"
)


def best_of(results: list[Result], phase: bool = False) -> Result:
    return max(results, key=lambda r: (r.phase_throughput or 0) if phase else r.throughput)


def report(title: str, fixed: list[Result], adaptive: Result, phase: bool = False) -> Result:
    best = best_of(fixed, phase)
    print(f"\n== {title} (best fixed: {best.name})")
    print(HEADER)
    for result in [*fixed, adaptive]:
        print(line(result, best, phase))
    if adaptive.final_width is not None:
        print(
            f"adaptive width after the change: settles at {adaptive.final_width:g} "
            f"within {adaptive.settle:.1f}s (settled: stays within 25 % of that width; "
            f"{adaptive.probe_dips} routine probe dip(s) taken back within {PROBE_RETURN:g}s "
            "left out)"
        )
    print(targets(best, adaptive, phase))
    return best


def targets(best: Result, adaptive: Result, phase: bool = False) -> str:
    """Issue 17's targets for the adaptive run of a scenario, each met or not."""
    tput = (adaptive.phase_throughput if phase else adaptive.throughput) or 0.0
    ref = (best.phase_throughput if phase else best.throughput) or 0.0
    checks = [
        (f"throughput {tput / ref:.2f}x best >= 0.9x", ref > 0 and tput >= 0.9 * ref),
        (f"p99 {adaptive.p99 / best.p99:.2f}x best <= 1.5x", adaptive.p99 <= 1.5 * best.p99),
        (
            f"403s after the first back-off: {adaptive.hits_after_backoff}",
            not adaptive.hits_after_backoff,
        ),
    ]
    if adaptive.settle is not None:
        checks.append((f"settled in {adaptive.settle:.1f}s <= 10s", adaptive.settle <= 10))
    return "targets: " + "; ".join(f"{text} {'ok' if met else 'MISSED'}" for text, met in checks)


def installation_bounds(backend: Backend, count: int, events: int) -> list[tuple[str, float]]:
    """What the 50-installation scenario's limits allow, in events/s, loosest first.

    Each event writes one label. The simulator allows ``inst_writes`` per window per
    installation; the app paces each installation at ``write_interval`` from the answer
    to its last write (at least the service time on the wire); and its token mints are
    writes of its own principal at that interval too (answered at once), so a cold
    burst mints one token per interval and the last installation starts ``count - 1``
    intervals late.
    """
    interval = backend.write_interval
    turn = interval + backend.service_ms / 1000  # one write's service time, then the interval
    per_installation = events / count
    optimum = count * backend.inst_writes / backend.inst_window
    paced = count / turn
    last_start = (count - 1) * interval
    minted = events / (last_start + per_installation * turn)
    return [
        ("limit-bound optimum", optimum),
        (
            f"client-layer pacing bound (one write per {interval:.3f}s after the last one's "
            f"answer, 5 % under the limit; {turn:.3f}s a write)",
            paced,
        ),
        (f"with the app's token mints one per {interval:.3f}s (the last starts late)", minted),
    ]


def plot(results: list[tuple[str, Result]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        3, len(results), figsize=(5 * len(results), 8), sharex="col", squeeze=False
    )
    for column, (title, result) in enumerate(results):
        ax_w, ax_t, ax_l = axes[0][column], axes[1][column], axes[2][column]
        t0 = result.start
        if result.decisions:
            # A decision's width holds from its time on ("post"), and the run starts at the
            # width the first decision changed from.
            times = [0.0] + [d[0] - t0 for d in result.decisions]
            first = result.start_width or result.decisions[0][1]
            shown = [first] + [d[1] for d in result.decisions]
            ax_w.step(times, shown, where="post")
        ax_w.set_title(title)
        ax_w.set_ylabel("width")
        ok = [o for o in result.observations if o[2] == "ok"]
        if ok:
            last = max(o[0] for o in ok) - t0
            bins = [i * 0.5 for i in range(int(last / 0.5) + 2)]
            counts = [0] * len(bins)
            lat_sum = [0.0] * len(bins)
            for t, latency, _ in ok:
                index = int((t - t0) / 0.5)
                counts[index] += 1
                lat_sum[index] += latency
            ax_t.plot(bins, [c / 0.5 for c in counts])
            ax_l.plot(
                bins,
                [lat_sum[i] / counts[i] * 1000 if counts[i] else None for i in range(len(bins))],
            )
        hits = [o[0] - t0 for o in result.observations if o[2] == "throttled"]
        if hits:
            ax_t.plot(hits, [0] * len(hits), "rx", label="throttled")
            ax_t.legend()
        ax_t.set_ylabel("events/s")
        ax_l.set_ylabel("mean latency ms")
        ax_l.set_xlabel("seconds")
        if result.change_at is not None:
            for ax in (ax_w, ax_t, ax_l):
                ax.axvline(result.change_at - t0, color="grey", linestyle="--")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--capacity", type=int, default=16)
    parser.add_argument("--service-ms", type=float, default=150.0)
    parser.add_argument("--secondary-cap", type=int, default=40)
    parser.add_argument("--cap", type=float, default=22.0, help="seconds a sweep run may take")
    parser.add_argument("--plot", default=str(BENCH / "concurrency.png"))
    parser.add_argument(
        "--widths",
        default=",".join(map(str, SWEEP)),
        help="fixed widths of the sweep, comma-separated (default: 1,2,4,8,16,32,64,128)",
    )
    parser.add_argument(
        "--decisions", help="write every adaptive run's decisions here (JSON, one run a line)"
    )
    parser.add_argument("--only", choices=["sweep", "halve", "slower", "installations", "mixed"])
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each configuration; the median is shown"
    )
    parser.add_argument(
        "--mixed-plot",
        default=str(REPO / "docs" / "controller-mixed.png"),
        help="the realistic mix's adaptive width over time (the README shows this file)",
    )
    args = parser.parse_args(argv)
    backend = Backend(args.capacity, args.service_ms, args.secondary_cap)
    widths = [int(w) for w in args.widths.split(",") if w.strip()]
    n = args.events
    print(
        f"backend: {args.service_ms:g} ms per request up to {args.capacity} concurrent, "
        f"secondary limit past {args.secondary_cap} (retry-after {backend.retry_after}s); "
        f"{n} issues.opened events per run; cpus={os.cpu_count()}"
    )
    plots: list[tuple[str, Result]] = []
    with tempfile.TemporaryDirectory() as tmp:
        key = private_key_file(tmp)

        def measure(name: str, backend: Backend, phase: bool = False, **options: Any) -> Result:
            runs = [run(name, backend, key, n, **options) for _ in range(args.repeat)]
            return median_run(runs, phase)

        if args.only in (None, "sweep"):
            spread = {"installations": WIDTH_INSTALLATIONS}
            fixed = [
                measure(f"fixed {w}", backend, width=w, cap=args.cap, **spread) for w in widths
            ]
            adaptive = measure("adaptive", backend, width=None, cap=4 * args.cap, **spread)
            report("sweep", fixed, adaptive)
            plots.append(("steady backend", adaptive))
        scenarios = {
            "halve": ("capacity halves mid-run", {"capacity": args.capacity // 2}),
            "slower": ("latency triples mid-run", {"service_ms": 3 * args.service_ms}),
        }
        for key_name, (title, change) in scenarios.items():
            if args.only not in (None, key_name):
                continue
            cap = 6 * args.cap
            options = {"cap": cap, "change": change, "installations": WIDTH_INSTALLATIONS}
            fixed = [
                measure(f"fixed {w}", backend, True, width=w, **options) for w in SCENARIO_WIDTHS
            ]
            adaptive = measure("adaptive", backend, True, width=None, **options)
            report(f"{title}: new-phase throughput", fixed, adaptive, phase=True)
            plots.append((title, adaptive))
        if args.only in (None, "installations"):
            many = Backend(
                capacity=4 * args.capacity,
                service_ms=args.service_ms,
                secondary_cap=1000,
                inst_concurrency=10,
                inst_writes=4,
                inst_window=3.0,
            )
            count = 50
            spread = {"installations": count, "cap": 6 * args.cap}
            fixed = [measure(f"fixed {w}", many, width=w, **spread) for w in INSTALLATION_WIDTHS]
            adaptive = measure("adaptive", many, width=None, **spread)
            report(
                f"50 installations, each limited to {many.inst_writes} writes per "
                f"{many.inst_window:g}s and {many.inst_concurrency} concurrent requests",
                fixed,
                adaptive,
            )
            for bound, rate in installation_bounds(many, count, n):
                print(f"{bound}: {rate:.1f} ev/s; adaptive {adaptive.throughput / rate:.2f} of it")
            plots.append(("50 installations", adaptive))
        if args.only in (None, "mixed"):
            config = Path(tmp) / "auto-issue-processor.yml"
            config.write_bytes(MIXED_CONFIG)
            mixed = Backend(
                args.capacity,
                args.service_ms,
                args.secondary_cap,
                repo_config=str(config),
            )
            spread = {"installations": MIXED_INSTALLATIONS, "repos": MIXED_INSTALLATIONS}
            options: dict[str, Any] = {**spread, "quiet": True}
            fixed = [measure(f"fixed {w}", mixed, width=w, cap=args.cap, **options) for w in widths]
            adaptive = measure("adaptive", mixed, width=None, cap=4 * args.cap, **options)
            report(
                f"mixed: {MIXED_INSTALLATIONS} installations; first events mint, read the "
                "config and write, later ones write once or make no request",
                fixed,
                adaptive,
            )
            plots.append(("realistic mix", adaptive))
            plot([("realistic mix: adaptive width over time", adaptive)], Path(args.mixed_plot))
            print(f"plot of the mixed scenario: {args.mixed_plot}")
    if args.decisions:
        with open(args.decisions, "w") as out:
            for title, result in plots:
                t0 = result.start
                rows = [(round(t - t0, 2), w, a, r) for t, w, a, r in result.decisions]
                out.write(json.dumps({"run": title, "decisions": rows}) + "\n")
    if plots:
        plot(plots, Path(args.plot))
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
