"""Backfill jobs through the real server: the admin API, the lister, the queue and the labeler.

GitHub is faked with respx (``FakeRepository``: pages with Link headers, pull
requests mixed in, labels recorded); jobs are started and followed with the
admin API as the command does.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest
import respx
from redis.asyncio import Redis

from github_app.backfill.job import Checkpoint, Job, JobSpec
from github_app.backfill.redis_store import RedisJobStore
from github_app.backfill.store import JobStore, MemoryJobStore
from tests.conftest import (
    API,
    RunningApp,
    config_url,
    github_calls,
    make_settings,
    running_app,
    wait_for,
)
from tests.deliveries import INSTALLATION_ID, issue_event, signed
from tests.fake_repository import FakeRepository
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio

ADMIN = "backfill-admin-token"
AUTH = {"authorization": f"Bearer {ADMIN}"}
REPO = "octo-org/big"


def settings(private_key_pem: str, **env: str) -> Any:
    return make_settings(
        private_key_pem, **{"ADMIN_TOKEN": ADMIN, "GITHUB_WRITE_INTERVAL": "0", **env}
    )


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


MakeStore = Callable[[], JobStore]


@pytest.fixture
async def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
async def redis_stores(redis_server: RedisServer) -> AsyncIterator[Callable[..., RedisJobStore]]:
    """Each call: one replica's (or one restart's) Redis job store on a connection of its own."""
    clients: list[Redis] = []

    def make(claim_ttl: float = 30.0) -> RedisJobStore:
        clients.append(Redis.from_url(redis_server.url))
        return RedisJobStore(clients[-1], prefix="test:", claim_ttl=claim_ttl)

    try:
        yield make
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture(params=["memory", "redis"])
def job_stores(request: pytest.FixtureRequest) -> MakeStore:
    """The store after each restart: memory lives on with the process, Redis is read afresh."""
    if request.param == "redis":
        make: MakeStore = request.getfixturevalue("redis_stores")
        return make
    memory = MemoryJobStore()
    return lambda: memory


async def test_a_restart_resumes_the_job_from_its_checkpoint_without_listing_or_writing_again(
    github: respx.MockRouter, private_key_pem: str, job_stores: MakeStore
) -> None:
    # Page 3 fails until the restart: pages 1 and 2 are done, the job waits on page 3.
    repo = FakeRepository(REPO, count=400, matching_every=10, fail_page={3: 1000})
    repo.route(github)
    store = job_stores()
    async with running_app(settings(private_key_pem), backfill_store=store) as app:
        job_id = (await start(app, repository=REPO)).json()["id"]
        await wait_for(lambda: repo.reads[3] >= 1, timeout=10, what="page 3 to fail")
        await wait_for(
            lambda: app.runtime.backfills.get(job_id).processed == 200,  # type: ignore[union-attr]
            what="pages 1 and 2 processed",
        )
        await wait_for(lambda: store.jobs()[0].checkpoint.page_url is not None)
    saved = store.jobs()[0]
    assert saved.state == "running"
    assert saved.checkpoint.page_url is not None and "page=3" in saved.checkpoint.page_url
    labelled_before = dict(repo.labelled)
    assert sorted(labelled_before) == [n for n in repo.matching() if n <= 200]
    repo.fail_page.clear()
    listed_before = dict(repo.reads)
    async with running_app(settings(private_key_pem), backfill_store=job_stores()) as app:
        done = await until_final(app, job_id)
    assert done["state"] == "finished"
    assert done["processed"] == done["listed"] == 400
    assert sorted(repo.labelled) == repo.matching()
    assert all(labels == ["bug"] for labels in repo.labelled.values())  # none labelled twice
    # Pages done before the restart are not listed again; the job goes on from page 3.
    assert repo.reads[1] == repo.reads[2] == 1
    assert repo.reads[3] == listed_before[3] + 1 and repo.reads[4] == 1


@pytest.fixture(params=["sqlite", "redis"])
def lasting(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The settings of a backend that outlives the app: the spool, or the replicas' Redis."""
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return {"QUEUE_BACKEND": "redis", "REDIS_URL": server.url}
    return {"QUEUE_BACKEND": "sqlite", "STATE_DIR": str(tmp_path / "state")}


async def test_after_a_restart_the_spool_gives_the_job_back_and_it_finishes_without_rewriting(
    github: respx.MockRouter, private_key_pem: str, lasting: dict[str, str]
) -> None:
    repo = FakeRepository(REPO, count=300, matching_every=10, fail_page={3: 1000})
    repo.route(github)
    env = lasting
    async with running_app(settings(private_key_pem, **env)) as app:
        job_id = (await start(app, repository=REPO)).json()["id"]
        await wait_for(lambda: repo.reads[3] >= 1, timeout=10, what="page 3 to fail")
        await wait_for(
            lambda: app.runtime.backfills.get(job_id).processed == 200,  # type: ignore[union-attr]
            what="pages 1 and 2 processed",
        )
    repo.fail_page.clear()
    labelled_before = len(repo.labelled)
    async with running_app(settings(private_key_pem, **env)) as app:
        done = await until_final(app, job_id)
        listed = (await app.client.get(f"{app.url}/admin/backfills", headers=AUTH)).json()
    assert labelled_before == 20
    assert done["state"] == "finished" and done["processed"] == 300
    assert listed["count"] == 1
    assert sorted(repo.labelled) == repo.matching()
    assert all(labels == ["bug"] for labels in repo.labelled.values())
    assert repo.reads[1] == repo.reads[2] == 1


async def test_events_of_an_earlier_run_kept_by_the_spool_are_skipped_not_run_twice(
    github: respx.MockRouter, private_key_pem: str, lasting: dict[str, str]
) -> None:
    repo = FakeRepository(REPO, count=150, matching_every=10)
    repo.route(github)
    env = lasting
    async with running_app(settings(private_key_pem, **env), paused=True) as app:
        job_id = (await start(app, repository=REPO)).json()["id"]
        await wait_for(lambda: app.runtime.queue.stats().admitted == 150, what="both pages queued")
    assert repo.labelled == {}
    async with running_app(settings(private_key_pem, **env)) as app:
        done = await until_final(app, job_id)
        skipped = app.runtime.runner.stats.events_ok
    assert done["state"] == "finished" and done["processed"] == 150
    assert sorted(repo.labelled) == repo.matching()
    assert all(labels == ["bug"] for labels in repo.labelled.values())
    assert skipped == 300  # 150 replayed from the first run and skipped, 150 processed
    assert repo.reads[1] == 2  # the first page was not done: listed again


class ShiftedRepository(FakeRepository):
    """An issue was reopened while the job listed: every later page starts one issue early,
    so page 2 begins with page 1's last issue again."""

    def page(self, request: httpx.Request) -> httpx.Response:
        response = super().page(request)
        if request.url.params.get("page") != "2":
            return response
        items = [self.issue(100), *response.json()]
        return httpx.Response(200, json=items, headers=response.headers)


async def test_an_issue_listed_twice_is_answered_duplicate_by_redis_and_counts_as_queued(
    github: respx.MockRouter, private_key_pem: str, redis_server: RedisServer
) -> None:
    repo = ShiftedRepository(REPO, count=150, matching_every=10)
    repo.route(github)
    env = {"QUEUE_BACKEND": "redis", "REDIS_URL": redis_server.url}
    async with running_app(settings(private_key_pem, **env)) as app:
        done = await until_final(app, (await start(app, repository=REPO)).json()["id"])
        admitted = app.runtime.queue.stats().admitted
    assert done["state"] == "finished" and done["processed"] == 150
    assert admitted == 150  # the second offer of #100 was the same run's delivery: not queued
    assert sorted(repo.labelled) == repo.matching()
    assert repo.labelled[100] == ["bug"]


async def test_a_live_event_during_a_backfill_is_served_before_the_backfills_writes(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    repo = FakeRepository(REPO, count=80, matching_every=1)  # every issue gets a write
    repo.route(github)
    order = repo.write_order
    live = signed(
        issue_event(number=5000, title="It crashes", labels=[], repository=REPO), "issues"
    )
    env = {"GITHUB_WRITE_INTERVAL": "0.05"}
    async with running_app(settings(private_key_pem, **env)) as app:
        job_id = (await start(app, repository=REPO, processors=["labeler"])).json()["id"]
        await wait_for(lambda: len(order) >= 5, what="the backfill's first writes")
        posted_at = len(order)
        assert (await app.post(live)).status_code == 202
        await wait_for(lambda: 5000 in order, what="the live event's label")
        done = await until_final(app, job_id)
    assert done["state"] == "finished"
    # The live write waits at most for the backfill write on the wire and the one whose
    # turn had begun, not behind the rest of the backfill.
    assert order.index(5000) <= posted_at + 2
    assert len(order) == 81 and len(set(order)) == 81


async def test_a_cancelled_job_stops_listing_and_skips_its_queued_issues(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    repo = FakeRepository(REPO, count=400, matching_every=1)
    repo.route(github)
    env = {"GITHUB_WRITE_INTERVAL": "0.02"}
    async with running_app(settings(private_key_pem, **env)) as app:
        job_id = (await start(app, repository=REPO, processors=["labeler"])).json()["id"]
        await wait_for(lambda: len(repo.labelled) >= 3, what="the first labels")
        cancelled = await app.client.delete(f"{app.url}/admin/backfills/{job_id}", headers=AUTH)
        written, under_way = len(repo.labelled), app.runtime.dispatcher.in_flight
        await app.settle(timeout=10)
        after = await job(app, job_id)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert after["state"] == "cancelled" and after["reason"] == "cancelled"
    assert len(repo.labelled) <= written + under_way  # at most the events already under way
    assert len(repo.labelled) < 100  # the rest of the listed pages was skipped
    assert sum(repo.reads.values()) <= 2  # no page listed after the cancel


async def test_an_issue_whose_event_is_dead_lettered_counts_as_an_error_and_the_job_ends(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    repo = FakeRepository(REPO, count=20, matching_every=10)
    github.post(f"{API}/repos/{REPO}/issues/10/labels").mock(
        return_value=httpx.Response(500, json={"message": "Server Error"})
    )
    repo.route(github)
    env = {"RETRY_ATTEMPTS": "1"}
    async with running_app(settings(private_key_pem, **env)) as app:
        app.runtime.backfills.poll = 0.05
        done = await until_final(app, (await start(app, repository=REPO)).json()["id"])
        dead = app.runtime.queue.stats().dead_lettered_by_reason
    assert done["state"] == "finished"
    assert done["errors"] == 1 and done["processed"] == 20
    assert sorted(repo.labelled) == [20]
    assert sum(dead.values()) == 1


async def test_an_installation_job_runs_every_repository_with_each_processors_own_backfill(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    first = FakeRepository("octo-org/first", count=30, matching_every=10)
    second = FakeRepository("octo-org/second", count=20, matching_every=10)
    for repo in (first, second):
        repo.route(github)
    # The first repository turns triage and duplicates on (the routes' last answer wins).
    github.get(config_url("octo-org/first")).mock(
        return_value=httpx.Response(200, text="triage: {}\nduplicates: {}\n")
    )
    github.get(f"{API}/installation/repositories").mock(
        return_value=httpx.Response(
            200,
            json={
                "total_count": 2,
                "repositories": [
                    {"full_name": "octo-org/first", "open_issues_count": 30},
                    {"full_name": "octo-org/second", "open_issues_count": 20},
                ],
            },
        )
    )
    async with running_app(settings(private_key_pem)) as app:
        answer = await start(app, installation=INSTALLATION_ID)
        done = await until_final(app, answer.json()["id"])
        index = app.runtime.runner.states["duplicates"].indexes.get("octo-org/first")
    assert done["state"] == "finished", done
    assert done["repositories_done"] == done["repositories_total"] == 2
    assert done["processed"] == 50 and done["estimated_total"] == 50
    # labeler everywhere; triage (on in the first only) marks the open issues listed unlabelled
    assert second.labelled == {10: ["bug"], 20: ["bug"]}
    assert {n: sorted(labels) for n, labels in first.labelled.items()} == {
        n: sorted(["needs-triage", *(["bug"] if n % 10 == 0 else [])]) for n in range(1, 31)
    }
    # duplicates indexed the stream and posted nothing
    assert index is not None and len(index.index) == 30
    assert not [c for c in github_calls(github) if c[1].endswith("/comments")]


async def test_replicas_sharing_redis_show_every_job_and_a_cancel_on_either_stops_it(
    github: respx.MockRouter, private_key_pem: str, redis_stores: Callable[..., RedisJobStore]
) -> None:
    # Page 2 fails for good: the job keeps running on the replica that took it.
    repo = FakeRepository(REPO, count=300, matching_every=10, fail_page={2: 1000})
    repo.route(github)
    async with (
        running_app(settings(private_key_pem), backfill_store=redis_stores()) as one,
        running_app(settings(private_key_pem), backfill_store=redis_stores()) as other,
    ):
        job_id = (await start(one, repository=REPO)).json()["id"]
        await wait_for(lambda: repo.reads[2] >= 1, timeout=10, what="page 2 to fail")
        deadline = time.monotonic() + 10  # the other replica shows what the first one saved
        while (elsewhere := await job(other, job_id))["processed"] < 100:
            assert time.monotonic() < deadline, elsewhere
            await anyio.sleep(0.05)
        conflict = await start(other, repository=REPO)
        cancelled = await other.client.delete(f"{other.url}/admin/backfills/{job_id}", headers=AUTH)
        await wait_for(
            lambda: one.runtime.backfills.get(job_id).state == "cancelled",  # type: ignore[union-attr]
            timeout=10,
            what="the first replica to learn of the cancel",
        )
        reads = sum(repo.reads.values())
        listed = (await other.client.get(f"{other.url}/admin/backfills", headers=AUTH)).json()
    assert elsewhere["state"] == "running" and elsewhere["listed"] == 100
    assert conflict.status_code == 409 and conflict.json()["job"] == job_id
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert not other.runtime.backfills.lister_retries  # the second replica never listed
    assert listed["count"] == 1 and listed["jobs"][0]["state"] == "cancelled"
    assert sum(repo.reads.values()) == reads  # no page read after the first replica stopped


async def test_a_job_whose_replica_died_is_resumed_by_another_from_its_checkpoint(
    github: respx.MockRouter, private_key_pem: str, redis_url: str
) -> None:
    repo = FakeRepository(REPO, count=250, matching_every=10)
    repo.route(github)
    # What a replica killed with -9 leaves: its claim (until it expires) and its last save,
    # pages 1 and 2 done.
    dead = Job("0123456789ab", JobSpec(repository=REPO, processors=("labeler",)), created_at=1.0)
    dead.start(2.0)
    page_3 = f"{API}/repos/{REPO}/issues?state=open&sort=created&direction=asc&per_page=100&page=3"
    dead.checkpoint = Checkpoint(
        installation=INSTALLATION_ID, repositories=(REPO,), page_url=page_3
    )
    for number in range(1, 201):
        dead.note(number, {}, ok=True)
    client = Redis.from_url(redis_url)
    try:
        await client.hset("test:backfill:jobs", dead.id, orjson.dumps(dead.as_json()))
        await client.set(f"test:backfill:claim:{dead.id}", "the dead replica", px=300)
        store = RedisJobStore(client, prefix="test:")
        async with running_app(settings(private_key_pem), backfill_store=store) as app:
            done = await until_final(app, dead.id)
    finally:
        await client.aclose()
    assert done["state"] == "finished" and done["processed"] == 250
    assert sorted(repo.labelled) == [210, 220, 230, 240, 250]  # only what the dead one left
    assert repo.reads[1] == repo.reads[2] == 0


async def test_replicas_sharing_the_redis_queue_process_a_jobs_issues_once_wherever_they_run(
    github: respx.MockRouter, private_key_pem: str, redis_url: str
) -> None:
    repo = FakeRepository(REPO, count=300, matching_every=3)
    repo.route(github)
    env = {"QUEUE_BACKEND": "redis", "REDIS_URL": redis_url}
    async with (
        running_app(settings(private_key_pem, **env)) as one,
        running_app(settings(private_key_pem, **env)) as other,
    ):
        job_id = (await start(one, repository=REPO)).json()["id"]
        done = await until_final(other, job_id, timeout=60)  # followed on the other replica
        on_one = one.runtime.runner.stats.events_ok
        on_other = other.runtime.runner.stats.events_ok
    assert done["state"] == "finished", done
    assert done["processed"] == done["listed"] == 300 and done["errors"] == 0
    assert sorted(repo.labelled) == repo.matching()
    assert all(labels == ["bug"] for labels in repo.labelled.values())  # each written once
    assert on_one > 0 and on_other > 0  # both dispatchers took the job's issues
    assert on_one + on_other == 300
