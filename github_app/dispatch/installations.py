"""The app's own handling of installation lifecycle events.

When an organisation uninstalls or suspends the app, its tokens, client,
ledger and cached answers are dropped at once, and its events still queued
fail fast as ``InstallationGone`` (dead-lettered with that reason) instead of
each minting a token first. Unsuspending makes the installation usable again.
"""

from __future__ import annotations

import logging
from typing import Protocol

from github_app.envelope import Envelope

log = logging.getLogger(__name__)

LIFECYCLE_EVENTS = frozenset({"installation"})
DROPPING_ACTIONS = frozenset({"deleted", "suspend"})
RESTORING_ACTIONS = frozenset({"unsuspend", "created"})


class InstallationRegistry(Protocol):
    """The part of the gateway this needs."""

    def forget(self, installation_id: int, *, gone: bool = True) -> None: ...


def is_lifecycle_event(event: str) -> bool:
    """The intake must queue these even when no processor subscribes to them."""
    return event in LIFECYCLE_EVENTS


def apply_lifecycle(envelope: Envelope, gateway: InstallationRegistry) -> bool:
    """Drop or restore the installation an ``installation`` event is about; True if it acted."""
    installation_id = envelope.installation_id
    if envelope.event not in LIFECYCLE_EVENTS or installation_id is None:
        return False
    if envelope.action in DROPPING_ACTIONS:
        gateway.forget(installation_id, gone=True)
        log.info("installation %s was %s: dropped", installation_id, envelope.action)
        return True
    if envelope.action in RESTORING_ACTIONS:
        gateway.forget(installation_id, gone=False)
        log.info("installation %s was %s: usable again", installation_id, envelope.action)
        return True
    return False
