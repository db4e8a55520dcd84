"""The ASGI application: the webhook route, health, metrics, help and the admin routes.

``create_app`` is the only way to build it; it creates nothing at import time.
The webhook route is a plain ASGI callable mounted in starlette: it is the hot
path, and skipping starlette's request/response objects there is measurably
cheaper.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from github_app import __version__
from github_app.admin.help_page import help_routes
from github_app.admin.routes import admin_routes
from github_app.admin.setup_flow import SetupFlow
from github_app.config import Settings
from github_app.dispatch.registry import Registry
from github_app.runtime import Runtime


def create_app(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    registry: Registry | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    paused: bool = False,
    clock: Callable[[], float] = time.time,
    env_file: Path | str = ".env",
) -> Starlette:
    """Build the app. ``transport`` replaces the HTTP transport to GitHub (tests, benchmarks);
    ``paused`` starts with the dispatcher idle (the intake benchmark measures intake alone).
    Without app credentials it also serves ``/setup``, which writes them to ``env_file``."""
    if runtime is None:
        runtime = Runtime(
            settings, registry=registry, transport=transport, paused=paused, clock=clock
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def readyz(request: Request) -> Response:
        reason = runtime.status.readiness()
        if reason is not None:
            return JSONResponse({"status": "unavailable", "reason": reason}, 503)
        return JSONResponse({"status": "ready"})

    async def metrics(request: Request) -> Response:
        body, content_type = await runtime.metrics.scrape()
        return Response(body, headers={"content-type": content_type})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with runtime.running():
            yield

    setup = None if settings.has_credentials else SetupFlow(settings, env_file=Path(env_file))
    app = WebhookFirst(
        settings.webhook_path,
        runtime.intake,
        routes=[
            Route(settings.webhook_path, runtime.intake, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            *help_routes([processor.describe() for processor in runtime.registry]),
            *admin_routes(
                admin_token=settings.admin_token,
                status=runtime.status,
                history=runtime.sampler,
                queue=runtime.queue,
                on_redrive=runtime.dispatcher.notify,
                backfills=runtime.backfills,
            ),
            *(setup.routes() if setup is not None else ()),
        ],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.state.setup = setup
    return app


class WebhookFirst(Starlette):
    """Starlette, except that the webhook path goes straight to the intake callable.

    The intake answers every case itself (including its own errors and 405), so
    starlette's middleware stack and router would only add per-delivery cost on
    the one path that sees a burst.
    """

    def __init__(self, webhook_path: str, intake: ASGIApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._webhook_path = webhook_path
        self._intake = intake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self._webhook_path:
            await self._intake(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
