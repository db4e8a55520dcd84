"""What the /admin dashboard costs, and the README's screenshot of it under a burst.

Commands (from the repository root; chromium installed; not part of CI)::

    .venv/bin/python -m benchmarks.dashboard [--loads 7]
    .venv/bin/python -m benchmarks.dashboard --screenshot docs/dashboard.png

The first prints three figures:

memory   tracemalloc's count of the bytes a full hour of history holds (1,800 samples of
         every series), and the same with a width change marked at every sample (the
         worst case for the marks; the controller changes far less often);
server   the real server holding a full hour: size and median time (20 each) of what
         ``GET /admin/status?history=3600`` builds and serialises (a page's first
         poll) and of the same with ``&from=<next>`` (every poll after), timed in the
         process (an HTTP client on this machine adds a ~40 ms floor even to /healthz);
browser  the page's own ``performance.now()`` around each render (merge the samples,
         headline, five charts, installations), read over DevTools: the first render of
         each load draws the whole hour, the later ones add the new samples; medians
         over ``--loads`` fresh page loads.

The second runs the app (``python -m github_app serve``) against the simulated
GitHub (``benchmarks/github_sim.py`` as the client benchmark sets it up, with 40
writes a minute per installation, so GitHub's secondary limit answers now and then),
sends three waves of deliveries over 16 installations a minute apart (the third
spread over 30 s), and captures the page as the third ends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import anyio

from benchmarks.client import (
    SECRET,
    build_deliveries,
    free_port,
    private_key_file,
    process,
    send_burst,
    simulator,
    wait_http,
)
from github_app.admin.history import History
from github_app.admin.sampler import SERIES
from tests.chromium import devtools, find_browser
from tests.dashboard_samples import synthetic_sample

REPO = Path(__file__).resolve().parent.parent

ADMIN = "dashboard-benchmark-admin-token"
HOUR = 1800  # 2-second samples


def fill_hour(history: History, advance: Any) -> None:
    """1,800 samples, a width change marked every 100 (``advance`` moves the clock 2 s)."""
    for index in range(HOUR):
        history.record(synthetic_sample(index))
        if index % 100 == 50:
            history.mark("grow 8 \u2192 12", "throughput rose 20% at width 8")
        advance()


def memory() -> dict[str, float]:
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    history = History(SERIES, HOUR)
    for index in range(HOUR):
        history.record(synthetic_sample(index))
    samples = tracemalloc.get_traced_memory()[0] - base
    for index in range(HOUR):
        history.mark(f"grow {index} \u2192 {index + 1}", f"throughput rose 12% at width {index}")
    marked = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return {"hour_KiB": samples / 1024, "hour_with_1800_marks_KiB": marked / 1024}


async def server_and_browser(loads: int) -> dict[str, float]:
    from tests.conftest import make_settings, running_app

    offset = [-3600.0]
    async with running_app(
        make_settings(None, ADMIN_TOKEN=ADMIN), clock=lambda: time.time() + offset[0]
    ) as app:

        def advance() -> None:
            offset[0] += 2.0

        fill_hour(app.runtime.sampler.history, advance)
        figures: dict[str, float] = {}
        runtime, sampler = app.runtime, app.runtime.sampler
        for name, first in (("full", False), ("incremental", True)):
            times, size = [], 0
            for _ in range(20):
                start = sampler.history.next_seq - 1 if first else None
                started = time.perf_counter()
                document = runtime.status.document()  # what the route does, without the socket
                document["history"] = sampler.document(start=start, span=3600)
                size = len(json.dumps(document))
                times.append(time.perf_counter() - started)
            figures[f"status_{name}_KiB"] = size / 1024
            figures[f"status_{name}_ms"] = statistics.median(times) * 1000
        browser = find_browser()

        def measure() -> tuple[list[float], list[float]]:
            firsts, laters = [], []
            with (
                tempfile.TemporaryDirectory() as profile,
                devtools(browser, Path(profile)) as tools,
            ):
                for _ in range(loads):
                    tools.navigate("about:blank")  # a new document each time, not a new fragment
                    tools.navigate(f"{app.url}/admin#token={ADMIN}")
                    tools.wait_for("window.renderTimes && window.renderTimes.length >= 3")
                    times = tools.evaluate("window.renderTimes")
                    firsts.append(times[0])
                    laters.extend(times[1:])
                    tools.evaluate("sessionStorage.clear()")
            return firsts, laters

        firsts, laters = await anyio.to_thread.run_sync(measure)
        figures["render_full_hour_ms_median"] = statistics.median(firsts)
        figures["render_full_hour_ms_max"] = max(firsts)
        figures["render_incremental_ms_median"] = statistics.median(laters)
        return figures


def screenshot(path: Path) -> None:
    browser = find_browser()
    with (
        simulator(latency=0.05, writes_per_minute=40) as api,
        tempfile.TemporaryDirectory() as directory,
    ):
        port = free_port()
        env = {
            **os.environ,
            "APP_ID": "1",
            "PRIVATE_KEY_PATH": private_key_file(directory),
            "WEBHOOK_SECRET": SECRET,
            "GITHUB_API_URL": api,
            "DRY_RUN": "false",
            "LOG_LEVEL": "ERROR",
            "ADMIN_TOKEN": ADMIN,
            "WORKERS_MIN": "1",
            "WORKERS_MAX": "32",
            "QUEUE_MAX_EVENTS": "100000",
            "PYTHONPATH": str(REPO),
        }
        args = [sys.executable, "-m", "github_app", "serve", "--host", "127.0.0.1"]
        with process([*args, "--port", str(port)], env=env, cwd=directory):
            url = f"http://127.0.0.1:{port}"
            wait_http(url + "/healthz")
            for wave in range(2):  # two bursts a minute apart...
                asyncio.run(send_burst(url, build_deliveries(800, installations=16, seed=wave)))
                time.sleep(60)
            third = build_deliveries(1200, installations=16, seed=2)
            for start in range(0, len(third), 100):  # ...and a third arriving over 30 s
                asyncio.run(send_burst(url, third[start : start + 100]))
                time.sleep(2.5)
            with devtools(browser, Path(directory) / "profile", width=1400) as tools:
                tools.navigate(f"{url}/admin#token={ADMIN}")
                tools.wait_for("window.renderTimes.length >= 2")
                height = tools.evaluate("document.documentElement.scrollHeight")
                tools.screenshot(path, width=1400, height=int(height))
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", type=int, default=7)
    parser.add_argument("--screenshot", type=Path)
    args = parser.parse_args(argv)
    if args.screenshot is not None:
        screenshot(args.screenshot)
        return
    figures = memory()
    figures |= anyio.run(server_and_browser, args.loads)
    for name, value in figures.items():
        print(f"{name:32} {value:10.2f}")


if __name__ == "__main__":
    main()
