"""A fake GitHub REST API over real HTTP, for tests that run the app as a subprocess.

respx fakes GitHub inside the test process; a server started with
``python -m github_app serve`` needs one on a port. This one keeps the state
the processors read back (comments per issue), records every write, and can
hold answers (``hold``) so events stay in flight.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COMMENTS = re.compile(r"^/repos/[^/]+/[^/]+/issues/(\d+)/comments$")
LABELS = re.compile(r"^/repos/[^/]+/[^/]+/issues/(\d+)/labels$")
TOKEN = re.compile(r"^/app/installations/\d+/access_tokens$")
CONFIG = re.compile(r"^/repos/[^/]+/[^/]+/contents/\.github/auto-issue-processor\.yml$")
REPO_CONFIG = "welcome:\n  message: Welcome!\n"  # the opt-in processor with a hidden marker


class Raw(str):
    """An answer sent as it is (GitHub's raw media type), not as JSON."""


class FakeGitHub:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.comments: dict[int, list[str]] = {}
        self.writes: Counter[tuple[str, str]] = Counter()
        self.release = threading.Event()  # while clear and ``holding``, comment reads wait
        self.holding = False
        self.held = 0  # requests waiting on ``release`` now
        self.url = ""
        self.config_repo = "/repos/Codertocat/Hello-World/"
        self.arrivals: list[float] = []  # when each write of an installation arrived (monotonic)
        self.min_write_gap = 0.0  # a write sooner than this after the last: a secondary limit
        self.too_soon = 0

    def comment_count(self, issue: int, marker: str) -> int:
        with self.lock:
            return sum(marker in body for body in self.comments.get(issue, ()))

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        if method == "GET" and path == "/app":
            return 200, {"id": 12345, "slug": "auto-issue-processor-test", "name": "test"}
        if method == "POST" and TOKEN.match(path):
            expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            return 201, {"token": "ghs_fake", "expires_at": expires}
        if method == "GET" and CONFIG.match(path):
            return (200, Raw(REPO_CONFIG)) if path.startswith(self.config_repo) else (404, {})
        if method != "GET" and not TOKEN.match(path) and self._too_soon():
            return 403, {"message": "You have exceeded a secondary rate limit."}
        if (match := COMMENTS.match(path)) is not None:
            number = int(match[1])
            if method == "GET":
                if self.holding:
                    with self.lock:
                        self.held += 1
                    self.release.wait(60)
                with self.lock:
                    return 200, [{"body": text} for text in self.comments.get(number, ())]
            with self.lock:
                self.writes[(method, path)] += 1
                self.comments.setdefault(number, []).append(json.loads(body)["body"])
            return 201, {"id": 1}
        if method == "POST" and LABELS.match(path):
            with self.lock:
                self.writes[(method, path)] += 1
            return 200, [{"name": name} for name in json.loads(body)["labels"]]
        if method == "GET" and re.match(r"^/repos/[^/]+/[^/]+/issues$", path):
            return 200, []
        return 404, {"message": "Not Found"}

    def _too_soon(self) -> bool:
        """Record the write's arrival; True if it came sooner than ``min_write_gap``."""
        with self.lock:
            now = time.monotonic()
            soon = bool(self.arrivals) and now - self.arrivals[-1] < self.min_write_gap
            self.arrivals.append(now)
            self.too_soon += soon
            return soon


@contextmanager
def fake_github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            status, answer = fake.answer(self.command, self.path.split("?", 1)[0], body)
            data = (answer if isinstance(answer, Raw) else json.dumps(answer)).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # the app was killed mid-request: that is the point of these tests

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
