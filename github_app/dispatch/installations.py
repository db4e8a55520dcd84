"""The app's own handling of installation lifecycle events.

When an organisation uninstalls or suspends the app, its tokens, client,
ledger and cached answers are dropped at once, and its events still queued
fail fast as ``InstallationGone`` (dead-lettered with that reason) instead of
each minting a token first. Unsuspending makes the installation usable again.

``X-GitHub-Event`` is not covered by the signature: any signed body can be
re-sent under another event name and a new delivery id. So a lifecycle
decision needs a payload shaped like an installation event's, and a removal
is believed only when GitHub confirms it (a fresh token mint answering 404 or
403); otherwise the event changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from github_app.envelope import Envelope

log = logging.getLogger(__name__)

LIFECYCLE_EVENTS = frozenset({"installation"})
DROPPING_ACTIONS = frozenset({"deleted", "suspend"})
RESTORING_ACTIONS = frozenset({"unsuspend", "created"})


class InstallationRegistry(Protocol):
    """The part of the gateway this needs."""

    def forget(self, installation_id: int, *, gone: bool = True) -> None: ...

    async def confirm_gone(self, installation_id: int) -> bool: ...


def is_lifecycle_event(event: str) -> bool:
    """The intake must queue these even when no processor subscribes to them."""
    return event in LIFECYCLE_EVENTS


def has_installation_shape(payload: Mapping[str, Any]) -> bool:
    """Does the payload look like an ``installation`` event's (the full installation object)?

    Other events carry only ``installation: {id, node_id}`` and name an issue,
    a repository or a comment; an installation event names the account and app.
    """
    installation = payload.get("installation")
    return (
        isinstance(installation, dict)
        and isinstance(installation.get("id"), int)
        and isinstance(installation.get("account"), dict)
        and "app_id" in installation
        and not any(key in payload for key in ("issue", "repository", "comment", "pull_request"))
    )


async def apply_lifecycle(
    envelope: Envelope, payload: Mapping[str, Any], gateway: InstallationRegistry
) -> bool:
    """Drop or restore the installation an ``installation`` event is about; True if it acted."""
    installation_id = envelope.installation_id
    if envelope.event not in LIFECYCLE_EVENTS or installation_id is None:
        return False
    if not has_installation_shape(payload):
        log.warning("an installation event whose payload is not an installation's: ignored")
        return False
    if envelope.action in DROPPING_ACTIONS:
        if not await gateway.confirm_gone(installation_id):
            log.warning(
                "installation %s was %s, says the event, but GitHub still issues it tokens: "
                "nothing dropped",
                installation_id,
                envelope.action,
            )
            return False
        log.info("installation %s was %s: dropped", installation_id, envelope.action)
        return True
    if envelope.action in RESTORING_ACTIONS:
        gateway.forget(installation_id, gone=False)
        log.info("installation %s was %s: usable again", installation_id, envelope.action)
        return True
    return False
