"""processors.triage through the real server, GitHub faked with respx; and its pure decision."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import respx

from processors.triage import TriageConfig, TriageFacts, decide
from tests.conftest import APP_SLUG, config_url, make_settings, running_app
from tests.deliveries import issue_event, signed
from tests.processor_helpers import ISSUE_URL, REPO, api_calls, use_config, writes

pytestmark = pytest.mark.anyio

CONFIG = "labeler: false\ntriage:\n"
LABELS = f"/repos/{REPO}/issues/1/labels"
TRIAGE_LABEL = f"{LABELS}/needs-triage"


def labeled(label: str, labels: list[str], sender: str = "maintainer") -> dict[str, Any]:
    payload = issue_event("labeled", labels=labels, sender=sender)
    payload["label"] = {"name": label, "color": "ededed"}
    return payload


def mock_writes(github: respx.MockRouter) -> None:
    github.post(f"{ISSUE_URL}/1/labels").mock(return_value=httpx.Response(200, json=[]))
    github.delete(f"{ISSUE_URL}/1/labels/needs-triage").mock(
        return_value=httpx.Response(200, json=[])
    )


async def run(private_key: str, *deliveries: dict[str, Any]) -> None:
    async with running_app(make_settings(private_key)) as app:
        for payload in deliveries:
            assert (await app.post(signed(payload, "issues"))).status_code == 202
            await app.settle()
        assert app.runtime.runner.stats.failed["triage"] == 0


async def test_new_issue_without_labels_gets_needs_triage(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    mock_writes(github)
    await run(private_key_pem, issue_event(labels=[]))
    assert api_calls(github) == [
        ("GET", f"/repos/{REPO}/contents/.github/auto-issue-processor.yml", None),
        ("POST", LABELS, {"labels": ["needs-triage"]}),
    ]


async def test_custom_label_name_is_used(github: respx.MockRouter, private_key_pem: str) -> None:
    use_config(github, "labeler: false\ntriage:\n  label: 'status: new'\n")
    github.post(f"{ISSUE_URL}/1/labels").mock(return_value=httpx.Response(200, json=[]))
    await run(private_key_pem, issue_event(labels=[]))
    assert writes(github) == [("POST", LABELS, {"labels": ["status: new"]})]


@pytest.mark.parametrize(
    "payload",
    [
        labeled("bug", ["needs-triage", "bug"]),
        issue_event("assigned", labels=["needs-triage"]),
        issue_event("closed", labels=["needs-triage", "question"]),
    ],
    ids=["labelled", "assigned", "closed"],
)
async def test_label_is_removed_once_the_issue_is_triaged(
    github: respx.MockRouter, private_key_pem: str, payload: dict[str, Any]
) -> None:
    use_config(github, CONFIG)
    mock_writes(github)
    await run(private_key_pem, payload)
    assert writes(github) == [("DELETE", TRIAGE_LABEL, None)]


@pytest.mark.parametrize(
    "payload",
    [
        issue_event(labels=["bug"]),  # opened with a label already
        labeled("bug", ["bug"]),  # labelled, but never marked
        labeled("needs-triage", ["needs-triage"]),  # the mark itself being added
        issue_event("closed", labels=["bug"]),
    ],
    ids=["opened-labelled", "labelled-unmarked", "mark-added", "closed-unmarked"],
)
async def test_nothing_to_do_makes_no_write(
    github: respx.MockRouter, private_key_pem: str, payload: dict[str, Any]
) -> None:
    use_config(github, CONFIG)
    mock_writes(github)
    await run(private_key_pem, payload)
    assert writes(github) == []


async def test_redelivered_event_adds_the_label_once(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    # The labeler fails the first time, so GitHub's redelivery of the same delivery is
    # accepted again: only the labeler runs again, triage does not re-add its label.
    use_config(github, "triage:\n")
    failures = [httpx.Response(422, json={"message": "Validation Failed"})]

    def answer(request: httpx.Request) -> httpx.Response:
        if b"needs-triage" not in request.content and failures:
            return failures.pop()  # the labeler's first attempt fails
        return httpx.Response(200, json=[])

    post = github.post(f"{ISSUE_URL}/1/labels").mock(side_effect=answer)
    delivery = signed(issue_event(labels=[], title="Crash on start"), "issues")
    async with running_app(make_settings(private_key_pem)) as app:
        for _ in range(2):
            assert (await app.post(delivery)).status_code == 202
            await app.settle()
        assert (await app.post(delivery)).status_code == 200  # now a known duplicate
        assert app.runtime.runner.stats.ok["triage"] == 1
        assert app.runtime.runner.stats.ok["labeler"] == 1
    bodies = [call[2] for call in writes(github)]
    assert post.call_count == 3
    assert bodies.count({"labels": ["needs-triage"]}) == 1


async def test_redelivered_removal_of_a_label_already_gone_is_fine(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    github.delete(f"{ISSUE_URL}/1/labels/needs-triage").mock(
        side_effect=[httpx.Response(200, json=[]), httpx.Response(404, json={"message": "x"})]
    )
    payload = issue_event("closed", labels=["needs-triage"])
    await run(private_key_pem, payload, payload)  # two deliveries of the same change
    assert writes(github) == [("DELETE", TRIAGE_LABEL, None)] * 2


async def test_labels_added_by_the_app_itself_are_ignored(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    mock_writes(github)
    await run(
        private_key_pem,
        labeled("bug", ["needs-triage", "bug"], sender=f"{APP_SLUG}[bot]"),
        issue_event(labels=[], sender=f"{APP_SLUG}[bot]"),
    )
    assert api_calls(github) == []


async def test_invalid_triage_section_runs_defaults_so_triage_stays_off(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, "labeler: false\ntriage:\n  label: 5\n  colour: red\n")
    github.post(f"{ISSUE_URL}/1/labels").mock(return_value=httpx.Response(200, json=[]))
    async with running_app(make_settings(private_key_pem)) as app:
        assert (await app.post(signed(issue_event(labels=[]), "issues"))).status_code == 202
        await app.settle()
        errors = app.runtime.configs.errors[REPO]
    assert any(e.startswith("triage.label:") for e in errors)
    assert any(e.startswith("triage.colour:") for e in errors)
    # Defaults everywhere: triage is opt-in (off), the labeler is on and labels the README typo.
    assert writes(github) == [("POST", LABELS, {"labels": ["bug", "documentation"]})]


async def test_triage_is_off_without_a_section(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    github.get(config_url(REPO)).mock(return_value=httpx.Response(200, text="labeler: false\n"))
    await run(private_key_pem, issue_event(labels=[]))
    assert writes(github) == []


def test_decide_reads_only_the_payload() -> None:
    config = TriageConfig(enabled=True)
    facts = TriageFacts("labeled", 3, ("Needs-Triage", "bug"), "bug")
    assert decide(config, facts) == "remove"  # label names compare without case
    assert decide(config, TriageFacts("labeled", 3, ("needs-triage",), "NEEDS-TRIAGE")) is None
    assert decide(config, TriageFacts("reopened", 3, ("needs-triage",), None)) is None
    assert decide(config, TriageFacts("opened", 3, (), None)) == "add"
