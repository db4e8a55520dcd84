"""Signed deliveries built from GitHub's example payloads (tests/fixtures/)."""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from githubkit.webhooks import sign

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "test-webhook-secret"
INSTALLATION_ID = 42


@cache
def _fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))
    return loaded


def fixture(name: str) -> dict[str, Any]:
    """A fresh copy of ``tests/fixtures/<name>.json``."""
    return copy.deepcopy(_fixture(name))


def app_payload(name: str, installation_id: int | None = INSTALLATION_ID) -> dict[str, Any]:
    """The example as GitHub delivers it to an app: with an ``installation`` object."""
    payload = fixture(name)
    if installation_id is not None:
        payload["installation"] = {"id": installation_id, "node_id": "MDIzOkluc3RhbGxhdGlvbjQy"}
    return payload


@dataclass(frozen=True)
class Delivery:
    body: bytes
    headers: dict[str, str]

    @property
    def delivery_id(self) -> str:
        return self.headers["X-GitHub-Delivery"]


def signed(
    payload: dict[str, Any] | bytes,
    event: str,
    *,
    secret: str = SECRET,
    delivery_id: str | None = None,
    content_type: str = "application/json",
) -> Delivery:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    return Delivery(
        body,
        {
            "Content-Type": content_type,
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
            "X-Hub-Signature-256": sign(secret, body, "sha256"),
            "User-Agent": "GitHub-Hookshot/test",
        },
    )


def issue_event(
    action: str = "opened",
    *,
    number: int = 1,
    title: str | None = None,
    body: str | None = None,
    labels: list[str] | None = None,
    repository: str | None = None,
    sender: str | None = None,
    installation_id: int = INSTALLATION_ID,
) -> dict[str, Any]:
    """GitHub's ``issues.opened`` example, varied where a test needs it."""
    payload = app_payload("issues.opened", installation_id)
    payload["action"] = action
    issue = payload["issue"]
    issue["number"] = number
    if title is not None:
        issue["title"] = title
    if body is not None:
        issue["body"] = body
    if labels is not None:
        template = issue["labels"][0]
        issue["labels"] = [{**template, "name": name} for name in labels]
    if repository is not None:
        payload["repository"]["full_name"] = repository
        payload["repository"]["name"] = repository.split("/", 1)[1]
    if sender is not None:
        payload["sender"]["login"] = sender
        payload["sender"]["type"] = "Bot" if sender.endswith("[bot]") else "User"
    return payload
