"""The routing view of one delivery: what intake, priority rules and the queue need.

Intake reads only these few fields on the request path; the full payload
stays compressed until a worker parses it into a typed githubkit model.
"""

from __future__ import annotations

from typing import NamedTuple

IssueKey = tuple[str, int]


class Envelope(NamedTuple):
    """One admitted delivery. ``payload`` is the zstd-compressed JSON body.

    A NamedTuple rather than a dataclass: a tuple that holds only strings,
    numbers and bytes is dropped from the garbage collector's tracking, so a
    deep queue does not make every full collection (and the webhook's p99)
    slower.
    """

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
