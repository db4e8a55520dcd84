"""Backfill jobs through the real server: the admin API, the lister, the queue and the labeler.

GitHub is faked with respx (``FakeRepository``: pages with Link headers, pull
requests mixed in, labels recorded); jobs are started and followed with the
admin API as the command does.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
import pytest
import respx

from github_app.backfill.store import MemoryJobStore
from tests.conftest import API, RunningApp, github_calls, make_settings, running_app, wait_for
from tests.fake_repository import FakeRepository

pytestmark = pytest.mark.anyio

ADMIN = "backfill-admin-token"
AUTH = {"authorization": f"Bearer {ADMIN}"}
REPO = "octo-org/big"


def settings(private_key_pem: str, **env: str) -> Any:
    return make_settings(private_key_pem, ADMIN_TOKEN=ADMIN, GITHUB_WRITE_INTERVAL="0", **env)


async def start(app: RunningApp, **body: Any) -> httpx.Response:
    return await app.client.post(f"{app.url}/admin/backfills", json=body, headers=AUTH)


async def job(app: RunningApp, job_id: str) -> dict[str, Any]:
    response = await app.client.get(f"{app.url}/admin/backfills/{job_id}", headers=AUTH)
    assert response.status_code == 200
    found: dict[str, Any] = response.json()
    return found


async def until_final(app: RunningApp, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
    last: dict[str, Any] = {}

    async def final() -> bool:
        nonlocal last
        last = await job(app, job_id)
        return last["state"] in ("finished", "failed", "cancelled")

    deadline = time.monotonic() + timeout
    while not await final():
        assert time.monotonic() < deadline, f"job {job_id} still {last.get('state')}: {last}"
        await anyio.sleep(0.02)
    return last


async def test_a_job_labels_the_matching_issues_of_a_repository_and_skips_pull_requests(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    repo = FakeRepository(REPO, count=250, matching_every=10, pr_every=7)
    repo.route(github)
    async with running_app(settings(private_key_pem)) as app:
        answer = await start(app, repository=REPO)
        assert answer.status_code == 202, answer.text
        created = answer.json()
        assert answer.headers["location"] == f"/admin/backfills/{created['id']}"
        assert created["spec"]["processors"] == ["duplicates", "labeler", "triage"]
        done = await until_final(app, created["id"])
    assert done["state"] == "finished", done
    assert sorted(repo.labelled) == repo.matching()
    assert all(labels == ["bug"] for labels in repo.labelled.values())
    pull_requests = 250 // 7
    assert done["listed"] == done["processed"] == 250 - pull_requests
    assert done["changed"] == done["labels_added"] == done["writes"] == len(repo.matching())
    assert done["errors"] == 0 and done["reads"] == 3
    assert dict(repo.reads) == {1: 1, 2: 1, 3: 1}  # each page listed once
    assert done["repositories_done"] == done["repositories_total"] == 1
    assert done["eta"] == 0.0
    calls = github_calls(github)
    # A label the repository lacks is created by GitHub on the first add: never asked for.
    assert not [c for c in calls if c[1] == f"/repos/{REPO}/labels"]
    assert ("GET", f"/repos/{REPO}/installation") in calls


async def test_a_dry_run_writes_nothing_and_says_what_it_would_change(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    repo = FakeRepository(REPO, count=40, matching_every=10)
    repo.route(github)
    async with running_app(settings(private_key_pem)) as app:
        answer = await start(app, repository=REPO, processors=["labeler"], dry_run=True)
        done = await until_final(app, answer.json()["id"])
    assert done["state"] == "finished"
    assert repo.labelled == {}
    assert done["writes"] == 0 and done["labels_added"] == 4
    assert done["examples"] == [f"#{n} labeler: add label bug" for n in (10, 20, 30, 40)]


async def test_an_unknown_repository_fails_the_job_with_its_reason_and_touches_nothing(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    github.get(f"{API}/repos/octo-org/missing/installation").mock(
        return_value=httpx.Response(404, json={"message": "Not Found"})
    )
    async with running_app(settings(private_key_pem)) as app:
        answer = await start(app, repository="octo-org/missing")
        done = await until_final(app, answer.json()["id"])
    assert done["state"] == "failed"
    assert "octo-org/missing not found" in done["reason"]
    assert [c for c in github_calls(github) if c[0] != "GET" or "missing" not in c[1]] == [
        ("GET", "/app")
    ]


async def test_a_repository_the_installation_cannot_see_fails_the_job(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    repo = FakeRepository(REPO, count=10)
    repo.route(github)
    github.get(f"{API}/repos/{REPO}").mock(
        return_value=httpx.Response(404, json={"message": "Not Found"})
    )
    async with running_app(settings(private_key_pem)) as app:
        done = await until_final(app, (await start(app, repository=REPO)).json()["id"])
    assert done["state"] == "failed"
    assert f"{REPO} not found or not visible to installation" in done["reason"]
    assert repo.reads == {} and repo.labelled == {}


async def test_a_failing_page_is_read_again_after_a_backoff(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    repo = FakeRepository(REPO, count=150, fail_page={2: 1})
    repo.route(github)
    async with running_app(settings(private_key_pem)) as app:
        done = await until_final(app, (await start(app, repository=REPO)).json()["id"])
        retries = app.runtime.backfills.lister_retries
    assert done["state"] == "finished"
    assert dict(repo.reads) == {1: 1, 2: 2}
    assert retries == 1
    assert sorted(repo.labelled) == repo.matching()


async def test_a_second_job_on_the_same_repository_is_refused_with_the_first_ones_id(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    repo = FakeRepository(REPO, count=10)
    repo.route(github)
    async with running_app(settings(private_key_pem), paused=True) as app:
        first = (await start(app, repository=REPO)).json()
        second = await start(app, repository=REPO)
        assert second.status_code == 409
        assert second.json()["job"] == first["id"]
        assert first["id"] in second.json()["message"]
        listed = (await app.client.get(f"{app.url}/admin/backfills", headers=AUTH)).json()
        assert [j["id"] for j in listed["jobs"]] == [first["id"]]
        status = (await app.client.get(f"{app.url}/admin/status", headers=AUTH)).json()
        [shown] = status["backfills"]["jobs"]  # the dashboard's panel reads these rows
        assert shown["id"] == first["id"] and shown["label"] == REPO
        assert shown["state"] in ("queued", "running") and shown["done"] == 0
        cancelled = await app.client.delete(
            f"{app.url}/admin/backfills/{first['id']}", headers=AUTH
        )
        assert cancelled.json()["state"] == "cancelled"
        assert (await start(app, repository=REPO)).status_code == 202  # free again


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "either"),
        ({"repository": "no-slash"}, "OWNER/REPO"),
        ({"repository": REPO, "installation": 3}, "either"),
        ({"installation": "3"}, "positive integer"),
        ({"repository": REPO, "processors": ["welcome"]}, "does not backfill"),
        ({"repository": REPO, "state": "merged"}, "state must be"),
        ({"repository": REPO, "since": "yesterday"}, "ISO 8601"),
        ({"repository": REPO, "dry_run": "yes"}, "dry_run"),
        ({"repository": REPO, "colour": "red"}, "unknown field"),
    ],
)
async def test_a_bad_request_gets_a_clear_400_and_starts_nothing(
    github: respx.MockRouter, private_key_pem: str, body: dict[str, Any], message: str
) -> None:
    async with running_app(settings(private_key_pem), paused=True) as app:
        answer = await start(app, **body)
        listed = (await app.client.get(f"{app.url}/admin/backfills", headers=AUTH)).json()
    assert answer.status_code == 400
    assert message in answer.json()["message"]
    assert listed["count"] == 0


async def test_backfill_routes_need_the_admin_token(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    async with running_app(settings(private_key_pem), paused=True) as app:
        answer = await app.client.post(f"{app.url}/admin/backfills", json={"repository": REPO})
        missing = await app.client.get(f"{app.url}/admin/backfills/nope", headers=AUTH)
    assert answer.status_code == 401
    assert missing.status_code == 404


async def test_a_restart_resumes_the_job_from_its_checkpoint_without_listing_or_writing_again(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    repo = FakeRepository(REPO, count=400, matching_every=10)
    repo.route(github)
    store = MemoryJobStore()
    stop_at_page = 3
    reached = []
    repo.on_page = lambda number: reached.append(number)
    async with running_app(settings(private_key_pem), backfill_store=store) as app:
        job_id = (await start(app, repository=REPO)).json()["id"]
        await wait_for(lambda: stop_at_page in reached, timeout=10, what="page 3 listed")
        before = await job(app, job_id)
    assert before["state"] == "running"
    labelled_before = dict(repo.labelled)
    saved = store.jobs()[0]
    assert saved.checkpoint.page_url is not None  # somewhere in the middle
    async with running_app(settings(private_key_pem), backfill_store=store) as app:
        done = await until_final(app, job_id)
    assert done["state"] == "finished"
    assert sorted(repo.labelled) == repo.matching()
    assert all(labels == ["bug"] for labels in repo.labelled.values())  # none labelled twice
    assert set(labelled_before) <= set(repo.labelled)
    # Pages done before the restart are not listed again; at most the two in progress are.
    assert repo.reads[1] == repo.reads[2] == 1
    assert max(repo.reads.values()) <= 2
    assert sum(repo.reads.values()) <= 4 + 2
