"""The webhook route, as a plain ASGI callable: acknowledge fast, work later.

GitHub waits 10 s for an answer and does not retry by itself, so the route
does the least that makes a delivery safe to acknowledge: check size and
content type before reading, verify the signature, read the routing fields,
compress, and admit the envelope to the queue, which returns once the event is
stored (the spool: committed to disk). 202 means it will be
processed; 503 (with Retry-After) means it was not taken, so GitHub shows the
delivery as failed and it can be redelivered. Nothing is lost silently.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

from github_app.dispatch.installations import is_lifecycle_event
from github_app.dispatch.registry import Registry
from github_app.errors import WebhookError
from github_app.intake.refusals import RefusalLog
from github_app.intake.webhooks import (
    MAX_BODY_BYTES,
    check_content_type,
    check_routing_headers,
    decode_body,
    make_envelope,
    verify_signature,
)
from github_app.queue.compression import PayloadCodec
from github_app.queue.memory import DUPLICATE, EventQueue
from github_app.queue.priority import PriorityRules

log = logging.getLogger(__name__)

JSON_HEADERS = [(b"content-type", b"application/json")]


@dataclass
class IntakeStats:
    """What happened to deliveries at the door."""

    received: int = 0
    queued: int = 0
    duplicates: int = 0
    ignored: int = 0
    pings: int = 0
    refused: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    queued_by_event: Counter[str] = field(default_factory=Counter)


class WebhookIntake:
    """ASGI app for ``POST $WEBHOOK_PATH``."""

    def __init__(
        self,
        *,
        secret: str,
        registry: Registry,
        queue: EventQueue,
        rules: PriorityRules,
        codec: PayloadCodec,
        on_admitted: Callable[[], None],
        clock: Callable[[], float] = time.time,
        max_body: int = MAX_BODY_BYTES,
        max_reading: int = 64 * 1024 * 1024,
        observe: Callable[[str, dict[str, Any]], object] | None = None,
    ) -> None:
        self._secret = secret
        self._registry = registry
        self._queue = queue
        self._rules = rules
        self._codec = codec
        self._on_admitted = on_admitted
        self._clock = clock
        self._max_body = max_body
        self._max_reading = max_reading
        self.reading_bytes = 0  # of the bodies being read now, before their signature is checked
        self._observe = observe  # sees every verified, new delivery (e.g. config pushes)
        self._accepting = True
        self.stats = IntakeStats()
        self._refusals = RefusalLog()

    @property
    def accepting(self) -> bool:
        """False once shutdown began: deliveries are answered 503."""
        return self._accepting

    def stop_accepting(self) -> None:
        """Answer every delivery from now on 503 (shutdown): GitHub shows it as failed."""
        self._accepting = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self.stats.received += 1
        try:
            status, body, extra = await self._handle(scope, receive)
        except WebhookError as exc:
            self.stats.rejected[exc.reason] += 1
            status, extra = exc.status_code, []
            body = {"error": exc.reason, "message": exc.message}
            if exc.status_code >= 500:
                extra = [(b"retry-after", b"30")]
        await send(
            {"type": "http.response.start", "status": status, "headers": JSON_HEADERS + extra}
        )
        await send({"type": "http.response.body", "body": orjson.dumps(body)})

    async def _handle(
        self, scope: Scope, receive: Receive
    ) -> tuple[int, dict[str, Any], list[tuple[bytes, bytes]]]:
        if scope["method"] != "POST":
            raise WebhookError(405, "method_not_allowed", "webhooks are delivered with POST")
        if not self._accepting:
            raise WebhookError(503, "shutting_down", "the app is shutting down; redeliver later")
        headers = _headers(scope)
        kind = check_content_type(headers.get("content-type"))
        event, delivery_id = check_routing_headers(
            headers.get("x-github-event"), headers.get("x-github-delivery")
        )
        raw = await self._read_body(receive, headers.get("content-length"))
        verify_signature(self._secret, raw, headers.get("x-hub-signature-256"))
        json_body, payload = decode_body(raw, kind)
        if event == "ping":
            self.stats.pings += 1
            log.info("ping from hook %s: %s", payload.get("hook_id"), payload.get("zen"))
            return 200, {"status": "pong"}, []
        if self._queue.knows(delivery_id):
            self.stats.duplicates += 1
            return 200, {"status": "duplicate", "delivery": delivery_id}, []
        if self._observe is not None:
            self._observe(event, payload)
        action = payload.get("action")
        action = action if isinstance(action, str) else None
        if not (self._registry.subscribes(event, action) or is_lifecycle_event(event)):
            self.stats.ignored += 1
            name = f"{event}.{action}" if action else event
            return 202, {"status": "ignored", "reason": f"no processor handles {name}"}, []
        envelope = make_envelope(
            delivery_id=delivery_id,
            event=event,
            json_body=json_body,
            payload=payload,
            received_at=self._clock(),
            compress=self._codec.compress,
        )
        priority = self._rules.classify(envelope)
        admission = await self._queue.admit(envelope, priority)
        if admission.error == DUPLICATE.error:  # a shared queue: another replica admitted it
            self.stats.duplicates += 1
            return 200, {"status": "duplicate", "delivery": delivery_id}, []
        if not admission.admitted:
            self.stats.refused += 1
            what = f"{delivery_id} ({envelope.name})"
            for line in self._refusals.refused(admission.error, admission.reason, what):
                log.warning("%s", line)
            body = {
                "error": admission.error,
                "message": admission.reason,
                "priority": priority.name,
            }
            return 503, body, [(b"retry-after", str(admission.retry_after).encode())]
        self.stats.queued += 1
        self.stats.queued_by_event[envelope.name] += 1
        for line in self._refusals.admitted():
            log.warning("%s", line)
        self._on_admitted()
        return 202, {"status": "queued", "delivery": delivery_id, "priority": priority.name}, []

    async def _read_body(self, receive: Receive, content_length: str | None) -> bytes:
        """The whole body, refusing (413) as soon as it is known to exceed the cap.

        Bodies are read before their signature can be checked, so the bytes held
        by all bodies being read at once are capped (``max_reading``): a delivery
        that would go beyond is answered 503 and can be redelivered, instead of
        a few strangers' 24 MB bodies growing the process by their size.
        """
        declared = 0
        if content_length is not None:
            try:
                declared = int(content_length)
            except ValueError:
                raise WebhookError(
                    400, "bad_content_length", "Content-Length is not a number"
                ) from None
            if declared > self._max_body:
                raise WebhookError(413, "payload_too_large", _too_large(self._max_body))
        held = 0
        try:
            held = self._hold(max(declared, 0))
            chunks: list[bytes] = []
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise WebhookError(400, "client_disconnected", "the client went away mid-body")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self._max_body:
                    raise WebhookError(413, "payload_too_large", _too_large(self._max_body))
                if size > held:
                    held += self._hold(size - held)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
        finally:
            self.reading_bytes -= held

    def _hold(self, size: int) -> int:
        """Count ``size`` more bytes as being read, or refuse (503) past ``max_reading``."""
        if self.reading_bytes + size > self._max_reading:
            raise WebhookError(
                503, "busy_reading", "too many bodies are being read at once; redeliver later"
            )
        self.reading_bytes += size
        return size


WANTED_HEADERS = frozenset(
    {
        b"content-type",
        b"content-length",
        b"x-github-event",
        b"x-github-delivery",
        b"x-hub-signature-256",
    }
)


def _headers(scope: Scope) -> dict[str, str]:
    """The few headers intake reads (ASGI gives names lower-cased), decoded once."""
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope["headers"]
        if name in WANTED_HEADERS
    }


def _too_large(limit: int) -> str:
    return f"payload is larger than {limit // (1024 * 1024)} MB"
