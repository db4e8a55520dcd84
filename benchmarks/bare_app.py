"""The comparison server for ``benchmarks/ingest.py``: the least a webhook endpoint can do.

It verifies ``X-Hub-Signature-256`` (HMAC-SHA256, constant-time comparison), parses the
body with ``json.loads`` and answers 202, on starlette + uvicorn (uvloop, httptools),
so the real app's intake can be compared against the bare cost of HTTP + HMAC + JSON.

    python -m benchmarks.bare_app --port 8001 [--secret S] [--path /api/github/webhooks]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.applications import Starlette

DEFAULT_SECRET = "benchmark-webhook-secret"
DEFAULT_PATH = "/api/github/webhooks"


def create_app(secret: str, path: str = DEFAULT_PATH) -> Starlette:
    """Build the bare endpoint: signature check, JSON parse, 202."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    key = secret.encode()

    async def webhook(request: Request) -> Response:
        body = await request.body()
        expected = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        given = request.headers.get("x-hub-signature-256", "")
        if not hmac.compare_digest(expected, given):
            return Response(status_code=401)
        try:
            json.loads(body)
        except ValueError:
            return Response(status_code=400)
        return Response(status_code=202)

    async def healthz(request: Request) -> Response:
        return Response("ok", media_type="text/plain")

    return Starlette(
        routes=[
            Route(path, webhook, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Bare webhook endpoint: HMAC + json.loads + 202.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", default=DEFAULT_SECRET)
    parser.add_argument("--path", default=DEFAULT_PATH)
    args = parser.parse_args(argv)
    import uvicorn

    uvicorn.run(
        create_app(args.secret, args.path),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
