"""Verify and read a webhook delivery, without I/O.

The request path does only the cheap part: check the signature, decode the
body, read the few routing fields and compress. Typed parsing into githubkit
models costs far more and happens in the worker (``github_app.event_models``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
from githubkit.webhooks import verify

from github_app.envelope import Envelope
from github_app.errors import WebhookError

MAX_BODY_BYTES = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
JSON_TYPES = ("application/json",)
FORM_TYPE = "application/x-www-form-urlencoded"
# GitHub's delivery ids are GUIDs and its event names snake_case words: anything much longer
# or odder is not from GitHub, and both end up in memory, logs and metrics.
DELIVERY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,71}")
EVENT_NAME = re.compile(r"[a-z][a-z_]{0,63}")


def check_content_type(content_type: str | None) -> str:
    """Return ``"json"`` or ``"form"``; anything else is a 415."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in JSON_TYPES:
        return "json"
    if media == FORM_TYPE:
        return "form"
    raise WebhookError(
        415,
        "unsupported_media_type",
        f"content type must be application/json or {FORM_TYPE}, not {media or 'none'}",
    )


def check_routing_headers(event: str | None, delivery_id: str | None) -> tuple[str, str]:
    """``X-GitHub-Event`` and ``X-GitHub-Delivery``, present and shaped as GitHub sends them."""
    if not event or not delivery_id:
        raise WebhookError(
            400, "missing_header", "X-GitHub-Event and X-GitHub-Delivery headers are required"
        )
    if not EVENT_NAME.fullmatch(event):
        raise WebhookError(400, "bad_header", "X-GitHub-Event is not an event name")
    if not DELIVERY_ID.fullmatch(delivery_id):
        raise WebhookError(
            400, "bad_header", "X-GitHub-Delivery must be an id of at most 72 letters and digits"
        )
    return event, delivery_id


def verify_signature(secret: str, body: bytes, signature: str | None) -> None:
    """Constant-time HMAC-SHA256 check of ``X-Hub-Signature-256``; SHA-1 is not accepted."""
    if not signature:
        raise WebhookError(401, "missing_signature", "X-Hub-Signature-256 header is missing")
    # Non-ASCII first: hmac.compare_digest raises TypeError on such a str (a 500 otherwise).
    if (
        not signature.isascii()
        or not signature.startswith("sha256=")
        or not verify(secret, body, signature)
    ):
        raise WebhookError(401, "bad_signature", "signature does not match the payload")


def decode_body(body: bytes, kind: str) -> tuple[bytes, dict[str, Any]]:
    """The JSON bytes and the parsed object; form bodies carry JSON in their ``payload`` field."""
    if kind == "form":
        try:
            fields = parse_qs(body.decode("utf-8"), strict_parsing=False)
        except UnicodeDecodeError:
            raise WebhookError(400, "malformed_body", "form body is not UTF-8") from None
        values = fields.get("payload")
        if not values:
            raise WebhookError(400, "malformed_body", "form body has no payload field")
        body = values[0].encode("utf-8")
    try:
        payload = orjson.loads(body)
    except (orjson.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WebhookError(400, "malformed_json", f"payload is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise WebhookError(400, "malformed_json", "payload must be a JSON object")
    return body, payload


def _field(payload: dict[str, Any], name: str, key: str) -> Any:
    value = payload.get(name)
    return value.get(key) if isinstance(value, dict) else None


def _typed(value: Any, kind: type) -> Any:
    return value if isinstance(value, kind) else None


def routing_fields(payload: dict[str, Any]) -> dict[str, Any]:
    """Read action, installation, repository, issue number and sender, tolerating odd shapes."""
    number = _field(payload, "issue", "number")
    if number is None:
        number = _field(payload, "pull_request", "number")
    return {
        "action": _typed(payload.get("action"), str),
        "installation_id": _typed(_field(payload, "installation", "id"), int),
        "repository": _typed(_field(payload, "repository", "full_name"), str),
        "issue_number": _typed(number, int),
        "sender_login": _typed(_field(payload, "sender", "login"), str),
        "sender_type": _typed(_field(payload, "sender", "type"), str),
    }


def make_envelope(
    *,
    delivery_id: str,
    event: str,
    json_body: bytes,
    payload: dict[str, Any],
    received_at: float,
    compress: Callable[[bytes], bytes],
) -> Envelope:
    fields = routing_fields(payload)
    return Envelope(
        delivery_id,
        event,
        fields["action"],
        fields["installation_id"],
        fields["repository"],
        fields["issue_number"],
        fields["sender_login"],
        fields["sender_type"],
        received_at,
        compress(json_body),
        len(json_body),
    )
