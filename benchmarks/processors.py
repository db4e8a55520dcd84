"""Processor benchmark: API calls per event, and the duplicates index at 10,000 issues.

Command (from the repository root)::

    python -m benchmarks.processors [--events 1000] [--repos 20] [--issues 10000] [--rounds 3]

Part 1 runs the real app (runtime, intake, queue, dispatcher, runner, every
processor enabled) against the simulated GitHub (``benchmarks/github_sim.py``
called through ``httpx.ASGITransport``: nothing leaves the process) and feeds it
a seeded, realistic mix of ``--events`` deliveries across ``--repos`` repositories
(half configured by their own file, half by the org's ``.github`` file; each with
150-450 open issues for the duplicates index). It prints the API calls GitHub would have
seen: total, reads, writes and 304s, per event and by kind.

Part 2 builds the duplicates index for ``--issues`` synthetic issues and
prints its memory (numpy bytes, and tracemalloc's count of everything the
build allocated and kept), the build time, and the per-event lookup time
(median and p99 over 200 lookups, features included). Part 3 measures the
event loop's lag (a 1 ms ticker's overshoot, max and p99) while the index is
built and looked up inline, in a worker thread, and with tokenising in a
worker process; medians over ``--rounds``. Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import time
import tracemalloc
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_process
import anyio.to_thread
import httpx
from githubkit.webhooks import sign

from benchmarks.client import private_key_pem
from benchmarks.github_sim import GitHubSim, World
from github_app.config import load_settings
from github_app.runtime import Runtime
from github_app.server import create_app
from processors.similarity import (
    SimilarityIndex,
    features,
    features_many,
    features_packed,
)

API = "https://api.github.com"
SECRET = "bench-secret"
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
CONFIG = (
    "triage:\nwelcome:\ncommands:\nduplicates:\n"
    "labeler:\n  rules:\n    - label: bug\n      keywords: [crash, error]\n"
)

_VOCAB = (
    "crash error fails slow startup login logout sso token proxy network timeout upload "
    "download export import csv json yaml config settings theme dark mode windows linux "
    "macos install upgrade version python node docker build test docs typo readme api "
    "endpoint rate limit cache memory leak cpu disk file folder sync search filter sort "
    "page table chart button menu shortcut keyboard mouse scroll notification email "
    "webhook plugin extension locale translation date time zone calendar week month "
    "permission role admin user team project repository branch commit merge release tag"
)
VOCAB = _VOCAB.split()
FILLER = [f"x{i}" for i in range(4000)]  # a long tail of rare words, as real text has


def synthetic_issue(rng: random.Random) -> tuple[str, str]:
    title = " ".join(rng.choice(VOCAB) for _ in range(rng.randint(4, 9)))
    body_words = [rng.choice(VOCAB if rng.random() < 0.4 else FILLER) for _ in range(120)]
    return title.capitalize(), " ".join(body_words)


# --- part 1: API calls per event -------------------------------------------------------------


def sim_world(repos: list[str], seed: int) -> World:
    """Half the repositories configured by their own file, half by the org's ``.github``
    file; each with 150-450 open issues; every author has opened an issue before; the
    maintainers may triage."""
    rng = random.Random(seed)
    open_issues: dict[str, list[dict[str, Any]]] = {}
    for repo in repos:
        issues = []
        for number in range(1, rng.randint(150, 450)):
            title, body = synthetic_issue(rng)
            issues.append({"number": number, "title": title, "body": body})
        open_issues[repo] = issues
    own_config = {repo for i, repo in enumerate(repos) if i % 2 == 0}
    org_config = {repo.split("/")[0] + "/.github" for repo in repos}
    return World(
        config=CONFIG.encode(),
        config_repos=frozenset(own_config | org_config),
        open_issues=open_issues,
        creator_issues=[{"number": 1}],
        roles={f"maintainer{n}": "triage" for n in range(1, 6)},
    )


def call_kind(request: httpx.Request) -> str | None:
    """What a processor asked GitHub for (None for the app's own token and identity calls)."""
    path = request.url.path
    method = request.method
    if path == "/app" or path.endswith("/access_tokens"):
        return None
    parts = path.strip("/").split("/")
    tail = "/".join(parts[3:])
    if method == "GET":
        if tail.startswith("contents/"):
            return "read: config file"
        if tail == "issues":
            if "creator" in request.url.params:
                return "read: author's issues (welcome)"
            return "read: open issues page (duplicates)"
        if tail.endswith("/comments"):
            return "read: comments (marker check)"
        if tail.endswith("/permission"):
            return "read: collaborator permission"
        return f"read: other {tail}"
    kind = "comment" if tail.endswith("/comments") else tail.split("/")[-1]
    if kind.isdigit():
        kind = "issue state"
    elif tail.count("/") >= 3 and "/labels/" in tail:
        kind = "remove label"
    return f"write: {method} {kind}"


class CountingTransport(httpx.AsyncBaseTransport):
    """The app's transport to the simulated GitHub, counting calls by kind and answers by status."""

    def __init__(self, sim: GitHubSim) -> None:
        self._sim = httpx.ASGITransport(app=sim)
        self.calls: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if (kind := call_kind(request)) is not None:
            self.calls[kind] += 1
        response = await self._sim.handle_async_request(request)
        self.statuses[response.status_code] += 1
        return response


def _fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))
    return loaded


def make_events(count: int, repos: list[str], seed: int) -> list[tuple[str, dict[str, Any]]]:
    """A seeded mix shaped like an org's issue traffic."""
    rng = random.Random(seed)
    issue_template, comment_template = _fixture("issues.opened"), _fixture("issue_comment.created")
    push_template, star_template = _fixture("push"), _fixture("star.created")
    next_number = {repo: 1000 for repo in repos}
    mix = [
        ("issues.opened", 25),
        ("issue_comment.created", 22),
        ("issues.edited", 12),
        ("issues.labeled", 10),
        ("issues.closed", 8),
        ("issues.assigned", 5),
        ("issues.reopened", 3),
        ("issue_comment.edited", 3),
        ("push", 2),
        ("issues.milestoned", 5),
        ("star.created", 5),
    ]
    names = [name for name, _ in mix]
    weights = [weight for _, weight in mix]
    events: list[tuple[str, dict[str, Any]]] = []
    for _ in range(count):
        name = rng.choices(names, weights)[0]
        repo = rng.choice(repos)
        event, _, action = name.partition(".")
        if event == "issues":
            payload = json.loads(json.dumps(issue_template))
            issue = payload["issue"]
            if action == "opened":
                next_number[repo] += 1
                issue["number"] = next_number[repo]
            else:
                issue["number"] = rng.randint(1, 140)
            title, body = synthetic_issue(rng)
            issue["title"], issue["body"] = title, body
            labelled = rng.random() < 0.3 or action in ("labeled", "closed", "assigned")
            names_ = ["needs-triage"] if labelled and rng.random() < 0.6 else []
            issue["labels"] = [{"name": n} for n in names_ + (["bug"] if labelled else [])]
            issue["author_association"] = rng.choice(["NONE", "CONTRIBUTOR", "MEMBER", "NONE"])
            issue["user"]["login"] = f"user{rng.randint(1, 300)}"
            payload["sender"]["login"] = f"maintainer{rng.randint(1, 5)}"
            if action == "labeled":
                payload["label"] = {"name": "bug"}
        elif event == "issue_comment":
            payload = json.loads(json.dumps(comment_template))
            payload["issue"]["number"] = rng.randint(1, 140)
            commenter = rng.choice(["maintainer1", "maintainer2", "user7", "user8", "user9"])
            payload["comment"]["user"]["login"] = payload["sender"]["login"] = commenter
            payload["comment"]["author_association"] = "MEMBER"
            payload["comment"]["id"] = rng.randint(1, 10**9)
            body = rng.choice(
                [
                    "Thanks, I see it too.",
                    "+1",
                    "/label bug",
                    "/priority high\n/assign me",
                    "/close",
                    "Try this:\n```\n/close\n```",
                ]
            )
            payload["comment"]["body"] = body
            if action == "edited":
                payload["changes"] = {"body": {"from": body}}
        elif event == "push":
            payload = json.loads(json.dumps(push_template))
            payload["ref"] = "refs/heads/master"
            touched = rng.random() < 0.3
            files = [".github/auto-issue-processor.yml"] if touched else ["README.md"]
            payload["commits"] = [{"added": [], "removed": [], "modified": files}]
        else:
            payload = json.loads(json.dumps(star_template if event == "star" else issue_template))
        payload["action"] = action or payload.get("action")
        payload["repository"]["full_name"] = repo
        payload["repository"]["name"] = repo.split("/")[1]
        payload["installation"] = {"id": 1 + repos.index(repo) % 3}
        events.append((event, payload))
    return events


async def api_calls(n_events: int, n_repos: int, seed: int) -> dict[str, Any]:
    repos = [f"org{i % 2}/repo{i}" for i in range(n_repos)]
    fake = CountingTransport(GitHubSim(world=sim_world(repos, seed)))

    pem = private_key_pem()
    settings = load_settings(
        {
            "WEBHOOK_SECRET": SECRET,
            "APP_ID": "1",
            "PRIVATE_KEY": pem,
            "GITHUB_API_URL": API,
            "QUEUE_MAX_EVENTS": "5000",
            "LOG_LEVEL": "WARNING",
            # This part counts API calls, not time: no 1 s pacing between one installation's writes.
            "GITHUB_WRITE_INTERVAL": "0",
        },
        env_file=None,
    )
    runtime = Runtime(settings, transport=fake)
    app = create_app(settings, runtime=runtime)
    events = make_events(n_events, repos, seed)
    started = time.perf_counter()
    async with runtime.running():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for number, (event, payload) in enumerate(events):
                body = json.dumps(payload).encode()
                await client.post(
                    settings.webhook_path,
                    content=body,
                    headers={
                        "Content-Type": "application/json",
                        "X-GitHub-Event": event,
                        "X-GitHub-Delivery": f"bench-{number}",
                        "X-Hub-Signature-256": sign(SECRET, body, "sha256"),
                    },
                )
        with anyio.move_on_after(120):
            while len(runtime.queue) or runtime.dispatcher.in_flight:  # noqa: ASYNC110
                await anyio.sleep(0.01)  # polls two counters; no event signals "drained"
    elapsed = time.perf_counter() - started
    stats = runtime.runner.stats
    reads = sum(v for k, v in fake.calls.items() if k.startswith("read"))
    writes = sum(v for k, v in fake.calls.items() if k.startswith("write"))
    return {
        "events": n_events,
        "processed": stats.events_ok + stats.events_failed,
        "failed": stats.events_failed,
        "ignored_at_intake": runtime.intake.stats.ignored,
        "reads": reads,
        "writes": writes,
        "total": reads + writes,
        "304": fake.statuses[304],
        "by_kind": dict(sorted(fake.calls.items())),
        "seconds": elapsed,
    }


# --- part 2 and 3: the duplicates index -------------------------------------------------------


def corpus(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    return [synthetic_issue(rng) for _ in range(n)]


def build_inline(texts: list[tuple[str, str]]) -> SimilarityIndex:
    index = SimilarityIndex()
    index.add_many(zip(range(1, len(texts) + 1), features_many(texts), strict=True))
    return index


def index_figures(n: int, seed: int) -> dict[str, float]:
    texts = corpus(n, seed)
    started = time.perf_counter()
    vectors = features_many(texts)
    featurized = time.perf_counter() - started
    index = SimilarityIndex()
    index.add_many(zip(range(1, n + 1), vectors, strict=True))
    built = time.perf_counter() - started
    del vectors, index
    tracemalloc.start()  # memory measured in a second build: tracing slows it several-fold
    index = build_inline(texts)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rng = random.Random(seed + 1)
    times = []
    for _ in range(200):
        title, body = synthetic_issue(rng)
        t0 = time.perf_counter()
        index.lookup(features(title, body), 3)
        times.append(time.perf_counter() - t0)
    times.sort()
    return {
        "issues": n,
        "tokenise_s": featurized,
        "build_s (incl. tokenise)": built,
        "numpy_mb": index.nbytes() / 1e6,
        "traced_kept_mb": current / 1e6,
        "traced_peak_mb": peak / 1e6,
        "lookup_median_ms": statistics.median(times) * 1000,
        "lookup_p99_ms": times[int(len(times) * 0.99) - 1] * 1000,
    }


async def measure_lag(work: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """Max and p99 overshoot (ms) of a 1 ms ticker while ``work`` runs."""
    lags: list[float] = []
    done = anyio.Event()

    async def ticker() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            await anyio.sleep(0.001)
            lags.append((time.perf_counter() - t0 - 0.001) * 1000)

    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        await anyio.sleep(0.05)
        await work()
        done.set()
    lags.sort()
    return lags[-1], lags[int(len(lags) * 0.99) - 1] if len(lags) > 1 else lags[-1]


async def lag_figures(n: int, seed: int) -> dict[str, tuple[float, float]]:
    texts = corpus(n, seed)
    queries = corpus(50, seed + 2)
    index = build_inline(texts)
    await anyio.to_process.run_sync(features_many, texts[:10])  # start the worker once

    async def build_blocking() -> None:
        build_inline(texts)

    async def build_thread() -> None:
        vectors = await anyio.to_thread.run_sync(features_many, texts)
        fresh = SimilarityIndex()
        await anyio.to_thread.run_sync(
            fresh.add_many, list(zip(range(1, n + 1), vectors, strict=True))
        )

    async def build_process() -> None:
        vectors = await anyio.to_process.run_sync(features_many, texts)
        fresh = SimilarityIndex()
        await anyio.to_thread.run_sync(
            fresh.add_many, list(zip(range(1, n + 1), vectors, strict=True))
        )

    async def build_process_packed() -> None:  # what DuplicatesState does from 2,000 issues on
        packed = await anyio.to_process.run_sync(features_packed, texts)
        fresh = SimilarityIndex()
        await anyio.to_thread.run_sync(fresh.add_packed, range(1, n + 1), packed)

    async def lookups_blocking() -> None:
        for title, body in queries:
            index.lookup(features(title, body), 3)
            await anyio.lowlevel.checkpoint()

    async def lookups_thread() -> None:
        for title, body in queries:
            await anyio.to_thread.run_sync(index.lookup, features(title, body), 3)

    return {
        "idle (no work)": await measure_lag(lambda: anyio.sleep(0.5)),
        "build inline": await measure_lag(build_blocking),
        "build, tokenise+compact in thread": await measure_lag(build_thread),
        "build, tokenise in process, compact in thread": await measure_lag(build_process),
        "same, worker returns 3 flat arrays (the default)": await measure_lag(build_process_packed),
        "50 lookups inline": await measure_lag(lookups_blocking),
        "50 lookups in thread": await measure_lag(lookups_thread),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--repos", type=int, default=20)
    parser.add_argument("--issues", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the fixtures' schema drift warnings are noise

    print(f"== Part 1: API calls, {args.events} events across {args.repos} repositories ==")
    calls = await api_calls(args.events, args.repos, args.seed)
    processed = calls["processed"]
    print(
        f"events sent {calls['events']}, processed {processed} (failed {calls['failed']}), "
        f"ignored at intake {calls['ignored_at_intake']}, {calls['seconds']:.1f}s"
    )
    for key in ("total", "reads", "writes", "304"):
        print(
            f"  {key:>6}: {calls[key]:5d}  = {calls[key] / calls['events']:.3f} per event sent"
            f", {calls[key] / max(processed, 1):.3f} per event processed"
        )
    print("  by kind:")
    for kind, count in calls["by_kind"].items():
        print(f"    {kind:<42} {count:5d}")

    print(f"\n== Part 2: duplicates index at {args.issues} issues (medians of {args.rounds}) ==")
    rounds = [index_figures(args.issues, args.seed + r) for r in range(args.rounds)]
    for key in rounds[0]:
        print(f"  {key:<26} {statistics.median(r[key] for r in rounds):10.2f}")

    print(
        f"\n== Part 3: event-loop lag (ms; max / p99 of a 1 ms ticker; medians of {args.rounds}) =="
    )
    lag_rounds = [await lag_figures(args.issues, args.seed) for _ in range(args.rounds)]
    for key in lag_rounds[0]:
        worst = statistics.median(r[key][0] for r in lag_rounds)
        p99 = statistics.median(r[key][1] for r in lag_rounds)
        print(f"  {key:<48} max {worst:8.1f}   p99 {p99:7.1f}")


if __name__ == "__main__":
    anyio.run(main)
