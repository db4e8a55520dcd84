"""A simulated GitHub REST API with GitHub's per-installation limits, for benchmarks only.

    python benchmarks/sim_github.py --port 9100 [--latency 0.05] [--writes-per-minute 80]
        [--concurrency 100] [--budget 5000]

A plain ASGI app served by uvicorn in its own process. What it does, per installation
(an installation is known by the token it minted):

- ``POST /app/installations/{id}/access_tokens``: mints a token (any Bearer JWT accepted);
- ``GET /app``: the app's identity;
- ``GET /repos/{owner}/{repo}/contents/{path}``: a labeler config for every repository,
  with an ETag; ``If-None-Match`` with the current ETag answers 304 (no budget used);
- ``POST /repos/{owner}/{repo}/issues/{number}/labels``: records the labels and when;
- ``GET /repos/{owner}/{repo}/issues/{number}``: a small issue object (overhead runs);
- primary budget: ``x-ratelimit-*`` headers on every answer, 403 once it is spent;
- secondary limits: more than ``--concurrency`` requests in flight, or more than
  ``--writes-per-minute`` writes in any 60 s, are answered 403 with ``retry-after`` and
  "You have exceeded a secondary rate limit" (and counted as violations);
- every answer is delayed by ``--latency`` seconds;
- ``GET /_sim/stats`` returns the counters as JSON; ``POST /_sim/reset`` clears them.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import uvicorn

CONFIG = b"labeler:\n  rules:\n    - label: bug\n      keywords: [crash, crashes, traceback]\n"
CONFIG_ETAG = '"' + hashlib.sha256(CONFIG).hexdigest()[:20] + '"'
MINT = re.compile(r"^/app/installations/(\d+)/access_tokens$")
CONTENTS = re.compile(r"^/repos/([^/]+)/([^/]+)/contents/(.+)$")
LABELS = re.compile(r"^/repos/([^/]+)/([^/]+)/issues/(\d+)/labels$")
ISSUE = re.compile(r"^/repos/([^/]+)/([^/]+)/issues/(\d+)$")
SECONDARY = b'{"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}'


@dataclass
class Installation:
    remaining: int
    reset: int
    in_flight: int = 0
    writes: deque[float] = field(default_factory=deque)


class SimGitHub:
    def __init__(
        self, *, latency: float, writes_per_minute: int, concurrency: int, budget: int
    ) -> None:
        self.latency = latency
        self.writes_per_minute = writes_per_minute
        self.concurrency = concurrency
        self.budget = budget
        self.reset()

    def reset(self) -> None:
        self.installations: dict[int, Installation] = {}
        self.tokens: dict[str, int] = {}
        self.counts: Counter[str] = Counter()
        self.by_installation: dict[int, Counter[str]] = {}
        self.labels: list[tuple[float, int, str, int, list[str]]] = []
        self.first_request: float | None = None
        self.max_in_flight: dict[int, int] = {}

    def _installation(self, installation_id: int) -> Installation:
        found = self.installations.get(installation_id)
        if found is None:
            reset = int(time.time()) + 3600
            found = self.installations[installation_id] = Installation(self.budget, reset)
        return found

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        status, extra, payload = await self.handle(scope["method"], scope["path"], headers, body)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if path == "/_sim/stats":
            return 200, [], json.dumps(self.stats()).encode()
        if path == "/_sim/reset":
            self.reset()
            return 200, [], b"{}"
        if self.first_request is None:
            self.first_request = time.time()
        if self.latency:
            await asyncio.sleep(self.latency)
        self.counts["requests"] += 1
        if path == "/app":
            self.counts["app"] += 1
            return 200, [], json.dumps(APP).encode()
        minted = MINT.match(path)
        if minted and method == "POST":
            installation_id = int(minted.group(1))
            self.counts["tokens"] += 1
            token = f"ghs_sim_{installation_id}_{self.counts['tokens']}"
            self.tokens[token] = installation_id
            expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            return 201, [], json.dumps({"token": token, "expires_at": expires}).encode()
        auth = headers.get("authorization", "")
        installation_id = self.tokens.get(auth.removeprefix("token "))
        if installation_id is None:
            self.counts["unauthorised"] += 1
            return 401, [], b'{"message": "Bad credentials"}'
        return await self._as_installation(installation_id, method, path, headers, body)

    async def _as_installation(
        self, installation_id: int, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        state = self._installation(installation_id)
        counts = self.by_installation.setdefault(installation_id, Counter())
        counts[method] += 1
        now = time.time()
        if now >= state.reset:
            state.remaining, state.reset = self.budget, int(now) + 3600
        state.in_flight += 1
        self.max_in_flight[installation_id] = max(
            self.max_in_flight.get(installation_id, 0), state.in_flight
        )
        try:
            if state.in_flight > self.concurrency:
                self.counts["violations"] += 1
                self.counts["concurrency_violations"] += 1
                return 403, self._limits(state, retry_after=60), SECONDARY
            if state.remaining <= 0:
                self.counts["violations"] += 1
                self.counts["primary_exhausted"] += 1
                return 403, self._limits(state), b'{"message": "API rate limit exceeded"}'
            if method == "GET":
                return self._get(state, path, headers)
            if method == "POST" and LABELS.match(path):
                return self._add_labels(state, installation_id, path, body, now)
            state.remaining -= 1
            return 404, self._limits(state), b'{"message": "Not Found"}'
        finally:
            state.in_flight -= 1

    def _get(
        self, state: Installation, path: str, headers: dict[str, str]
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        self.counts["gets"] += 1
        if CONTENTS.match(path):
            if headers.get("if-none-match") == CONFIG_ETAG:
                self.counts["not_modified"] += 1
                return 304, [*self._limits(state), (b"etag", CONFIG_ETAG.encode())], b""
            state.remaining -= 1
            self.counts["config_reads"] += 1
            etag = [(b"etag", CONFIG_ETAG.encode())]
            if "raw" in headers.get("accept", ""):
                return 200, [*self._limits(state), *etag], CONFIG
            content = {"type": "file", "encoding": "utf-8", "content": CONFIG.decode()}
            return 200, [*self._limits(state), *etag], json.dumps(content).encode()
        issue = ISSUE.match(path)
        state.remaining -= 1
        if issue:
            number = int(issue.group(3))
            return (
                200,
                self._limits(state),
                json.dumps({"number": number, "state": "open"}).encode(),
            )
        return 404, self._limits(state), b'{"message": "Not Found"}'

    def _add_labels(
        self, state: Installation, installation_id: int, path: str, body: bytes, now: float
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        while state.writes and state.writes[0] <= now - 60:
            state.writes.popleft()
        if len(state.writes) >= self.writes_per_minute:
            wait = max(1, math.ceil(state.writes[0] + 60 - now))
            self.counts["violations"] += 1
            self.counts["write_limit_hits"] += 1
            return 403, self._limits(state, retry_after=wait), SECONDARY
        state.writes.append(now)
        state.remaining -= 1
        match = LABELS.match(path)
        assert match is not None
        labels = json.loads(body or b"{}").get("labels", [])
        repo = f"{match.group(1)}/{match.group(2)}"
        self.labels.append((time.time(), installation_id, repo, int(match.group(3)), labels))
        self.counts["label_writes"] += 1
        answer = [{"id": i, "name": name} for i, name in enumerate(labels)]
        return 200, self._limits(state), json.dumps(answer).encode()

    def _limits(
        self, state: Installation, retry_after: int | None = None
    ) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"x-ratelimit-limit", str(self.budget).encode()),
            (b"x-ratelimit-remaining", str(max(0, state.remaining)).encode()),
            (b"x-ratelimit-used", str(self.budget - max(0, state.remaining)).encode()),
            (b"x-ratelimit-reset", str(state.reset).encode()),
            (b"x-ratelimit-resource", b"core"),
        ]
        if retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        return headers

    def stats(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "by_installation": {str(k): dict(v) for k, v in self.by_installation.items()},
            "labels": self.labels,
            "first_request": self.first_request,
            "max_in_flight": {str(k): v for k, v in self.max_in_flight.items()},
        }


APP = {
    "id": 1,
    "slug": "auto-issue-processor-sim",
    "node_id": "A_1",
    "owner": {"login": "sim", "id": 1, "type": "Organization"},
    "name": "auto-issue-processor (sim)",
    "description": "",
    "external_url": "http://127.0.0.1",
    "html_url": "http://127.0.0.1/apps/sim",
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z",
    "permissions": {"issues": "write", "metadata": "read", "contents": "read"},
    "events": ["issues"],
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Simulated GitHub API for benchmarks.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--writes-per-minute", type=int, default=80)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--budget", type=int, default=5000)
    args = parser.parse_args(argv)
    app = SimGitHub(
        latency=args.latency,
        writes_per_minute=args.writes_per_minute,
        concurrency=args.concurrency,
        budget=args.budget,
    )
    uvicorn.run(
        app, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="on"
    )


if __name__ == "__main__":
    main()
