"""Running an event: repository config lookup, dry run, the app's own events, bad patterns."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
import respx

from github_app import event_models
from github_app.dispatch.registry import Registry
from github_app.processor import Context, Processor, ProcessorConfig
from tests.conftest import (
    API,
    APP_SLUG,
    app_response,
    config_url,
    github_calls,
    make_settings,
    running_app,
    wait_for,
)
from tests.deliveries import app_payload, issue_event, signed

pytestmark = pytest.mark.anyio

REPO = "Codertocat/Hello-World"
LABELS_URL = f"{API}/repos/{REPO}/issues/1/labels"


def no_config_anywhere(github: respx.MockRouter, repository: str = REPO) -> None:
    owner = repository.split("/")[0]
    github.get(config_url(repository)).mock(return_value=httpx.Response(404))
    github.get(config_url(f"{owner}/.github")).mock(return_value=httpx.Response(404))


async def test_missing_config_file_means_default_rules(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    no_config_anywhere(github)
    labels = github.post(LABELS_URL).mock(return_value=httpx.Response(200, json=[]))
    delivery = signed(
        issue_event(title="App crashes on start", body="Traceback below", labels=[]), "issues"
    )
    async with running_app(make_settings(private_key_pem)) as app:
        assert (await app.post(delivery)).status_code == 202
        await app.settle()
    assert json.loads(labels.calls.last.request.content) == {"labels": ["bug"]}


async def test_broken_yaml_is_logged_with_the_repository_and_defaults_apply(
    github: respx.MockRouter, private_key_pem: str, caplog: pytest.LogCaptureFixture
) -> None:
    github.get(config_url(REPO)).mock(
        return_value=httpx.Response(200, text="labeler:\n  rules: [\n    - label: bug\n")
    )
    labels = github.post(LABELS_URL).mock(return_value=httpx.Response(200, json=[]))
    caplog.set_level(logging.INFO)
    async with running_app(make_settings(private_key_pem)) as app:
        assert (await app.post(signed(app_payload("issues.opened"), "issues"))).status_code == 202
        await app.settle()
        assert list(app.runtime.configs.errors) == [REPO]
        assert app.runtime.runner.stats.ok["labeler"] == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(REPO in line and "invalid YAML" in line for line in errors)
    # Defaults, not a half-applied file: README/spelling -> documentation.
    assert json.loads(labels.calls.last.request.content) == {"labels": ["documentation"]}


async def test_unknown_key_in_config_never_half_applies(
    github: respx.MockRouter, private_key_pem: str, caplog: pytest.LogCaptureFixture
) -> None:
    github.get(config_url(REPO)).mock(
        return_value=httpx.Response(
            200,
            text="labeler:\n  rules:\n    - label: custom\n      keywords: [spelling]\n"
            "  remove_stale: yes\n",
        )
    )
    labels = github.post(LABELS_URL).mock(return_value=httpx.Response(200, json=[]))
    async with running_app(make_settings(private_key_pem)) as app:
        assert (await app.post(signed(app_payload("issues.opened"), "issues"))).status_code == 202
        await app.settle()
        assert any("labeler.remove_stale" in e for e in app.runtime.configs.errors[REPO])
    assert json.loads(labels.calls.last.request.content) == {"labels": ["documentation"]}


async def test_org_dot_github_repository_config_is_the_fallback_and_extends_merges(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    github.get(config_url(REPO)).mock(return_value=httpx.Response(404))
    github.get(config_url("Codertocat/.github")).mock(
        return_value=httpx.Response(
            200, text="_extends: shared-config\nlabeler:\n  enabled: true\n"
        )
    )
    github.get(config_url("Codertocat/shared-config")).mock(
        return_value=httpx.Response(
            200,
            text=(
                "labeler:\n  enabled: false\n"
                "  rules:\n    - label: typo\n      keywords: [spelled]\n"
            ),
        )
    )
    labels = github.post(LABELS_URL).mock(return_value=httpx.Response(200, json=[]))
    async with running_app(make_settings(private_key_pem)) as app:
        assert (await app.post(signed(app_payload("issues.opened"), "issues"))).status_code == 202
        await app.settle()
    assert json.loads(labels.calls.last.request.content) == {"labels": ["typo"]}


async def test_config_is_read_once_and_cached_for_later_events_of_the_repository(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    config = github.get(config_url(REPO)).mock(
        return_value=httpx.Response(200, text="labeler:\n  enabled: false\n")
    )
    async with running_app(make_settings(private_key_pem)) as app:
        for number in (1, 2, 3):
            delivery = signed(issue_event(number=number), "issues")
            assert (await app.post(delivery)).status_code == 202
        await app.settle()
        assert app.runtime.runner.stats.events_ok == 3
    assert config.call_count == 1
    assert app.runtime.gateway.tokens.minted == 1
    assert [c for c in github_calls(github) if c[0] == "POST" and "labels" in c[1]] == []


async def test_dry_run_with_credentials_reads_from_github_but_sends_no_write(
    github: respx.MockRouter, private_key_pem: str, caplog: pytest.LogCaptureFixture
) -> None:
    no_config_anywhere(github)
    labels = github.post(LABELS_URL).mock(return_value=httpx.Response(200, json=[]))
    caplog.set_level(logging.INFO)
    async with running_app(make_settings(private_key_pem, DRY_RUN="true")) as app:
        delivery = signed(app_payload("issues.opened"), "issues")
        assert (await app.post(delivery)).status_code == 202
        await app.settle()
        assert app.runtime.gateway.dry_run_transport is not None
        writes = app.runtime.gateway.dry_run_transport.writes
    assert labels.call_count == 0
    assert all(method == "GET" or "access_tokens" in path for method, path in github_calls(github))
    assert writes == [("POST", f"/repos/{REPO}/issues/1/labels", '{"labels":["documentation"]}')]
    would = [r for r in caplog.records if r.getMessage().startswith("dry-run: would POST")]
    assert len(would) == 1
    assert would[0].ctx["delivery_id"] == delivery.delivery_id  # type: ignore[attr-defined]


async def test_dry_run_without_credentials_sends_nothing_at_all(github: respx.MockRouter) -> None:
    async with running_app(make_settings(None)) as app:
        assert app.runtime.settings.dry_run
        assert (await app.post(signed(app_payload("issues.opened"), "issues"))).status_code == 202
        await app.settle()
        assert app.runtime.gateway.dry_run_transport is not None
        assert len(app.runtime.gateway.dry_run_transport.writes) == 1
    assert github_calls(github) == []


async def test_events_sent_by_the_app_itself_are_ignored(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    no_config_anywhere(github)
    labels = github.post(LABELS_URL).mock(return_value=httpx.Response(200, json=[]))
    own = signed(issue_event(sender=f"{APP_SLUG}[bot]"), "issues")
    async with running_app(make_settings(private_key_pem)) as app:
        assert (await app.post(own)).status_code == 202
        await app.settle()
        assert app.runtime.runner.stats.own_events_skipped == 1
    assert labels.call_count == 0


async def test_identity_is_asked_again_until_known_and_bots_are_skipped_meanwhile(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    no_config_anywhere(github)
    labels = github.post(LABELS_URL).mock(return_value=httpx.Response(200, json=[]))
    outage = httpx.Response(502, json={"message": "Bad gateway"})
    github.routes["app"].mock(side_effect=[outage, outage, app_response()])
    own = issue_event(number=1, sender=f"{APP_SLUG}[bot]", labels=[])
    other_bot = issue_event(number=1, sender="other-app[bot]", labels=[])
    async with running_app(make_settings(private_key_pem)) as app:
        gateway, stats = app.runtime.gateway, app.runtime.runner.stats
        assert gateway.app_slug is None  # GitHub did not answer at start-up
        assert (await app.post(signed(own, "issues"))).status_code == 202
        assert (await app.post(signed(other_bot, "issues"))).status_code == 202
        await app.settle()
        assert stats.own_events_skipped == 2  # any bot may be this app while it is unknown
        await wait_for(lambda: gateway.app_slug == APP_SLUG, what="the identity", timeout=8)
        assert (await app.post(signed(own, "issues"))).status_code == 202
        assert (await app.post(signed(other_bot, "issues"))).status_code == 202
        await app.settle()
        assert stats.own_events_skipped == 3  # now only the app's own
    assert github.routes["app"].call_count == 3
    assert labels.call_count == 1  # the other bot's issue, once the app knew itself


async def test_catastrophic_pattern_in_a_repository_config_cannot_stall_the_app(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    github.get(config_url(REPO)).mock(
        return_value=httpx.Response(
            200, text="labeler:\n  rules:\n    - label: slow\n      pattern: '(a+)+$'\n"
        )
    )
    labels = github.post(LABELS_URL).mock(return_value=httpx.Response(200, json=[]))
    evil = signed(issue_event(title="x", body="a" * 50_000 + "b", labels=[]), "issues")
    async with running_app(make_settings(private_key_pem)) as app:
        assert (await app.post(evil)).status_code == 202
        await app.settle(timeout=5)
        health = await app.client.get(app.url + "/healthz")
        assert health.status_code == 200
        assert app.runtime.runner.stats.ok["labeler"] == 1
    assert labels.call_count == 0  # no match, and it finished


async def test_github_enterprise_base_url_is_used_for_every_call(private_key_pem: str) -> None:
    ghes = "https://ghes.example.test/api/v3"
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        app_route = router.get(f"{ghes}/app").mock(
            return_value=httpx.Response(200, json={"slug": "x"})
        )
        token = router.post(f"{ghes}/app/installations/42/access_tokens").mock(
            return_value=httpx.Response(
                201, json={"token": "t", "expires_at": "2099-01-01T00:00:00Z"}
            )
        )
        router.get(config_url(REPO, ghes)).mock(return_value=httpx.Response(404))
        router.get(config_url("Codertocat/.github", ghes)).mock(return_value=httpx.Response(404))
        labels = router.post(f"{ghes}/repos/{REPO}/issues/1/labels").mock(
            return_value=httpx.Response(200, json=[])
        )
        settings = make_settings(private_key_pem, GITHUB_API_URL=ghes)
        async with running_app(settings) as app:
            assert (
                await app.post(signed(app_payload("issues.opened"), "issues"))
            ).status_code == 202
            await app.settle()
        assert app_route.call_count == 1
        assert token.call_count == 1
        assert labels.call_count == 1
        assert all(c.request.url.host in ("ghes.example.test", "127.0.0.1") for c in router.calls)


async def test_event_whose_payload_predates_the_schema_is_still_processed(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    # GitHub's issues.edited example lacks fields githubkit's schema requires; no built-in
    # processor asks for the typed model, so it is never built and nothing is counted.
    no_config_anywhere(github)
    labels = github.post(LABELS_URL).mock(return_value=httpx.Response(200, json=[]))
    async with running_app(make_settings(private_key_pem)) as app:
        assert (await app.post(signed(app_payload("issues.edited"), "issues"))).status_code == 202
        await app.settle()
        assert app.runtime.runner.stats.unparseable == 0
        assert app.runtime.runner.stats.ok["labeler"] == 1
    assert json.loads(labels.calls.last.request.content) == {"labels": ["documentation"]}


def model_reader(
    seen: list[Any], events: tuple[str, ...], *, declared: bool
) -> Processor[ProcessorConfig]:
    """A processor that reads ``ctx.event`` into ``seen``, declaring it or not."""

    async def handle(ctx: Context[Any]) -> None:
        seen.append(ctx.event)

    return Processor(
        "reader", "reads ctx.event", events, ProcessorConfig, handle, reads_event_model=declared
    )


async def test_a_start_builds_the_parsers_of_the_processors_that_declare_reading_the_model_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The first build of a parser imports githubkit's models of the event: half a second of
    # CPU for ``issues``, which a start spends only for a processor that reads the model.
    monkeypatch.setattr(event_models, "_ADAPTERS", {})  # no parser built yet in this process
    caplog.set_level(logging.INFO, logger="github_app.event_models")
    async with running_app(make_settings(None)):  # the built-ins: none reads ctx.event
        assert event_models._ADAPTERS == {}
    seen: list[Any] = []
    declared = model_reader(seen, ("issue_comment.created",), declared=True)
    async with running_app(make_settings(None), registry=Registry([declared])) as app:
        assert set(event_models._ADAPTERS) == {"issue_comment"}  # before any delivery
        delivery = signed(app_payload("issue_comment.created"), "issue_comment")
        assert (await app.post(delivery)).status_code == 202
        await app.settle()
    assert [type(model).__name__ for model in seen] == ["WebhookIssueCommentCreated"]
    assert "built on first use" not in caplog.text


async def test_an_undeclared_reader_gets_the_model_built_on_first_use_and_the_log_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(event_models, "_ADAPTERS", {})
    caplog.set_level(logging.INFO, logger="github_app.event_models")
    seen: list[Any] = []
    registry = Registry([model_reader(seen, ("issues",), declared=False)])
    async with running_app(make_settings(None), registry=registry) as app:
        assert event_models._ADAPTERS == {}
        for _ in range(2):
            delivery = signed(app_payload("issues.opened"), "issues")
            assert (await app.post(delivery)).status_code == 202
            await app.settle()
    assert [type(model).__name__ for model in seen] == ["WebhookIssuesOpened"] * 2
    [line] = [r.getMessage() for r in caplog.records if "built on first use" in r.getMessage()]
    assert "'issues' events" in line and "reads_event_model=True" in line  # once, saying how


async def test_the_typed_event_is_built_once_per_event_and_only_for_a_processor_that_asks() -> None:
    seen: list[tuple[str, str, Any, Any]] = []

    def reader(name: str) -> Processor[ProcessorConfig]:
        async def handle(ctx: Context[Any]) -> None:
            seen.append((name, ctx.envelope.delivery_id, ctx.event, ctx.event))
            assert ctx.payload["issue"]["number"] == 1  # the decoded payload, always there

        return Processor(name, "reads ctx.event", ("issues",), ProcessorConfig, handle)

    opened = signed(app_payload("issues.opened"), "issues")
    edited = signed(app_payload("issues.edited"), "issues")  # predates the schema
    registry = Registry([reader("first"), reader("second")])
    async with running_app(make_settings(None), registry=registry) as app:
        for delivery in (opened, edited):
            assert (await app.post(delivery)).status_code == 202
            await app.settle()
        assert app.runtime.runner.stats.unparseable == 1  # once for the event, not per processor
        assert app.runtime.runner.stats.ok == {"first": 2, "second": 2}
    by_delivery = {(name, delivery): (a, b) for name, delivery, a, b in seen}
    first, again = by_delivery[("first", opened.delivery_id)]
    assert type(first).__name__ == "WebhookIssuesOpened" and first.issue.number == 1
    assert again is first and by_delivery[("second", opened.delivery_id)][0] is first
    assert by_delivery[("first", edited.delivery_id)] == (None, None)
    assert by_delivery[("second", edited.delivery_id)] == (None, None)
