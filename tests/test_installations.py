"""Installation lifecycle events are believed only when the payload and GitHub agree (issue 13).

``X-GitHub-Event`` is not signed: a signed ``issues`` body re-sent as an
``installation`` event, or an old ``installation.deleted`` replayed under a
new delivery id, must not make an installation's next events dead-letter.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from github_app.dispatch.installations import has_installation_shape
from tests.conftest import config_url, make_settings, running_app
from tests.deliveries import INSTALLATION_ID, fixture, issue_event, signed
from tests.processor_helpers import ISSUE_URL, REPO

pytestmark = pytest.mark.anyio


def deleted_installation() -> dict[str, Any]:
    payload = fixture("installation.created")  # with the full installation, as GitHub sends it
    payload["action"] = "deleted"
    payload["installation"]["id"] = INSTALLATION_ID
    return payload


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("installation.created", True),
        ("issues.opened", False),
        ("issue_comment.created", False),
        ("push", False),
        ("star.created", False),
    ],
)
def test_only_an_installation_events_payload_has_the_installation_shape(
    name: str, expected: bool
) -> None:
    assert has_installation_shape(fixture(name)) is expected


async def run_after(
    github: respx.MockRouter, private_key_pem: str, lifecycle: dict[str, Any]
) -> tuple[int, list[Any], int]:
    """Post ``lifecycle`` as an ``installation`` event, then a genuine ``issues.opened``."""
    github.get(config_url(REPO)).mock(return_value=httpx.Response(404))
    github.get(config_url("Codertocat/.github")).mock(return_value=httpx.Response(404))
    labels = github.post(f"{ISSUE_URL}/1/labels").mock(return_value=httpx.Response(200, json=[]))
    async with running_app(make_settings(private_key_pem)) as app:
        assert (await app.post(signed(lifecycle, "installation"))).status_code == 202
        await app.settle()
        genuine = signed(issue_event(title="it crashes", labels=[]), "issues")
        assert (await app.post(genuine)).status_code == 202
        await app.settle()
        dead = app.runtime.queue.list_dead_letters()
    return labels.call_count, dead, github.routes["token"].call_count


async def test_an_issues_body_resent_as_an_installation_event_changes_nothing(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    forged = issue_event(title="it crashes", labels=[])
    forged["action"] = "deleted"
    labelled, dead, mints = await run_after(github, private_key_pem, forged)
    assert dead == []
    assert labelled == 1
    assert mints == 1  # only the genuine event's: the forged one did not even ask


async def test_a_removal_github_does_not_confirm_drops_nothing(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    labelled, dead, mints = await run_after(github, private_key_pem, deleted_installation())
    assert dead == []
    assert labelled == 1
    assert mints == 1  # the confirming mint succeeded; its token served the genuine event


async def test_a_removal_github_confirms_dead_letters_the_next_event(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    github.routes["token"].mock(side_effect=None, return_value=httpx.Response(404))
    labelled, dead, mints = await run_after(github, private_key_pem, deleted_installation())
    assert [d.reason for d in dead] == ["installation_gone"]
    assert labelled == 0
    assert mints == 1  # the confirmation; the next event failed fast without a mint
