"""Backfill of a 10,000-issue repository against the simulated GitHub, inside GitHub's limits.

    python -m benchmarks.backfill [--issues 10000] [--scale 0.02] [--live 30] [--live-rate 0.5]

Everything runs in one process: the app (``Runtime`` + ``create_app``) and the simulated
GitHub (``benchmarks.github_sim``) are called through ``httpx.ASGITransport``. The
repository has ``--issues`` open issues, a tenth of them titled with a word of the
labeler's default ``bug`` rule; the simulated GitHub refuses more than 80 writes of an
installation in a minute with a secondary-limit 403.

1. Throughput (time scaled by ``--scale``: every pacing span and window, and the
   simulator's write window, times that factor, so 1,000 writes at GitHub's one a second
   take 20 s, not 17 min): the job's time against the bound the pacing rules allow
   (writes x interval, or the points a minute, whichever is longer), GitHub requests
   per 100 issues listed, label writes, and secondary-limit answers.
2. Live latency (real time, GitHub's real pacing): ``--live`` HIGH ``issues.opened``
   events of the same installation, one every ``1/--live-rate`` s, each needing one
   label write; the time from posting to the simulated GitHub receiving the label,
   median and p99, alone and while a backfill of the same installation runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from typing import Any

import anyio
import httpx
from githubkit.webhooks import sign

from benchmarks.client import private_key_pem
from benchmarks.github_sim import GitHubSim, Limits, World
from github_app.config import load_settings
from github_app.github.secondary_limits import GITHUB_LIMITS
from github_app.runtime import Runtime
from github_app.server import create_app

API = "https://api.github.com"
REPO = "octo-org/big"
SECRET = "bench-secret"
ADMIN = "bench-admin-token"
INSTALLATION = 1


def issues(count: int) -> list[dict[str, Any]]:
    return [
        {
            "number": n,
            "title": f"The app crashes on start #{n}" if n % 10 == 0 else f"A question, #{n}",
            "body": "",
            "state": "open",
            "labels": [],
            "user": {"login": "someone", "type": "User"},
            "created_at": "2026-01-01T00:00:00Z",
        }
        for n in range(1, count + 1)
    ]


class Bench:
    """One app and one simulated GitHub, for one measurement."""

    def __init__(self, count: int, scale: float, pem: str) -> None:
        self.sim = GitHubSim(
            Limits(installation_writes=80, write_window=60.0 * scale, retry_after=1),
            World(open_issues={REPO: issues(count)}, installation=INSTALLATION),
            base_url=API,
        )
        self.settings = load_settings(
            {
                "WEBHOOK_SECRET": SECRET,
                "APP_ID": "1",
                "PRIVATE_KEY": pem,
                "GITHUB_API_URL": API,
                "ADMIN_TOKEN": ADMIN,
                "QUEUE_BACKEND": "memory",
                "LOG_LEVEL": "WARNING",
                "GITHUB_WRITE_INTERVAL": str(GITHUB_LIMITS.write_interval * scale),
            },
            env_file=None,
        )
        self.runtime = Runtime(
            self.settings,
            transport=httpx.ASGITransport(app=self.sim),
            github_limits=GITHUB_LIMITS.scaled(scale),
        )
        self.app = create_app(self.settings, runtime=self.runtime)
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://bench", timeout=30
        )

    async def start_backfill(self) -> str:
        answer = await self.client.post(
            "/admin/backfills",
            json={"repository": REPO, "processors": ["labeler"]},
            headers={"authorization": f"Bearer {ADMIN}"},
        )
        assert answer.status_code == 202, answer.text
        job_id: str = answer.json()["id"]
        return job_id

    async def job(self, job_id: str) -> dict[str, Any]:
        answer = await self.client.get(
            f"/admin/backfills/{job_id}", headers={"authorization": f"Bearer {ADMIN}"}
        )
        found: dict[str, Any] = answer.json()
        return found

    async def live(self, number: int) -> float:
        """Post one live issues.opened that needs a label; seconds until GitHub has it."""
        payload = {
            "action": "opened",
            "issue": {**issues(1)[0], "number": number, "title": f"It crashes, live #{number}"},
            "repository": {"full_name": REPO, "name": "big", "owner": {"login": "octo-org"}},
            "installation": {"id": INSTALLATION},
            "sender": {"login": "someone", "type": "User"},
        }
        body = json.dumps(payload).encode()
        posted = time.time()
        answer = await self.client.post(
            self.settings.webhook_path,
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "issues",
                "X-GitHub-Delivery": f"live-{number}",
                "X-Hub-Signature-256": sign(SECRET, body, "sha256"),
            },
        )
        assert answer.status_code == 202, answer.text
        while True:
            for at, _, repo, labelled, _ in reversed(self.sim.labels):
                if repo == REPO and labelled == number:
                    return at - posted
            await anyio.sleep(0.005)


def github_reads(sim: GitHubSim) -> int:
    return sum(c.get("GET", 0) for c in sim.by_installation.values())


async def throughput(count: int, scale: float, pem: str) -> dict[str, Any]:
    bench = Bench(count, scale, pem)
    async with bench.runtime.running():
        started = time.monotonic()
        job_id = await bench.start_backfill()
        while (job := await bench.job(job_id))["state"] not in ("finished", "failed"):  # noqa: ASYNC110
            await anyio.sleep(0.05)  # follows the job through the admin API, as the command does
        elapsed = time.monotonic() - started
    limits = GITHUB_LIMITS.scaled(scale)
    writes = bench.sim.counts["label_writes"]
    reads = github_reads(bench.sim)
    points = writes * limits.write_points + reads * limits.read_points
    bound = max(writes * limits.write_interval, points / limits.points_per_minute * limits.minute)
    return {
        "state": job["state"],
        "issues": job["processed"],
        "seconds": round(elapsed, 2),
        "bound_seconds": round(bound, 2),
        "time_over_bound": round(elapsed / bound, 3),
        "at_github_pace_minutes": round(elapsed / scale / 60, 1),
        "issue_pages": bench.sim.counts["issue_pages"],
        "reads": reads,
        "reads_per_100_issues": round(reads / (count / 100), 3),
        "label_writes": writes,
        "writes_needed": count // 10,
        "secondary_limit_answers": len(bench.sim.secondary_hits),
        "job_writes": job["writes"],
        "job_errors": job["errors"],
    }


async def live_latency(count: int, live: int, rate: float, pem: str, backfill: bool) -> list[float]:
    bench = Bench(count, 1.0, pem)
    latencies: list[float] = []
    async with bench.runtime.running():
        if backfill:
            job_id = await bench.start_backfill()
            while (await bench.job(job_id))["writes"] < 3:  # noqa: ASYNC110
                await anyio.sleep(0.05)  # until the backfill is writing (the admin API says)
        async with anyio.create_task_group() as group:

            async def one(number: int) -> None:
                latencies.append(await bench.live(number))

            for index in range(live):
                group.start_soon(one, 100_000 + index)
                await anyio.sleep(1 / rate)
        secondary = len(bench.sim.secondary_hits)
    assert secondary == 0, f"{secondary} secondary-limit answers"
    return latencies


def summary(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"median": round(statistics.median(ordered), 3), "p99": round(p99, 3)}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    pem = private_key_pem()
    result: dict[str, Any] = {"throughput": await throughput(args.issues, args.scale, pem)}
    if args.live:
        alone = await live_latency(args.issues, args.live, args.live_rate, pem, backfill=False)
        during = await live_latency(args.issues, args.live, args.live_rate, pem, backfill=True)
        result["live"] = {
            "events": args.live,
            "alone": summary(alone),
            "during_backfill": summary(during),
            "p99_added_seconds": round(summary(during)["p99"] - summary(alone)["p99"], 3),
        }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--issues", type=int, default=10_000)
    parser.add_argument("--scale", type=float, default=0.02, help="time factor of part 1")
    parser.add_argument("--live", type=int, default=30, help="live events in part 2 (0: skip)")
    parser.add_argument("--live-rate", type=float, default=0.5, help="live events a second")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(anyio.run(main_async, args), indent=2))


if __name__ == "__main__":
    main()
