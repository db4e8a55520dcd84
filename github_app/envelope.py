"""The routing view of one delivery: what intake, priority rules and the queue need.

Intake reads only these few fields on the request path; the full payload
stays compressed until a worker parses it into a typed githubkit model.
"""

from __future__ import annotations

from dataclasses import dataclass

IssueKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Envelope:
    """One admitted delivery. ``payload`` is the zstd-compressed JSON body."""

    delivery_id: str
    event: str
    action: str | None
    installation_id: int | None
    repository: str | None
    issue_number: int | None
    sender_login: str | None
    sender_type: str | None
    received_at: float
    payload: bytes
    raw_size: int

    @property
    def issue_key(self) -> IssueKey | None:
        """Events about one issue share this key: they run in arrival order, one at a time."""
        if self.repository is None or self.issue_number is None:
            return None
        return (self.repository, self.issue_number)

    @property
    def name(self) -> str:
        """``event.action`` as GitHub's docs write it (``issues.opened``), or just the event."""
        return f"{self.event}.{self.action}" if self.action else self.event
