"""The webhook route through the real server: what is accepted, refused, and what follows."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import httpx
import pytest
import respx

from tests.conftest import (
    API,
    TOKEN,
    config_url,
    github_calls,
    make_settings,
    running_app,
)
from tests.deliveries import SECRET, app_payload, issue_event, signed

pytestmark = pytest.mark.anyio

LABELER_CONFIG = """\
labeler:
  rules:
    - label: bug
      keywords: [crash, traceback, exception]
    - label: documentation
      pattern: '(?i)\\bREADME\\b'
    - label: question
      keywords: [how do i]
"""


async def test_issue_opened_delivery_adds_matching_labels_through_github_in_one_call(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    github.get(config_url("Codertocat/Hello-World")).mock(
        return_value=httpx.Response(200, text=LABELER_CONFIG)
    )
    labels = github.post(f"{API}/repos/Codertocat/Hello-World/issues/1/labels").mock(
        return_value=httpx.Response(200, json=[])
    )
    async with running_app(make_settings(private_key_pem)) as app:
        startup_calls = github_calls(github)
        delivery = signed(app_payload("issues.opened"), "issues")
        response = await app.post(delivery)
        assert response.status_code == 202
        assert response.json() == {
            "status": "queued",
            "delivery": delivery.delivery_id,
            "priority": "HIGH",
        }
        await app.settle()

    assert startup_calls == [("GET", "/app")]
    assert github_calls(github)[1:] == [
        ("POST", "/app/installations/42/access_tokens"),
        ("GET", "/repos/Codertocat/Hello-World/contents/.github/auto-issue-processor.yml"),
        ("POST", "/repos/Codertocat/Hello-World/issues/1/labels"),
    ]
    # The example issue already has "bug"; README matches "documentation"; nothing matches
    # "question". One call, only the missing label, made with the installation token.
    assert labels.call_count == 1
    request = labels.calls.last.request
    assert json.loads(request.content) == {"labels": ["documentation"]}
    assert request.headers["authorization"] == f"token {TOKEN}"


async def test_form_encoded_delivery_is_accepted_like_json(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    github.get(config_url("Codertocat/Hello-World")).mock(return_value=httpx.Response(404))
    github.get(config_url("Codertocat/.github")).mock(return_value=httpx.Response(404))
    labels = github.post(f"{API}/repos/Codertocat/Hello-World/issues/1/labels").mock(
        return_value=httpx.Response(200, json=[])
    )
    form = urlencode({"payload": json.dumps(app_payload("issues.opened"))}).encode()
    delivery = signed(form, "issues", content_type="application/x-www-form-urlencoded")
    async with running_app(make_settings(private_key_pem)) as app:
        response = await app.post(delivery)
        assert response.status_code == 202
        await app.settle()
    # No config anywhere: the default rules add "documentation" (README, spelling).
    assert json.loads(labels.calls.last.request.content) == {"labels": ["documentation"]}


@pytest.mark.parametrize(
    ("change", "status", "reason"),
    [
        ("no signature", 401, "missing_signature"),
        ("wrong signature", 401, "bad_signature"),
        ("sha1 signature", 401, "bad_signature"),
        ("text/plain", 415, "unsupported_media_type"),
        ("malformed json", 400, "malformed_json"),
        ("no delivery id", 400, "missing_header"),
        ("non-ascii signature", 401, "bad_signature"),
        ("long delivery id", 400, "bad_header"),
        ("odd event name", 400, "bad_header"),
    ],
)
async def test_bad_deliveries_are_refused_with_a_clear_error_and_nothing_is_queued(
    github: respx.MockRouter, private_key_pem: str, change: str, status: int, reason: str
) -> None:
    delivery = signed(app_payload("issues.opened"), "issues")
    headers: dict[str, str | bytes] = dict(delivery.headers)
    body = delivery.body
    if change == "no signature":
        del headers["X-Hub-Signature-256"]
    elif change == "wrong signature":
        headers["X-Hub-Signature-256"] = signed(body, "issues", secret="other").headers[
            "X-Hub-Signature-256"
        ]
    elif change == "sha1 signature":
        import hashlib
        import hmac

        digest = hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
        headers["X-Hub-Signature-256"] = f"sha1={digest}"
    elif change == "text/plain":
        headers["Content-Type"] = "text/plain"
    elif change == "malformed json":
        body = b'{"action": "opened", "issue": '
        headers = signed(body, "issues").headers
    elif change == "no delivery id":
        del headers["X-GitHub-Delivery"]
    elif change == "non-ascii signature":
        headers["X-Hub-Signature-256"] = "sha256=\u00e9".encode()
    elif change == "long delivery id":
        headers["X-GitHub-Delivery"] = "a" * 73
    elif change == "odd event name":
        headers["X-GitHub-Event"] = "issues\u00e9".encode()
    async with running_app(make_settings(private_key_pem)) as app:
        response = await app.client.post(app.webhook_url, content=body, headers=headers)
        assert response.status_code == status
        assert response.json()["error"] == reason
        assert response.json()["message"]
        assert app.runtime.queue.stats().admitted == 0
        assert app.runtime.intake.stats.rejected[reason] == 1
    assert github_calls(github) == [("GET", "/app")]


async def test_body_over_githubs_25_mb_cap_is_refused_with_413(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    huge = b"x" * (25 * 1024 * 1024 + 1)
    delivery = signed(huge, "issues")
    async with running_app(make_settings(private_key_pem)) as app:
        declared = await app.post(delivery)
        assert declared.status_code == 413

        async def chunks():  # no Content-Length: the cap must hold while streaming
            for start in range(0, len(huge), 1024 * 1024):
                yield huge[start : start + 1024 * 1024]

        streamed = await app.client.post(
            app.webhook_url, content=chunks(), headers=delivery.headers
        )
        assert streamed.status_code == 413
        assert app.runtime.intake.stats.rejected["payload_too_large"] == 2
        assert app.runtime.queue.stats().admitted == 0


async def test_ping_answers_200_and_unsubscribed_events_are_acknowledged_and_dropped(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    async with running_app(make_settings(private_key_pem)) as app:
        ping = await app.post(signed(app_payload("ping", None), "ping"))
        star = await app.post(signed(app_payload("star.created"), "star"))
        closed = await app.post(signed(issue_event("milestoned"), "issues"))
        assert ping.status_code == 200
        assert ping.json() == {"status": "pong"}
        assert star.status_code == 202
        assert star.json()["status"] == "ignored"
        assert closed.status_code == 202
        assert app.runtime.intake.stats.ignored == 2
        assert app.runtime.intake.stats.pings == 1
        assert app.runtime.queue.stats().admitted == 0


async def test_repeated_delivery_id_is_answered_200_and_not_queued_twice(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    async with running_app(make_settings(private_key_pem), paused=True) as app:
        delivery = signed(app_payload("issues.opened"), "issues")
        first = await app.post(delivery)
        again = await app.post(delivery)
        assert first.status_code == 202
        assert again.status_code == 200
        assert again.json()["status"] == "duplicate"
        assert len(app.runtime.queue) == 1


async def test_full_queue_answers_503_with_retry_after_and_a_redelivery_is_accepted_later(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    github.get(config_url("Codertocat/Hello-World")).mock(return_value=httpx.Response(404))
    github.get(config_url("Codertocat/.github")).mock(return_value=httpx.Response(404))
    github.post(f"{API}/repos/Codertocat/Hello-World/issues/1/labels").mock(
        return_value=httpx.Response(200, json=[])
    )
    settings = make_settings(private_key_pem, QUEUE_MAX_EVENTS="2")
    async with running_app(settings, paused=True) as app:
        first = await app.post(signed(app_payload("issues.opened"), "issues"))
        assert first.status_code == 202
        refused_delivery = signed(issue_event(number=2), "issues")
        refused = await app.post(refused_delivery)
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) > 0
        assert refused.json()["error"] == "queue_full"
        assert len(app.runtime.queue) == 1

        app.runtime.dispatcher.resume()
        await app.settle()
        github.post(f"{API}/repos/Codertocat/Hello-World/issues/2/labels").mock(
            return_value=httpx.Response(200, json=[])
        )
        redelivered = await app.post(refused_delivery)  # GitHub keeps the delivery id
        assert redelivered.status_code == 202


async def test_delivery_that_failed_in_processing_is_accepted_again_when_redelivered(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    github.get(config_url("Codertocat/Hello-World")).mock(return_value=httpx.Response(404))
    github.get(config_url("Codertocat/.github")).mock(return_value=httpx.Response(404))
    labels = github.post(f"{API}/repos/Codertocat/Hello-World/issues/1/labels").mock(
        # A 422 is not retryable (a 502 would come back through the queue: see test_retries).
        side_effect=[
            httpx.Response(422, json={"message": "Validation Failed"}),
            httpx.Response(200),
        ]
    )
    delivery = signed(app_payload("issues.opened"), "issues")
    async with running_app(make_settings(private_key_pem)) as app:
        assert (await app.post(delivery)).status_code == 202
        await app.settle()
        assert app.runtime.runner.stats.failed["labeler"] == 1
        # The failed POST was sent once: the HTTP layer never re-sends a write by itself.
        assert labels.call_count == 1
        retried = await app.post(delivery)
        assert retried.status_code == 202
        await app.settle()
    assert labels.call_count == 2
    assert app.runtime.runner.stats.ok["labeler"] == 1


async def test_wrong_method_on_the_webhook_route_is_405(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    async with running_app(make_settings(private_key_pem)) as app:
        response = await app.client.get(app.webhook_url)
        assert response.status_code == 405
        health = await app.client.get(app.url + "/healthz")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
