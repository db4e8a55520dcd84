"""Shared test harness: a real uvicorn server on a free port, and GitHub faked with respx.

GitHub is faked at the HTTP layer only: the app's real transport, auth and
githubkit code run, and respx answers the requests they send. Requests to the
app itself (127.0.0.1) pass through to the real server.
"""

from __future__ import annotations

import contextlib
import functools
import math
import socket
import ssl
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest
import respx
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from github_app.admin.sampler import INTERVAL
from github_app.backfill.store import JobStore
from github_app.config import Settings, load_settings
from github_app.dispatch.registry import Registry
from github_app.http_guard import uvicorn_options
from github_app.runtime import Runtime
from github_app.server import create_app
from tests.deliveries import INSTALLATION_ID, SECRET, Delivery
from tests.redis_server import redis_server  # noqa: F401  (a fixture for every test module)

API = "https://api.github.com"
APP_SLUG = "auto-issue-processor-test"
TOKEN = "ghs_testinstallationtoken"
CONFIG_PATH = ".github/auto-issue-processor.yml"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


_state_root: str | None = None


@pytest.fixture(autouse=True, scope="session")
def _state_dirs(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every ``make_settings`` gets its own STATE_DIR under pytest's temporary folder."""
    global _state_root
    _state_root = str(tmp_path_factory.mktemp("state"))


def fresh_state_dir() -> str:
    """A new, empty STATE_DIR: no two apps of the test run share a spool, none is in the repo."""
    return tempfile.mkdtemp(prefix="spool-", dir=_state_root)


@pytest.fixture(scope="session")
def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def make_settings(private_key: str | None, **env: str) -> Settings:
    """Settings of a configured app (unless ``private_key`` is None), with overrides."""
    base = {
        "WEBHOOK_SECRET": SECRET,
        "GITHUB_API_URL": API,
        "SHUTDOWN_TIMEOUT": "5",
        # GitHub's 1 s between writes would make every multi-write test wait; the pacing
        # tests set their own interval.
        "GITHUB_WRITE_INTERVAL": "0.01",
        "STATE_DIR": fresh_state_dir(),
        # Recovery reads GitHub's delivery log at start-up; its own tests turn it on.
        "RECOVERY_INTERVAL": "0",
    }
    if private_key is not None:
        base |= {"APP_ID": "12345", "PRIVATE_KEY": private_key}
    return load_settings({**base, **env}, env_file=None)


def token_response(expires_in: float = 3600) -> httpx.Response:
    expires = datetime.now(UTC) + timedelta(seconds=expires_in)
    return httpx.Response(
        201,
        json={"token": TOKEN, "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
    )


def app_response() -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": 12345,
            "slug": APP_SLUG,
            "node_id": "MDM6QXBwMTIzNDU=",
            "owner": {"login": "octo-org", "id": 1, "type": "Organization"},
            "name": "auto-issue-processor (test)",
            "description": "",
            "external_url": "https://example.test",
            "html_url": f"https://github.com/apps/{APP_SLUG}",
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "permissions": {"issues": "write", "metadata": "read", "contents": "read"},
            "events": ["issues", "issue_comment"],
        },
    )


def config_url(repository: str, api: str = API) -> str:
    return f"{api}/repos/{repository}/contents/{CONFIG_PATH}"


@pytest.fixture
def github() -> Iterator[respx.MockRouter]:
    """A fake GitHub: app identity and token mint answered; everything else must be routed."""
    with respx.mock(assert_all_called=False, assert_all_mocked=True) as router:
        router.route(host="127.0.0.1").pass_through()
        router.get(f"{API}/app", name="app").mock(return_value=app_response())
        router.post(f"{API}/app/installations/{INSTALLATION_ID}/access_tokens", name="token").mock(
            side_effect=lambda request: token_response()
        )
        yield router


def github_calls(router: respx.MockRouter) -> list[tuple[str, str]]:
    """(method, path) of every request that reached the fake GitHub, in order."""
    return [
        (call.request.method, call.request.url.path)
        for call in router.calls
        if call.request.url.host != "127.0.0.1"
    ]


async def wait_for(
    condition: Callable[[], bool], *, timeout: float = 5.0, what: str = "condition"
) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await anyio.sleep(0.005)


@dataclass
class RunningApp:
    url: str
    runtime: Runtime
    client: httpx.AsyncClient
    server: uvicorn.Server

    @property
    def webhook_url(self) -> str:
        return self.url + self.runtime.settings.webhook_path

    async def post(self, delivery: Delivery, **kwargs: Any) -> httpx.Response:
        return await self.client.post(
            self.webhook_url, content=delivery.body, headers=delivery.headers, **kwargs
        )

    async def settle(self, timeout: float = 5.0) -> None:
        """Until every admitted event has been processed."""
        queue, dispatcher = self.runtime.queue, self.runtime.dispatcher

        def idle() -> bool:
            return len(queue) == 0 and dispatcher.in_flight == 0

        await wait_for(idle, timeout=timeout, what="the queue to drain")


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@functools.cache
def client_tls() -> ssl.SSLContext:
    """One TLS context for every test client: building one reads the system's CA bundle
    (about 30 ms), and httpx builds one per client unless given it."""
    return ssl.create_default_context()


STOP_POLL = 0.005  # seconds between looks while the server stops (uvicorn's own: 0.1)


class QuietServer(uvicorn.Server):
    """uvicorn as ``serve`` runs it, with no signal handlers of its own and a prompt stop.

    uvicorn looks at ``should_exit`` every 0.1 s and, stopping, gives its connections a
    fixed 0.1 s, then looks at them every 0.1 s: about 0.15 s idle at the end of each of
    the hundreds of tests that run the app. Here the same steps look every 5 ms.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):  # the date header, then should_exit
            counter = (counter + 1) % 864_000
            await anyio.sleep(STOP_POLL)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown: stop accepting, ask every connection to close, wait for them
        and the requests' tasks (cancelled after ``timeout_graceful_shutdown``, if set), then
        the app's lifespan shutdown."""
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        state = self.server_state
        for connection in list(state.connections):
            connection.shutdown()
        with anyio.move_on_after(self.config.timeout_graceful_shutdown or math.inf) as scope:
            # uvicorn's state has no event to wait on: it is looked at, as uvicorn does
            while (state.connections or state.tasks) and not self.force_exit:  # noqa: ASYNC110
                await anyio.sleep(STOP_POLL)
            for server in self.servers:
                await server.wait_closed()
        if scope.cancelled_caught:
            for task in state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        if not self.force_exit:
            await self.lifespan.shutdown()


@contextlib.asynccontextmanager
async def running_app(
    settings: Settings,
    *,
    registry: Registry | None = None,
    paused: bool = False,
    transport: httpx.AsyncBaseTransport | None = None,
    history_interval: float = INTERVAL,
    clock: Callable[[], float] = time.time,
    backfill_store: JobStore | None = None,
    recovery_delay: float = 0.0,
    **app_options: Any,
) -> AsyncIterator[RunningApp]:
    """Start the real app under uvicorn on a free port; stop it (gracefully) afterwards.

    ``app_options`` go to ``create_app`` (e.g. ``env_file`` for the setup flow);
    ``history_interval`` samples the dashboard's history faster than every 2 s; ``clock``
    is the runtime's wall clock; recovery (off unless a test sets RECOVERY_INTERVAL) starts
    its first round after ``recovery_delay``."""
    runtime = Runtime(
        settings,
        registry=registry,
        paused=paused,
        transport=transport,
        history_interval=history_interval,
        clock=clock,
        backfill_store=backfill_store,
        recovery_delay=recovery_delay,
    )
    app = create_app(settings, runtime=runtime, **app_options)
    sock = free_socket()
    port = sock.getsockname()[1]
    server = QuietServer(
        uvicorn.Config(
            app,
            lifespan="on",
            log_config=None,
            access_log=False,
            loop="asyncio",
            **uvicorn_options(settings),  # the deadlines and caps ``serve`` runs with
        )
    )
    with sock:
        async with anyio.create_task_group() as group:
            group.start_soon(server.serve, [sock])
            await wait_for(lambda: server.started, what="the server to start")
            async with httpx.AsyncClient(timeout=10.0, verify=client_tls()) as client:
                try:
                    yield RunningApp(f"http://127.0.0.1:{port}", runtime, client, server)
                finally:
                    server.should_exit = True


StartApp = Callable[..., contextlib.AbstractAsyncContextManager[RunningApp]]
Awaiter = Callable[[], Awaitable[None]]
