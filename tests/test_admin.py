"""Admin routes through the real server: auth, the status document, dead letters, the page."""

from __future__ import annotations

import json
import re

import httpx
import pytest
import respx

from github_app.runtime import INITIAL_WIDTH
from tests.conftest import API, TOKEN, config_url, make_settings, running_app, wait_for
from tests.deliveries import SECRET, app_payload, issue_event, signed

pytestmark = pytest.mark.anyio

ADMIN = "admin-token-for-tests-0123456789"
REPO = "Codertocat/Hello-World"
JSON_ROUTES = [
    ("GET", "/admin/status"),
    ("GET", "/admin/dead-letters"),
    ("POST", "/admin/dead-letters/some-delivery/redrive"),
    ("POST", "/admin/dead-letters/redrive"),
    ("DELETE", "/admin/dead-letters"),
]


def bearer(token: str = ADMIN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_admin_routes_answer_404_like_an_unknown_path_when_admin_token_is_unset() -> None:
    async with running_app(make_settings(None)) as app:
        unknown = await app.client.get(app.url + "/no-such-page")
        for method, path in [*JSON_ROUTES, ("GET", "/admin")]:
            answer = await app.client.request(method, app.url + path, headers=bearer())
            assert answer.status_code == 404, (method, path)
            assert answer.text == unknown.text


async def test_admin_routes_need_the_right_bearer_token() -> None:
    async with running_app(make_settings(None, ADMIN_TOKEN=ADMIN)) as app:
        for method, path in JSON_ROUTES:
            url = app.url + path
            missing = await app.client.request(method, url)
            wrong = await app.client.request(method, url, headers=bearer("not-the-token"))
            prefix = await app.client.request(method, url, headers=bearer(ADMIN[:-1]))
            basic = await app.client.request(
                method, url, headers={"Authorization": f"Basic {ADMIN}"}
            )
            for answer in (missing, wrong, prefix, basic):
                assert answer.status_code == 401, (method, path, answer.text)
                assert answer.headers["www-authenticate"].startswith("Bearer")
                assert answer.json()["error"] == "unauthorized"
        right = await app.client.get(app.url + "/admin/status", headers=bearer())
        assert right.status_code == 200
        assert right.json()["app"]["dry_run"] is True


async def test_status_shows_the_parts_and_never_contains_a_secret(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    github.get(config_url(REPO)).mock(return_value=httpx.Response(200, text="labeler: [oops\n"))
    github.post(f"https://api.github.com/repos/{REPO}/issues/1/labels").mock(
        return_value=httpx.Response(200, json=[])
    )
    settings = make_settings(private_key_pem, ADMIN_TOKEN=ADMIN, DRY_RUN="false")
    async with running_app(settings) as app:
        assert (await app.post(signed(app_payload("issues.opened"), "issues"))).status_code == 202
        await app.settle()
        answer = await app.client.get(app.url + "/admin/status", headers=bearer())
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    text = answer.text
    for secret in (ADMIN, SECRET, TOKEN, private_key_pem, json.dumps(private_key_pem)[1:-1]):
        assert secret not in text
    key_body = [line for line in private_key_pem.splitlines() if "-----" not in line]
    assert all(line not in text for line in key_body)
    assert "PRIVATE KEY" not in text

    status = answer.json()
    assert status["app"]["version"]
    assert status["app"]["dry_run"] is False
    assert status["app"]["app_slug"] == "auto-issue-processor-test"
    assert status["ready"] == {"ready": True, "reason": None}
    assert status["totals"]["admitted"] == 1
    assert status["totals"]["processed"] == 1
    assert set(status["queue"]["depth_by_priority"]) == {"CRITICAL", "HIGH", "NORMAL", "LOW"}
    assert set(status["queue"]["bytes_by_priority"]) == {"CRITICAL", "HIGH", "NORMAL", "LOW"}
    width = status["controller"]["width"]
    assert status["dispatcher"]["width"] == width == INITIAL_WIDTH  # its start
    assert status["breaker"]["open"] is False
    assert status["breaker"]["stats"]["state"] == "closed"
    assert status["intake"]["queued"] == 1
    assert status["processors"]["by_processor"]["labeler"]["ok"] == 1
    assert status["github"]["tokens_cached"] == 1
    assert list(status["config_errors"]) == [REPO]
    assert "invalid YAML" in status["config_errors"][REPO][0]
    assert status["host"]["rss_bytes"] > 1_000_000
    assert 0 <= status["host"]["cpu_percent"] <= 100
    # Parts that land with other issues have their places already.
    for place in ("controller", "breaker"):
        assert place in status
    assert "rate_limits" in status["github"]


async def test_status_with_history_serves_the_last_hour_and_then_only_what_is_new() -> None:
    async with running_app(make_settings(None, ADMIN_TOKEN=ADMIN), history_interval=0.05) as app:
        for number in range(1, 21):
            delivery = signed(issue_event("opened", number=number), "issues")
            assert (await app.post(delivery)).status_code == 202
        await app.settle()
        sampler = app.runtime.sampler
        samples = sampler.history
        # Every event of the burst is counted in some sample once a sample follows the drain.
        drained_at = samples.next_seq
        await wait_for(lambda: samples.next_seq > drained_at + 1, what="two more samples")
        url = app.url + "/admin/status"
        full = await app.client.get(url, params={"history": "3600"}, headers=bearer())
        assert full.status_code == 200
        assert full.headers["cache-control"] == "no-store"
        document = full.json()
        assert document["totals"]["processed"] == 20  # the status document, and with it:
        history = document["history"]
        assert history["continues"] is False and history["interval"] == 0.05
        series = history["series"]
        assert len(history["at"]) == len(series["processed_per_s"]) == history["next"]
        processed = sum(rate * 0.05 for rate in series["processed_per_s"])
        assert processed == pytest.approx(20, rel=0.5)  # rates times (roughly) the interval
        assert max(series["admitted_per_s"]) > 0
        assert series["width"][-1] == INITIAL_WIDTH and series["depth_normal"][-1] == 0
        assert any(p is not None for p in series["latency_p99"])
        assert history["now"] >= history["at"][-1]

        await wait_for(lambda: samples.next_seq > history["next"], what="a newer sample")
        params = {"history": "3600", "from": str(history["next"])}
        newer = (await app.client.get(url, params=params, headers=bearer())).json()["history"]
        assert newer["continues"] is True
        assert newer["first"] == history["next"]
        assert 1 <= len(newer["at"]) < len(history["at"]) + 5
        plain = await app.client.get(url, headers=bearer())
        assert "history" not in plain.json()  # the status document alone stays as it was


async def test_status_history_refuses_bad_parameters_with_a_clear_error() -> None:
    async with running_app(make_settings(None, ADMIN_TOKEN=ADMIN)) as app:
        url = app.url + "/admin/status"
        for params in (
            {"history": "hour"},
            {"history": "0"},
            {"history": "3601"},
            {"history": "-5"},
            {"history": ""},
            {"history": "60", "from": "x"},
            {"history": "60", "from": "-1"},
        ):
            answer = await app.client.get(url, params=params, headers=bearer())
            assert answer.status_code == 400, params
            assert answer.json()["error"] == "bad_request"
            assert ("history must" in answer.json()["message"]) or ("from must" in answer.text)
        refused = await app.client.get(url, params={"history": "60"}, headers=bearer("wrong"))
        assert refused.status_code == 401


async def test_dead_letter_routes_list_redrive_and_purge_real_dead_letters(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    github.get(config_url(REPO)).mock(return_value=httpx.Response(404))
    github.get(config_url("Codertocat/.github")).mock(return_value=httpx.Response(404))
    labels = github.post(f"{API}/repos/{REPO}/issues/1/labels").mock(
        return_value=httpx.Response(502, json={"message": "Bad gateway"})
    )
    settings = make_settings(private_key_pem, ADMIN_TOKEN=ADMIN, RETRY_ATTEMPTS="1")
    async with running_app(settings) as app:
        url = app.url + "/admin/dead-letters"
        delivery = signed(app_payload("issues.opened"), "issues")
        assert (await app.post(delivery)).status_code == 202
        await app.settle()
        listed = await app.client.get(url, headers=bearer())
        assert listed.status_code == 200
        assert listed.json()["count"] == 1
        entry = listed.json()["dead_letters"][0]
        assert entry["delivery_id"] == delivery.delivery_id
        assert entry["reason"] == "exhausted"
        assert "502" in entry["last_error"]

        unknown = await app.client.post(url + "/no-such-delivery/redrive", headers=bearer())
        assert unknown.status_code == 404
        assert "no-such-delivery" in unknown.json()["message"]

        labels.mock(return_value=httpx.Response(200, json=[]))
        redriven = await app.client.post(f"{url}/{delivery.delivery_id}/redrive", headers=bearer())
        assert redriven.status_code == 200
        await app.settle()
        assert labels.call_count == 2
        assert (await app.client.get(url, headers=bearer())).json()["count"] == 0

        labels.mock(return_value=httpx.Response(502, json={"message": "Bad gateway"}))
        again = signed(app_payload("issues.opened"), "issues")
        assert (await app.post(again)).status_code == 202
        await app.settle()
        everything = await app.client.post(url + "/redrive", headers=bearer())
        assert everything.json() == {"count": 1}
        await app.settle()
        purged = await app.client.delete(url, headers=bearer())
        assert purged.json() == {"purged": 1}
        assert (await app.client.get(url, headers=bearer())).json()["count"] == 0


async def test_dead_letter_listing_can_be_limited_to_the_oldest_and_says_how_many_in_all(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    github.get(config_url(REPO)).mock(return_value=httpx.Response(404))
    github.get(config_url("Codertocat/.github")).mock(return_value=httpx.Response(404))
    github.post(f"{API}/repos/{REPO}/issues/1/labels").mock(
        return_value=httpx.Response(502, json={"message": "Bad gateway"})
    )
    settings = make_settings(private_key_pem, ADMIN_TOKEN=ADMIN, RETRY_ATTEMPTS="1")
    async with running_app(settings) as app:
        url = app.url + "/admin/dead-letters"
        first, second = (signed(app_payload("issues.opened"), "issues") for _ in range(2))
        for delivery in (first, second):
            assert (await app.post(delivery)).status_code == 202
        await app.settle()
        limited = (await app.client.get(url, params={"limit": "1"}, headers=bearer())).json()
        assert (limited["count"], limited["total"]) == (1, 2)
        assert [d["delivery_id"] for d in limited["dead_letters"]] == [first.delivery_id]
        whole = (await app.client.get(url, headers=bearer())).json()
        assert (whole["count"], whole["total"]) == (2, 2)
        for bad in ("0", "-1", "ten", ""):
            answer = await app.client.get(url, params={"limit": bad}, headers=bearer())
            assert answer.status_code == 400, bad
            assert answer.json()["message"] == "limit must be a whole number from 1"


async def test_admin_page_is_self_contained_and_holds_no_data_itself() -> None:
    async with running_app(make_settings(None, ADMIN_TOKEN=ADMIN)) as app:
        answer = await app.client.get(app.url + "/admin")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")
    policy = answer.headers["content-security-policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy)
    assert nonce is not None
    assert f'<script nonce="{nonce.group(1)}">' in answer.text
    assert "default-src 'none'" in policy
    # No external asset: nothing is loaded from anywhere but this page and /admin/*. The one
    # address in it is SVG's namespace, a name that is never fetched.
    assert "src=" not in answer.text and "href=" not in answer.text
    addresses = set(re.findall(r"https?://[^\s\"'`]*", answer.text))
    assert addresses == {"http://www.w3.org/2000/svg"}
    assert ADMIN not in answer.text
