"""Admin routes: the status document, dead letters, and a small self-refreshing page.

All of them exist only when ``ADMIN_TOKEN`` is set; without it they answer
404 exactly like an unknown path, so an exposed server does not advertise
them. The JSON routes need ``Authorization: Bearer $ADMIN_TOKEN``, compared
in constant time (digests of equal length, so neither content nor length
leaks through timing).

``GET /admin`` is a static page with no data in it: a browser cannot send a
bearer header on navigation, so the page's script asks for the token (or
reads it from the URL fragment, ``/admin#token=...``, which browsers never
send to the server), keeps it in the tab's ``sessionStorage`` and fetches
``/admin/status`` with it every few seconds. No build step, no external
asset; a per-response nonce lets only its own inline script and style run.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from importlib.resources import files

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from github_app.admin.dead_letter_adapter import DeadLetterAdapter
from github_app.admin.history import HOUR
from github_app.admin.sampler import Sampler
from github_app.admin.status import StatusReporter
from github_app.backfill.job import BadRequest
from github_app.backfill.service import BackfillService, Conflict
from github_app.queue.memory import EventQueue

Endpoint = Callable[[Request], Awaitable[Response]]
NO_STORE = {"cache-control": "no-store"}


def token_matches(presented: str, expected: str) -> bool:
    """Constant-time comparison that does not leak the expected token's length either."""
    return hmac.compare_digest(
        hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest(),
        hashlib.sha256(expected.encode("utf-8")).digest(),
    )


def bearer_token(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def not_found() -> Response:
    """What starlette answers for an unknown path: disabled admin routes look the same."""
    return PlainTextResponse("Not Found", status_code=404)


def unauthorized(message: str) -> Response:
    return JSONResponse(
        {"error": "unauthorized", "message": message},
        status_code=401,
        headers={"www-authenticate": 'Bearer realm="admin"', **NO_STORE},
    )


def admin_routes(
    *,
    admin_token: SecretStr | None,
    status: StatusReporter,
    history: Sampler,
    queue: EventQueue,
    on_redrive: Callable[[], None],
    backfills: BackfillService | None = None,
) -> list[BaseRoute]:
    """The ``/admin`` page and the ``/admin/*`` JSON routes over the status and the queue.

    ``history`` serves the dashboard's last hour; ``on_redrive`` wakes the
    dispatcher after dead letters were put back in the queue.
    """
    expected = admin_token.get_secret_value() if admin_token is not None else None
    dead_letters = DeadLetterAdapter(queue, on_redrive=on_redrive)

    def guarded(endpoint: Endpoint) -> Endpoint:
        async def check(request: Request) -> Response:
            if not expected:
                return not_found()
            presented = bearer_token(request)
            if presented is None:
                return unauthorized("send Authorization: Bearer <ADMIN_TOKEN>")
            if not token_matches(presented, expected):
                return unauthorized("wrong admin token")
            return await endpoint(request)

        return check

    async def page(request: Request) -> Response:
        if not expected:
            return not_found()
        nonce = secrets.token_urlsafe(16)
        html = _page_template().replace("{{NONCE}}", nonce)
        policy = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
            "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
        return HTMLResponse(
            html,
            headers={
                "content-security-policy": policy,
                "referrer-policy": "no-referrer",
                "x-content-type-options": "nosniff",
                **NO_STORE,
            },
        )

    async def status_document(request: Request) -> Response:
        asked = request.query_params
        if "history" not in asked:
            return Response(status.json(), media_type="application/json", headers=NO_STORE)
        try:
            span, start = history_query(asked.get("history", ""), asked.get("from"))
        except ValueError as exc:
            return JSONResponse(
                {"error": "bad_request", "message": str(exc)}, status_code=400, headers=NO_STORE
            )
        document = status.document()
        document["history"] = history.document(start=start, span=span)
        return JSONResponse(document, headers=NO_STORE)

    async def list_dead_letters(request: Request) -> Response:
        limit = request.query_params.get("limit")
        if limit is not None and not (limit.isdigit() and int(limit) >= 1):
            return JSONResponse(
                {"error": "bad_request", "message": "limit must be a whole number from 1"},
                status_code=400,
                headers=NO_STORE,
            )
        entries = dead_letters.list(None if limit is None else int(limit))
        return JSONResponse(
            {
                "supported": dead_letters.supported,
                "count": len(entries),
                "total": len(dead_letters) if limit is not None else len(entries),
                "dead_letters": entries,
            },
            headers=NO_STORE,
        )

    async def redrive_one(request: Request) -> Response:
        delivery_id = request.path_params["delivery_id"]
        if not dead_letters.redrive(delivery_id):
            return JSONResponse(
                {"error": "not_found", "message": f"no dead letter with delivery id {delivery_id}"},
                status_code=404,
            )
        return JSONResponse({"redriven": [delivery_id], "count": 1})

    async def redrive_all(request: Request) -> Response:
        return JSONResponse({"count": dead_letters.redrive_all()})

    async def purge(request: Request) -> Response:
        return JSONResponse({"purged": dead_letters.purge()})

    jobs = [] if backfills is None else backfill_routes(backfills, guarded)
    return [
        *jobs,
        Route("/admin", page, methods=["GET"]),
        Route("/admin/status", guarded(status_document), methods=["GET"]),
        Route("/admin/dead-letters", guarded(list_dead_letters), methods=["GET"]),
        Route("/admin/dead-letters", guarded(purge), methods=["DELETE"]),
        Route("/admin/dead-letters/redrive", guarded(redrive_all), methods=["POST"]),
        Route("/admin/dead-letters/{delivery_id}/redrive", guarded(redrive_one), methods=["POST"]),
    ]


def backfill_routes(
    backfills: BackfillService, guarded: Callable[[Endpoint], Endpoint]
) -> list[BaseRoute]:
    """``POST/GET /admin/backfills`` and ``GET/DELETE /admin/backfills/{id}``."""

    async def start(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return bad_request("the body must be a JSON object")
        await backfills.refresh()  # another replica's job on the same target is a conflict
        try:
            job = backfills.submit(body)
        except BadRequest as exc:
            return bad_request(str(exc))
        except Conflict as exc:
            return JSONResponse(
                {"error": "conflict", "message": str(exc), "job": exc.job_id},
                status_code=409,
                headers=NO_STORE,
            )
        stats = backfills.get(job.id)
        assert stats is not None
        return JSONResponse(
            stats.as_json(),
            status_code=202,
            headers={"location": f"/admin/backfills/{job.id}", **NO_STORE},
        )

    async def listing(request: Request) -> Response:
        await backfills.refresh()
        jobs = [stats.as_json() for stats in backfills.list()]
        return JSONResponse({"count": len(jobs), "jobs": jobs}, headers=NO_STORE)

    async def one(request: Request) -> Response:
        await backfills.look_up(request.path_params["job_id"])
        stats = backfills.get(request.path_params["job_id"])
        if stats is None:
            return no_job(request.path_params["job_id"])
        return JSONResponse(stats.as_json(), headers=NO_STORE)

    async def cancel(request: Request) -> Response:
        await backfills.look_up(request.path_params["job_id"])
        job = backfills.cancel(request.path_params["job_id"])
        if job is None:
            return no_job(request.path_params["job_id"])
        stats = backfills.get(job.id)
        assert stats is not None
        return JSONResponse(stats.as_json(), headers=NO_STORE)

    return [
        Route("/admin/backfills", guarded(start), methods=["POST"]),
        Route("/admin/backfills", guarded(listing), methods=["GET"]),
        Route("/admin/backfills/{job_id}", guarded(one), methods=["GET"]),
        Route("/admin/backfills/{job_id}", guarded(cancel), methods=["DELETE"]),
    ]


def bad_request(message: str) -> Response:
    return JSONResponse({"error": "bad_request", "message": message}, status_code=400)


def no_job(job_id: str) -> Response:
    return JSONResponse(
        {"error": "not_found", "message": f"no backfill job {job_id}"}, status_code=404
    )


def history_query(span: str, start: str | None) -> tuple[float, int | None]:
    """``?history=SECONDS`` (up to an hour) and ``&from=N`` (the ``next`` of the last answer)."""
    if not span.isdigit() or not 1 <= int(span) <= HOUR:
        raise ValueError(f"history must be a whole number of seconds from 1 to {HOUR:.0f}")
    if start is not None and not start.isdigit():
        raise ValueError("from must be a sample number (the 'next' of the previous answer)")
    return float(span), None if start is None else int(start)


def _page_template() -> str:
    return files("github_app.admin").joinpath("admin.html").read_text("utf-8")
