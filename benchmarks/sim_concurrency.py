"""A simulated GitHub API for the concurrency benchmark (an ASGI app, run under uvicorn).

    python benchmarks/sim_concurrency.py --port 9100 [--capacity 20] [--service-ms 200] ...

It serves what the app calls for an ``issues.opened`` event: the token mint
(``POST /app/installations/{id}/access_tokens``), ``GET /app``, the repository
config (``GET /repos/{o}/{r}/contents/.github/auto-issue-processor.yml`` -> 404)
and ``POST /repos/{o}/{r}/issues/{n}/labels``. The counted requests (config and
labels) behave like a loaded backend:

- service time is ``service_ms`` (±10 % jitter) while at most ``capacity``
  requests are in service, and grows in proportion beyond (shared capacity);
- past ``secondary_cap`` concurrent requests it answers GitHub's secondary-limit
  403 with ``retry-after``, and keeps answering 403 to everything until then;
- with ``--inst-concurrency`` / ``--inst-writes`` it also keeps GitHub's
  per-installation limits (concurrent requests; writes per ``--inst-window`` s),
  answering the same 403 to the installation that broke them.

``POST /_sim/config`` (JSON) changes ``capacity`` / ``service_ms`` mid-run;
``GET /_sim/stats`` returns counters and the times of every 403 served.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

TOKEN_PATH = re.compile(r"^/app/installations/(\d+)/access_tokens$")
TOKEN_PREFIX = "ghs_sim"
SECONDARY = b'{"message":"You have exceeded a secondary rate limit. Please wait a few minutes."}'


class Simulator:
    def __init__(self, args: argparse.Namespace) -> None:
        self.capacity: int = args.capacity
        self.service = args.service_ms / 1000.0
        self.secondary_cap: int = args.secondary_cap
        self.retry_after: int = args.retry_after
        self.inst_concurrency: int = args.inst_concurrency
        self.inst_writes: int = args.inst_writes
        self.inst_window: float = args.inst_window
        self.active = 0
        self.by_inst: dict[int, int] = defaultdict(int)
        self.writes: dict[int, deque[float]] = defaultdict(deque)
        self.penalty_until = 0.0
        self.inst_penalty: dict[int, float] = {}
        self.served = 0
        self.secondary_hits: list[float] = []
        self.peak = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path: str = scope["path"]
        method: str = scope["method"]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if path == "/_sim/config" and method == "POST":
            change = json.loads(body)
            self.capacity = int(change.get("capacity", self.capacity))
            self.service = float(change.get("service_ms", self.service * 1000)) / 1000.0
            return await _answer(send, 200, b"{}")
        if path == "/_sim/stats":
            stats = {
                "served": self.served,
                "secondary_hits": self.secondary_hits,
                "peak": self.peak,
            }
            return await _answer(send, 200, json.dumps(stats).encode())
        if path == "/app" and method == "GET":
            return await _answer(send, 200, b'{"id": 1, "slug": "sim-app", "name": "sim"}')
        match = TOKEN_PATH.match(path)
        if match and method == "POST":
            expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            token = f"{TOKEN_PREFIX}{match.group(1)}"
            answer = json.dumps({"token": token, "expires_at": expires}).encode()
            return await _answer(send, 201, answer)
        await self._counted(scope, method, path, send)

    async def _counted(self, scope: Scope, method: str, path: str, send: Send) -> None:
        now = time.monotonic()
        installation = _installation(scope)
        if (
            now < self.penalty_until
            or now < self.inst_penalty.get(installation, 0.0)
            or self.active + 1 > self.secondary_cap
        ):
            return await self._limited(send, now, installation, everyone=True)
        if self.inst_concurrency and self.by_inst[installation] + 1 > self.inst_concurrency:
            return await self._limited(send, now, installation, everyone=False)
        if method == "POST" and self.inst_writes:
            recent = self.writes[installation]
            while recent and recent[0] <= now - self.inst_window:
                recent.popleft()
            if len(recent) >= self.inst_writes:
                return await self._limited(send, now, installation, everyone=False)
            recent.append(now)
        self.active += 1
        self.by_inst[installation] += 1
        self.peak = max(self.peak, self.active)
        try:
            load = max(1.0, self.active / self.capacity)
            await asyncio.sleep(self.service * load * random.uniform(0.9, 1.1))
        finally:
            self.active -= 1
            self.by_inst[installation] -= 1
        self.served += 1
        if method == "GET":
            return await _answer(send, 404, b'{"message": "Not Found"}')
        return await _answer(send, 200, b"[]")

    async def _limited(self, send: Send, now: float, installation: int, everyone: bool) -> None:
        """GitHub's secondary-limit answer; the offender is refused until retry-after passes."""
        self.secondary_hits.append(time.time())
        until = now + self.retry_after
        if everyone and installation not in self.inst_penalty and not self.inst_concurrency:
            self.penalty_until = max(self.penalty_until, until)
        else:
            self.inst_penalty[installation] = max(self.inst_penalty.get(installation, 0.0), until)
        headers = [(b"retry-after", str(self.retry_after).encode())]
        await _answer(send, 403, SECONDARY, headers)


def _installation(scope: Scope) -> int:
    for name, value in scope["headers"]:
        if name == b"authorization":
            token = value.decode().rsplit(" ", 1)[-1]
            if token.startswith(TOKEN_PREFIX):
                return int(token[len(TOKEN_PREFIX) :])
    return 0


async def _answer(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--capacity", type=int, default=20)
    parser.add_argument("--service-ms", type=float, default=200.0)
    parser.add_argument("--secondary-cap", type=int, default=40)
    parser.add_argument("--retry-after", type=int, default=2)
    parser.add_argument("--inst-concurrency", type=int, default=0)
    parser.add_argument("--inst-writes", type=int, default=0)
    parser.add_argument("--inst-window", type=float, default=60.0)
    args = parser.parse_args(argv)

    import uvicorn

    uvicorn.run(
        Simulator(args),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
