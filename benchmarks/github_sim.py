"""One simulated GitHub REST API for every benchmark: the routes the app calls, and GitHub's limits.

    python -m benchmarks.github_sim --port 9100 [--latency 0.05] [--service-ms 150 --capacity 16]
        [--secondary-cap 40] [--installation-concurrency 10] [--installation-writes 80]
        [--write-window 60] [--retry-after 2] [--hold-offenders] [--budget 5000]
        [--repo-config FILE] [--serve-mints]

A plain ASGI app: the client and concurrency benchmarks serve it with uvicorn in its
own process (the command above), the processors benchmark calls it in process through
``httpx.ASGITransport``. Every limit is off unless a benchmark turns it on (``Limits``);
what the repositories hold is a ``World``.

Routes:

- ``GET /app``; ``POST /app/installations/{id}/access_tokens`` mints a token (any JWT is
  accepted) that names its installation; an unknown token is answered 401;
- ``GET /repos/{o}/{r}/contents/{path}``: the repository config (``World.config``) with
  an ETag; ``If-None-Match`` with that ETag is answered 304, which uses no budget;
  404 when the repository has no config;
- ``GET /repos/{o}/{r}/issues``: the open issues, ``per_page`` (100) a page with a
  ``Link: rel="next"`` header, labels added since shown (``?creator=`` answers
  ``World.creator_issues``); ``GET /repos/{o}/{r}`` (its open issue count);
  ``GET /repos/{o}/{r}/installation`` (``World.installation``, with the app's JWT);
  ``GET .../issues/{n}``; ``GET .../issues/{n}/comments`` (none);
  ``GET /repos/{o}/{r}/collaborators/{login}/permission`` (``World.roles``);
- ``POST .../issues/{n}/labels`` records the labels and when; every other write is
  answered 200; any other GET 404;
- the app's delivery log (``DeliveryLog``, with the app's JWT): ``GET /app/hook/deliveries``
  newest first, ``per_page`` a page, the next page's cursor in a ``Link`` header as
  GitHub's; ``POST /app/hook/deliveries/{id}/attempts`` answers 202 and queues that
  delivery for the benchmark to send again (``DeliveryLog.pending``).

Limits, per installation unless said otherwise (a request of an installation is every
request but ``/app`` and the token mint):

- ``latency``: seconds added to every answer, token mints included (the network);
- ``service_ms`` while at most ``capacity`` requests are in service, slower in
  proportion beyond (a shared backend's knee), ``jitter`` as a +/- share; with
  ``serve_mints`` a token mint is served the same way (GitHub's mint is a request
  like any other: it takes its service time and its share of the capacity);
- secondary limits: more than ``secondary_cap`` requests in service (all installations
  together), more than ``installation_concurrency`` of one installation, more than
  ``installation_writes`` writes in ``write_window`` seconds: 403 with ``retry-after``
  and "You have exceeded a secondary rate limit"; with ``hold_offenders`` the offender
  (everyone, for the global cap, when there are no per-installation limits) is refused
  until its retry-after has passed;
- primary budget (``budget``): ``x-ratelimit-*`` headers on every answer, 403 once spent.

Control routes: ``GET /_sim/stats`` (counters as JSON), ``POST /_sim/reset``,
``POST /_sim/config`` (JSON ``capacity`` / ``service_ms``: change the backend mid-run).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import random
import re
import time
from collections import Counter, defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import anyio
from starlette.types import Receive, Scope, Send

Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, Headers, bytes]

MINT = re.compile(r"^/app/installations/(\d+)/access_tokens$")
REPO = re.compile(r"^/repos/([^/]+)/([^/]+)/(.+)$")
REPO_ONLY = re.compile(r"^/repos/([^/]+)/([^/]+)$")
INSTALLATION_OF = re.compile(r"^/repos/([^/]+)/([^/]+)/installation$")
CONTENTS = re.compile(r"^contents/(.+)$")
ISSUE = re.compile(r"^issues/(\d+)$")
LABELS = re.compile(r"^issues/(\d+)/labels(?:/.*)?$")
COMMENTS = re.compile(r"^issues/(\d+)/comments$")
PERMISSION = re.compile(r"^collaborators/([^/]+)/permission$")
REDELIVER = re.compile(r"^/app/hook/deliveries/(\d+)/attempts$")
SECONDARY = b'{"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}'
NOT_FOUND = b'{"message": "Not Found"}'
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CONCURRENCY_RETRY_AFTER = 60  # GitHub's answer to too many concurrent requests, without a fixed one

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


@dataclass
class Limits:
    """How the simulated GitHub answers under load; every limit off (0 / None) by default."""

    latency: float = 0.0
    service_ms: float = 0.0
    capacity: int = 0  # 0: no knee, service time never grows with load
    jitter: float = 0.0
    secondary_cap: int = 0
    installation_concurrency: int = 0
    installation_writes: int = 0
    write_window: float = 60.0
    retry_after: int | None = None  # None: until the write window has room, 60 s for concurrency
    hold_offenders: bool = False
    budget: int | None = None  # None: no primary budget and no x-ratelimit headers
    serve_mints: bool = False  # token mints take service time and capacity like any request


@dataclass
class World:
    """What the simulated repositories hold."""

    config: bytes | None = None  # every repository's config file; None: 404
    config_repos: frozenset[str] | None = None  # only these have it (None: all)
    open_issues: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)
    creator_issues: list[dict[str, Any]] = field(default_factory=list)  # ?creator= for anyone
    roles: Mapping[str, str] = field(default_factory=dict)  # login -> role_name (else "read")
    installation: int = 1  # what ``GET /repos/{o}/{r}/installation`` answers

    def config_of(self, repo: str) -> bytes | None:
        if self.config_repos is not None and repo not in self.config_repos:
            return None
        return self.config


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class DeliveryLog:
    """GitHub's log of the app's webhook deliveries: every attempt the benchmark makes.

    The benchmark sends deliveries itself (``bodies`` holds each one's body and
    headers) and records each attempt with its outcome; the app reads the log and
    asks for redeliveries, which wait in ``pending`` until the benchmark sends them.
    """

    def __init__(self, installation: int = 1) -> None:
        self.installation = installation
        self.log: list[dict[str, Any]] = []  # oldest first
        self.bodies: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.pending: list[str] = []
        self.calls: Counter[str] = Counter()

    def record(self, guid: str, status: int, action: str, redelivery: bool) -> None:
        self.log.append(
            {
                "id": len(self.log) + 1,
                "guid": guid,
                "delivered_at": iso(time.time()),
                "redelivery": redelivery,
                "duration": 0.01,
                "status": "OK" if 200 <= status < 300 else "failed",
                "status_code": status,
                "event": "issues",
                "action": action,
                "installation_id": self.installation,
                "repository_id": 1,
            }
        )

    def page(self, query: Mapping[str, list[str]], base_url: str) -> Answer:
        """One page, newest first; the cursor names the next page's first attempt, so
        attempts logged between two pages do not shift the pages (as GitHub's)."""
        self.calls["list"] += 1
        newest_first = self.log[::-1]
        cursor = query.get("cursor", [None])[0]
        start = 0 if cursor is None else len(self.log) - int(cursor)
        per_page = int(query.get("per_page", ["30"])[0])
        headers: Headers = []
        if start + per_page < len(newest_first):
            after = newest_first[start + per_page]["id"]
            link = (
                f'<{base_url}/app/hook/deliveries?per_page={per_page}&cursor={after}>; rel="next"'
            )
            headers.append((b"link", link.encode()))
        return 200, headers, json.dumps(newest_first[start : start + per_page]).encode()

    def redeliver(self, attempt: int) -> Answer:
        self.calls["redeliver"] += 1
        self.pending.append(self.log[attempt - 1]["guid"])
        return 202, [], b"{}"


@dataclass
class Installation:
    remaining: int
    reset: int
    in_service: int = 0
    writes: deque[float] = field(default_factory=deque)
    held_until: float = 0.0


class GitHubSim:
    """The simulated API (an ASGI app); its counters are served at ``/_sim/stats``."""

    def __init__(
        self,
        limits: Limits | None = None,
        world: World | None = None,
        base_url: str = "https://api.github.com",
        deliveries: DeliveryLog | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.deliveries = deliveries or DeliveryLog()
        self.base_url = base_url  # where the app reaches it: the issue list's Link URLs
        self.world = world or World()
        etag = hashlib.sha256(self.world.config or b"").hexdigest()[:20]
        self.config_etag = f'"{etag}"'
        self.reset()

    def reset(self) -> None:
        self.installations: dict[int, Installation] = {}
        self.tokens: dict[str, int] = {}
        self.counts: Counter[str] = Counter()
        self.by_installation: dict[int, Counter[str]] = defaultdict(Counter)
        self.labels: list[tuple[float, int, str, int, list[str]]] = []
        self.first_request: float | None = None
        self.max_in_flight: dict[int, int] = {}
        self.in_service = 0
        self.peak = 0
        self.held_until = 0.0  # everyone, after the global cap with hold_offenders
        self.secondary_hits: list[float] = []
        self.added_labels: dict[tuple[str, int], list[dict[str, str]]] = {}

    def stats(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "by_installation": {str(k): dict(v) for k, v in self.by_installation.items()},
            "labels": self.labels,
            "first_request": self.first_request,
            "max_in_flight": {str(k): v for k, v in self.max_in_flight.items()},
            "served": self.counts["served"],
            "secondary_hits": self.secondary_hits,
            "peak": self.peak,
        }

    def configure(self, change: Mapping[str, Any]) -> None:
        """Change the backend mid-run (``POST /_sim/config``)."""
        self.limits.capacity = int(change.get("capacity", self.limits.capacity))
        self.limits.service_ms = float(change.get("service_ms", self.limits.service_ms))

    # -- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        status, extra, payload = await self.handle(
            scope["method"], scope["path"], query, headers, body
        )
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), *extra],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    # -- requests -----------------------------------------------------------------------

    async def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Answer:
        if path == "/_sim/stats":
            return 200, [], json.dumps(self.stats()).encode()
        if path == "/_sim/reset" and method == "POST":
            self.reset()
            return 200, [], b"{}"
        if path == "/_sim/config" and method == "POST":
            self.configure(json.loads(body or b"{}"))
            return 200, [], b"{}"
        if self.first_request is None:
            self.first_request = time.time()
        if self.limits.latency:
            await anyio.sleep(self.limits.latency)
        self.counts["requests"] += 1
        if path == "/app" and method == "GET":
            self.counts["app"] += 1
            return 200, [], json.dumps(APP).encode()
        minted = MINT.match(path)
        if minted and method == "POST":
            if self.limits.serve_mints:
                await self._serve()
            return self._mint(int(minted.group(1)))
        if path == "/app/hook/deliveries" and method == "GET":  # the app's JWT
            return self.deliveries.page(query, self.base_url)
        redelivery = REDELIVER.match(path)
        if redelivery and method == "POST":
            return self.deliveries.redeliver(int(redelivery.group(1)))
        located = INSTALLATION_OF.match(path)
        if located and method == "GET":  # asked with the app's JWT
            self.counts["installation_lookups"] += 1
            return 200, [], json.dumps({"id": self.world.installation}).encode()
        installation = self.tokens.get(headers.get("authorization", "").rsplit(" ", 1)[-1])
        if installation is None:
            self.counts["unauthorised"] += 1
            return 401, [], b'{"message": "Bad credentials"}'
        return await self._as_installation(installation, method, path, query, headers, body)

    def _mint(self, installation: int) -> Answer:
        self.counts["tokens"] += 1
        token = f"ghs_sim_{installation}_{self.counts['tokens']}"
        self.tokens[token] = installation
        expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return 201, [], json.dumps({"token": token, "expires_at": expires}).encode()

    def _state(self, installation: int) -> Installation:
        found = self.installations.get(installation)
        if found is None:
            budget = self.limits.budget or 0
            found = Installation(budget, int(time.time()) + 3600)
            self.installations[installation] = found
        if self.limits.budget is not None and time.time() >= found.reset:
            found.remaining, found.reset = self.limits.budget, int(time.time()) + 3600
        return found

    async def _as_installation(
        self,
        installation: int,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Answer:
        limits = self.limits
        state = self._state(installation)
        self.by_installation[installation][method] += 1
        refused = self._refusal(state, installation, method)
        if refused is not None:
            return refused
        state.in_service += 1
        self.max_in_flight[installation] = max(
            self.max_in_flight.get(installation, 0), state.in_service
        )
        try:
            await self._serve()
        finally:
            state.in_service -= 1
        self.counts["served"] += 1
        status, extra, answer = self._route(installation, method, path, query, headers, body)
        if status != 304 and limits.budget is not None:
            state.remaining -= 1
        return status, [*self._rate_headers(state), *extra], answer

    async def _serve(self) -> None:
        """One request in service: its service time, longer in proportion past the knee."""
        limits = self.limits
        self.in_service += 1
        self.peak = max(self.peak, self.in_service)
        try:
            if limits.service_ms:
                load = max(1.0, self.in_service / limits.capacity) if limits.capacity else 1.0
                spread = random.uniform(1 - limits.jitter, 1 + limits.jitter)
                await anyio.sleep(limits.service_ms / 1000 * load * spread)
        finally:
            self.in_service -= 1

    def _refusal(self, state: Installation, installation: int, method: str) -> Answer | None:
        """The secondary or primary limit this request breaks, answered; None if it may pass."""
        limits = self.limits
        now = time.monotonic()
        if now < self.held_until or now < state.held_until:
            return self._secondary(state, now, "held", everyone=True)
        if limits.secondary_cap and self.in_service + 1 > limits.secondary_cap:
            return self._secondary(state, now, "concurrency_violations", everyone=True)
        if limits.installation_concurrency and state.in_service + 1 > (
            limits.installation_concurrency
        ):
            return self._secondary(state, now, "concurrency_violations", everyone=False)
        if limits.budget is not None and state.remaining <= 0:
            self.counts["violations"] += 1
            self.counts["primary_exhausted"] += 1
            return 403, self._rate_headers(state), b'{"message": "API rate limit exceeded"}'
        if method in WRITE_METHODS and limits.installation_writes:
            recent = state.writes
            while recent and recent[0] <= now - limits.write_window:
                recent.popleft()
            if len(recent) >= limits.installation_writes:
                free_in = max(1, math.ceil(recent[0] + limits.write_window - now))
                return self._secondary(
                    state, now, "write_limit_hits", everyone=False, retry_after=free_in
                )
            recent.append(now)
        return None

    def _secondary(
        self,
        state: Installation,
        now: float,
        reason: str,
        *,
        everyone: bool,
        retry_after: int = CONCURRENCY_RETRY_AFTER,
    ) -> Answer:
        """GitHub's secondary-limit answer; with ``hold_offenders`` the offender waits it out."""
        limits = self.limits
        wait = limits.retry_after if limits.retry_after is not None else retry_after
        self.counts["violations"] += 1
        self.counts[reason] += 1
        self.secondary_hits.append(time.time())
        if limits.hold_offenders:
            until = now + wait
            held_alone = state.held_until > 0 or limits.installation_concurrency
            if everyone and not held_alone:
                self.held_until = max(self.held_until, until)
            else:
                state.held_until = max(state.held_until, until)
        return 403, [*self._rate_headers(state), (b"retry-after", str(wait).encode())], SECONDARY

    def _rate_headers(self, state: Installation) -> Headers:
        budget = self.limits.budget
        if budget is None:
            return []
        remaining = max(0, state.remaining)
        return [
            (b"x-ratelimit-limit", str(budget).encode()),
            (b"x-ratelimit-remaining", str(remaining).encode()),
            (b"x-ratelimit-used", str(budget - remaining).encode()),
            (b"x-ratelimit-reset", str(state.reset).encode()),
            (b"x-ratelimit-resource", b"core"),
        ]

    # -- routes of an installation ---------------------------------------------------------

    def _route(
        self,
        installation: int,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Answer:
        whole = REPO_ONLY.match(path)
        if whole is not None and method == "GET":
            self.counts["gets"] += 1
            repo = f"{whole.group(1)}/{whole.group(2)}"
            count = len(self.world.open_issues.get(repo, []))
            return 200, [], json.dumps({"full_name": repo, "open_issues_count": count}).encode()
        match = REPO.match(path)
        if match is None:
            return 404, [], NOT_FOUND
        repo, rest = f"{match.group(1)}/{match.group(2)}", match.group(3)
        if method == "GET":
            self.counts["gets"] += 1
            return self._read(repo, rest, query, headers)
        labels = LABELS.match(rest)
        if method == "POST" and labels:
            return self._add_labels(installation, repo, int(labels.group(1)), body)
        self.counts["other_writes"] += 1
        return 200, [], b"[]" if labels else b"{}"

    def _read(
        self, repo: str, rest: str, query: Mapping[str, list[str]], headers: Mapping[str, str]
    ) -> Answer:
        if CONTENTS.match(rest):
            return self._config(repo, headers)
        if rest == "issues":
            if "creator" in query:
                return 200, [], json.dumps(self.world.creator_issues).encode()
            page = int(query.get("page", ["1"])[0])
            per_page = int(query.get("per_page", ["100"])[0])
            issues = self.world.open_issues.get(repo, [])
            shown = issues[(page - 1) * per_page : page * per_page]
            added = self.added_labels
            if added:
                shown = [
                    {**i, "labels": [*i.get("labels", ()), *added.get((repo, i["number"]), ())]}
                    for i in shown
                ]
            self.counts["issue_pages"] += 1
            extra: Headers = []
            if page * per_page < len(issues):
                following = {k: v[0] for k, v in query.items()} | {"page": str(page + 1)}
                link = f'<{self.base_url}/repos/{repo}/issues?{urlencode(following)}>; rel="next"'
                extra.append((b"link", link.encode()))
            return 200, extra, json.dumps(shown).encode()
        if issue := ISSUE.match(rest):
            return 200, [], json.dumps({"number": int(issue.group(1)), "state": "open"}).encode()
        if COMMENTS.match(rest):
            return 200, [], b"[]"
        if permission := PERMISSION.match(rest):
            role = self.world.roles.get(permission.group(1), "read")
            return 200, [], json.dumps({"permission": "read", "role_name": role}).encode()
        return 404, [], NOT_FOUND

    def _config(self, repo: str, headers: Mapping[str, str]) -> Answer:
        config = self.world.config_of(repo)
        if config is None:
            return 404, [], NOT_FOUND
        etag = (b"etag", self.config_etag.encode())
        if headers.get("if-none-match") == self.config_etag:
            self.counts["not_modified"] += 1
            return 304, [etag], b""
        self.counts["config_reads"] += 1
        if "raw" in headers.get("accept", ""):
            return 200, [etag], config
        content = {"type": "file", "encoding": "utf-8", "content": config.decode()}
        return 200, [etag], json.dumps(content).encode()

    def _add_labels(self, installation: int, repo: str, number: int, body: bytes) -> Answer:
        sent = json.loads(body or b"{}")
        labels: list[str] = sent.get("labels", []) if isinstance(sent, dict) else sent
        self.labels.append((time.time(), installation, repo, number, labels))
        self.added_labels.setdefault((repo, number), []).extend({"name": n} for n in labels)
        self.counts["label_writes"] += 1
        answer = [{"id": i, "name": name} for i, name in enumerate(labels)]
        return 200, [], json.dumps(answer).encode()


def limits_from(args: argparse.Namespace) -> Limits:
    return Limits(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Limits) if f.init})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds on every answer")
    parser.add_argument("--service-ms", type=float, default=0.0)
    parser.add_argument("--capacity", type=int, default=0, help="requests in service at full speed")
    parser.add_argument("--jitter", type=float, default=0.0, help="+/- share of the service time")
    parser.add_argument("--secondary-cap", type=int, default=0, help="concurrent requests, all")
    parser.add_argument("--installation-concurrency", type=int, default=0)
    parser.add_argument("--installation-writes", type=int, default=0, help="per --write-window")
    parser.add_argument("--write-window", type=float, default=60.0)
    parser.add_argument("--retry-after", type=int, default=None)
    parser.add_argument("--hold-offenders", action="store_true")
    parser.add_argument("--budget", type=int, default=None, help="primary requests an hour")
    parser.add_argument("--repo-config", type=Path, help="every repository's config file")
    parser.add_argument(
        "--serve-mints", action="store_true", help="token mints take service time and capacity"
    )
    args = parser.parse_args(argv)
    world = World(config=args.repo_config.read_bytes() if args.repo_config else None)

    import uvicorn

    uvicorn.run(
        GitHubSim(limits_from(args), world),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
        lifespan="on",
    )


if __name__ == "__main__":
    main()
