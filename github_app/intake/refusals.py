"""Refused deliveries in the log: the first of each kind in full, then a count a minute.

A delivery answered 503 is logged so an operator sees it. But while the
spool cannot write (a full or read-only disk) or the queue is full, every
delivery of a burst is refused for one reason, and a line per delivery would
bury the line that says why. So the first refusal of a kind (the admission's
``error``) is logged with its delivery id, the next ones of that kind are
counted, and the count is logged once an interval while they go on (at the
first refusal or admission after it). ``refused`` in ``/admin/status`` and
``/metrics`` counts them all. Pure: the clock is injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

EVERY = 60.0  # seconds between two lines about refusals of one kind


@dataclass
class _Kind:
    reason: str  # the latest refusal's
    logged_at: float
    unlogged: int = 0


class RefusalLog:
    """Decides which lines the refusals of deliveries are logged as."""

    def __init__(self, *, every: float = EVERY, clock: Callable[[], float] = time.monotonic):
        self._every = every
        self._clock = clock
        self._kinds: dict[str, _Kind] = {}  # kinds logged in the last interval

    def refused(self, kind: str, reason: str, delivery: str) -> list[str]:
        """Lines to log for this refusal (maybe none: it is counted)."""
        now = self._clock()
        lines = self._due(now)
        entry = self._kinds.get(kind)
        if entry is None:
            self._kinds[kind] = _Kind(reason, now)
            lines.append(
                f"refused delivery {delivery}: {reason} (more refusals of this kind are "
                f"counted and logged every {self._every:g}s)"
            )
        else:
            entry.reason = reason
            entry.unlogged += 1
        return lines

    def admitted(self) -> list[str]:
        """Lines due at an admission: counts whose interval is over (cheap when none)."""
        return self._due(self._clock()) if self._kinds else []

    def _due(self, now: float) -> list[str]:
        lines = []
        for kind, entry in list(self._kinds.items()):
            elapsed = now - entry.logged_at
            if elapsed < self._every:
                continue
            if entry.unlogged:
                lines.append(
                    f"refused {entry.unlogged} more delivery(ies) in the last {elapsed:.0f}s: "
                    f"{entry.reason}"
                )
                entry.unlogged = 0
                entry.logged_at = now
            else:  # quiet for an interval: the next refusal of this kind is logged in full
                del self._kinds[kind]
        return lines
