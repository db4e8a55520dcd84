"""Small builders shared by the unit tests (no server, no network)."""

from __future__ import annotations

from github_app.envelope import Envelope


def envelope(
    delivery_id: str = "d-1",
    *,
    event: str = "issues",
    action: str | None = "opened",
    repository: str | None = "octo/repo",
    issue_number: int | None = 1,
    payload: bytes = b"x" * 10,
    installation_id: int | None = 1,
    received_at: float = 0.0,
) -> Envelope:
    """An Envelope built directly; ``payload`` stands in for the compressed body."""
    return Envelope(
        delivery_id=delivery_id,
        event=event,
        action=action,
        installation_id=installation_id,
        repository=repository,
        issue_number=issue_number,
        sender_login="someone",
        sender_type="User",
        received_at=received_at,
        payload=payload,
        raw_size=len(payload),
    )
