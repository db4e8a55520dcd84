"""One repository's config push must not cost the other tenants anything (issue 13, item 1).

Through the real server: a config is read off the event loop (``/healthz``
answers while it is being validated), and an alias bomb is refused with one
error instead of blocking the loop and flooding the log and ``/admin/status``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import pytest
import respx
from pydantic import AfterValidator

from github_app.dispatch.registry import Registry
from github_app.dispatch.repo_config import MAX_CONFIG_BYTES
from github_app.processor import Context, Processor, ProcessorConfig
from processors import BUILTINS
from tests.conftest import config_url, github_calls, make_settings, running_app, wait_for
from tests.deliveries import issue_event, signed
from tests.processor_helpers import ISSUE_URL, REPO, use_config

pytestmark = pytest.mark.anyio

ADMIN = "admin-token-for-tests"
LABELS = ["bug", "documentation", "enhancement"]  # the default rules have nothing to add
validating = threading.Event()
release = threading.Event()
released_in_time: list[bool] = []
seen: list[bool] = []


def _held(value: bool) -> bool:
    """Validation that waits for the test: on the event loop it could never be released."""
    validating.set()
    released_in_time.append(release.wait(10.0))
    return value


@dataclass(frozen=True)
class HeldConfig(ProcessorConfig):
    hold: Annotated[bool, AfterValidator(_held)] = False


async def _record(ctx: Context[HeldConfig]) -> None:
    seen.append(ctx.config.hold)


HELD = Processor("held", "validates slowly", ("issues",), HeldConfig, _record)


async def test_healthz_answers_while_a_config_is_being_validated(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    validating.clear()
    release.clear()
    released_in_time.clear()
    seen.clear()
    use_config(github, "held:\n  hold: true\n")
    async with running_app(make_settings(private_key_pem), registry=Registry([HELD])) as app:
        assert (await app.post(signed(issue_event(), "issues"))).status_code == 202
        await wait_for(validating.is_set, what="the config's validation to start")
        health = await app.client.get(app.url + "/healthz")
        release.set()
        await app.settle()
    assert health.status_code == 200
    assert released_in_time == [True]  # the loop answered while validation waited
    assert seen == [True]


def alias_bomb(rules: int = 100, width: int = 1000) -> str:
    """The issue's reproduction: every rule aliases one list of ``width`` keywords."""
    words = ", ".join(str(i) for i in range(width))
    lines = ["words: &k [" + words + "]", "labeler:", "  rules:"]
    lines += [f"    - {{label: l{i}, keywords: *k}}" for i in range(rules)]
    return "\n".join(lines) + "\n"


async def test_an_alias_bomb_is_one_error_and_the_events_run_with_defaults(
    github: respx.MockRouter, private_key_pem: str, caplog: pytest.LogCaptureFixture
) -> None:
    use_config(github, alias_bomb())
    labels = github.post(f"{ISSUE_URL}/1/labels").mock(return_value=httpx.Response(200, json=[]))
    settings = make_settings(private_key_pem, ADMIN_TOKEN=ADMIN, DRY_RUN="false")
    caplog.set_level(logging.ERROR, logger="github_app.dispatch.repo_config")
    async with running_app(settings, registry=Registry(BUILTINS)) as app:
        delivery = signed(issue_event(title="it crashes", labels=[]), "issues")
        assert (await app.post(delivery)).status_code == 202
        await app.settle()
        status = (
            await app.client.get(
                app.url + "/admin/status", headers={"Authorization": f"Bearer {ADMIN}"}
            )
        ).json()
    [error] = status["config_errors"][REPO]
    assert "anchors" in error and "line 1" in error
    config_lines = [r for r in caplog.records if r.name == "github_app.dispatch.repo_config"]
    assert len(config_lines) == 2  # the error, and that the defaults apply
    # The default rules applied: "crashes" is one of the bug keywords.
    assert labels.call_count == 1
    body: Any = labels.calls[0].request.content
    assert b"bug" in body


@pytest.mark.parametrize("etag", [None, '"v1"'])
async def test_a_huge_config_file_is_cut_at_the_cap_and_never_read_whole(
    github: respx.MockRouter, private_key_pem: str, etag: str | None
) -> None:
    sent: list[int] = []

    async def hundred_megabytes() -> AsyncIterator[bytes]:
        chunk = b"# " + b"x" * (64 * 1024 - 3) + b"\n"
        for _ in range(1600):
            sent.append(len(chunk))
            yield chunk

    headers = {"etag": etag} if etag else {}
    github.get(config_url(REPO)).mock(
        side_effect=lambda request: httpx.Response(
            200, headers=headers, content=hundred_megabytes()
        )
    )
    async with running_app(make_settings(private_key_pem), registry=Registry(BUILTINS)) as app:
        assert (await app.post(signed(issue_event(labels=LABELS), "issues"))).status_code == 202
        await app.settle()
        errors = app.runtime.configs.errors[REPO]
    assert errors == (f"file is larger than {MAX_CONFIG_BYTES // 1024} KiB",)
    assert sum(sent) < 2 * 1024 * 1024  # of 100 MB: what the cap, and a cache slot, need


@pytest.mark.parametrize("extends", ["../../../orgs/octo", "octo/repo?ref=x", "a/b/c", "..", ""])
async def test_extends_that_is_not_a_github_name_is_an_error_and_fetches_nothing(
    github: respx.MockRouter, private_key_pem: str, extends: str
) -> None:
    use_config(github, f"_extends: '{extends}'\nlabeler:\n  enabled: false\n")
    async with running_app(make_settings(private_key_pem), registry=Registry(BUILTINS)) as app:
        assert (await app.post(signed(issue_event(labels=LABELS), "issues"))).status_code == 202
        await app.settle()
        errors = app.runtime.configs.errors[REPO]
    assert len(errors) == 1 and errors[0].startswith("_extends: must be 'repo' or 'owner/repo'")
    reads = [path for method, path in github_calls(github) if method == "GET"]
    assert reads == ["/app", f"/repos/{REPO}/contents/.github/auto-issue-processor.yml"]
