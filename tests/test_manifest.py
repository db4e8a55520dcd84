"""manifest.yml agrees with what the processors declare and with what the app itself handles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from github_app.admin.setup_flow import load_manifest
from github_app.dispatch.registry import Registry
from github_app.queue.priority import DEFAULT_RULES, Priority

ROOT = Path(__file__).resolve().parent.parent
LEVELS = {"read": 1, "write": 2, "admin": 3}
# GitHub sends these to every app; they cannot be subscribed to in a manifest.
AUTOMATIC_EVENTS = {"installation", "installation_repositories", "github_app_authorization"}
# The permission GitHub requires before an app may subscribe to an event.
EVENT_PERMISSION = {
    "issues": "issues",
    "issue_comment": "issues",
    "label": "issues",
    "milestone": "issues",
    "push": "contents",
    "pull_request": "pull_requests",
}
# Subscribed for the app itself rather than for a processor, with the reason.
APP_EVENTS = {
    "push": "a push touching .github/auto-issue-processor.yml refreshes the cached config",
    "issue_comment": "slash commands; the commands processor subscribes to it",
}


def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "manifest.yml").read_text("utf-8"))
    return loaded


def test_the_packaged_manifest_is_the_repository_root_file() -> None:
    assert load_manifest() == manifest()


def test_manifest_subscribes_to_every_event_a_processor_handles() -> None:
    events = set(manifest()["default_events"])
    for processor in Registry.load():
        for declared in processor.events:
            event = declared.split(".", 1)[0]
            assert event in events | AUTOMATIC_EVENTS, (processor.name, declared)


def test_manifest_grants_every_permission_a_processor_needs() -> None:
    granted = manifest()["default_permissions"]
    for processor in Registry.load():
        for permission, level in processor.permissions.items():
            assert permission in granted, (processor.name, permission)
            assert LEVELS[granted[permission]] >= LEVELS[level], (processor.name, permission)


def test_every_subscribed_event_is_allowed_by_a_granted_permission() -> None:
    data = manifest()
    granted = data["default_permissions"]
    for event in data["default_events"]:
        assert event in EVENT_PERMISSION, f"add {event}'s required permission to this test"
        assert EVENT_PERMISSION[event] in granted, event


def test_manifest_asks_for_nothing_beyond_processors_and_the_app_itself() -> None:
    data = manifest()
    needed_events = {e.split(".", 1)[0] for p in Registry.load() for e in p.events}
    for event in data["default_events"]:
        assert event in needed_events or event in APP_EVENTS, f"{event} is subscribed for nothing"
    needed = {name for p in Registry.load() for name in p.permissions} | {"metadata"}
    needed |= {EVENT_PERMISSION[event] for event in APP_EVENTS}
    assert set(data["default_permissions"]) <= needed
    assert not AUTOMATIC_EVENTS & set(data["default_events"])


def test_installation_events_the_app_handles_need_no_subscription() -> None:
    critical = {rule.event for rule in DEFAULT_RULES if rule.priority is Priority.CRITICAL}
    assert "installation" in critical  # the app handles installation events first
    assert critical <= AUTOMATIC_EVENTS


def test_manifest_is_a_private_app_with_webhooks_and_a_redirect() -> None:
    data = manifest()
    assert data["public"] is False
    assert data["hook_attributes"]["active"] is True
    assert data["hook_attributes"]["url"].endswith("/api/github/webhooks")
    assert data["redirect_url"].endswith("/setup/callback")
    assert data["default_permissions"]["metadata"] == "read"
