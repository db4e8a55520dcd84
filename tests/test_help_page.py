"""``GET /help`` through the real server: public, escaped, script-free, and JSON on request."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Annotated, Any

import pytest

from github_app.dispatch.registry import Registry
from github_app.processor import Context, Processor, ProcessorConfig
from github_app.processor_help import CommandHelp, Doc, ProcessorHelp
from processors import BUILTINS
from tests.conftest import make_settings, running_app

pytestmark = pytest.mark.anyio

HOSTILE = '<script>alert("x")</script>'


@dataclass(frozen=True)
class HostileConfig(ProcessorConfig):
    label: Annotated[str, Doc(f"meaning {HOSTILE}")] = "<b>bold</b>"


async def _noop(ctx: Context[Any]) -> None:
    return None


HOSTILE_PROCESSOR = Processor(
    "hostile<i>",
    ProcessorHelp(
        description=f"Says {HOSTILE} and `<img src=x onerror=alert(1)>`.",
        details=(f"<a href='javascript:alert(1)'>{HOSTILE}</a>",),
        commands=(CommandHelp("x<y", "<arg>", HOSTILE, f"owners {HOSTILE}", "/x <y>"),),
        config_example=f"hostile:\n  label: {HOSTILE}\n",
    ),
    ("issues.opened",),
    HostileConfig,
    _noop,
    permissions={"issues": "<write>"},
)


async def test_help_page_is_public_and_lists_every_processor_command_and_who_may_use_it() -> None:
    async with running_app(make_settings(None, ADMIN_TOKEN="a" * 32)) as app:
        response = await app.client.get(app.url + "/help")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "auto-issue-processor: what it does here" in page
    for processor in BUILTINS:
        record = processor.describe()
        assert f'<section id="{record.name}"><h2>{record.name}</h2>' in page
        for key in record.config:
            assert f"<td><code>{key.key}</code></td>" in page
    for command in BUILTINS[3].help.commands:
        assert f"<code>{html.escape(command.usage)}</code>" in page
    assert "<code>/assign me</code> on an issue they opened" in page
    assert "people with triage access or more to the repository" in page


async def test_help_page_allows_only_its_own_style_and_no_script() -> None:
    async with running_app(make_settings(None)) as app:
        first = await app.client.get(app.url + "/help")
        second = await app.client.get(app.url + "/help")
    policy = first.headers["content-security-policy"]
    nonce = re.search(r"style-src 'nonce-([^']+)'", policy)
    assert nonce is not None
    assert "default-src 'none'" in policy
    assert "script-src" not in policy  # default-src 'none' forbids every script
    assert f'<style nonce="{nonce.group(1)}">' in first.text
    assert nonce.group(1) not in second.headers["content-security-policy"]
    assert "<script" not in first.text
    assert first.headers["x-content-type-options"] == "nosniff"


async def test_help_page_escapes_every_text_of_a_help_record() -> None:
    registry = Registry([*BUILTINS, HOSTILE_PROCESSOR])
    async with running_app(make_settings(None), registry=registry) as app:
        page = (await app.client.get(app.url + "/help")).text
    assert "<script" not in page
    assert "<img" not in page
    assert "<a href='javascript" not in page
    assert "<b>" not in page and "<i>" not in page
    assert html.escape(HOSTILE) in page
    assert "<code>&lt;img src=x onerror=alert(1)&gt;</code>" in page
    assert '<section id="hostile&lt;i&gt;">' in page
    assert "issues: &lt;write&gt;" in page


async def test_help_answers_json_when_asked() -> None:
    async with running_app(make_settings(None)) as app:
        response = await app.client.get(app.url + "/help", headers={"accept": "application/json"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert [p["name"] for p in document["processors"]] == [p.name for p in BUILTINS]
    commands = next(p for p in document["processors"] if p["name"] == "commands")
    assert commands["enabled_by_default"] is False
    assert "issue_comment.created" in commands["events"]
    assert {"name": "close", "usage": "/close"}.items() <= commands["commands"][4].items()
    labeler = document["processors"][0]
    assert labeler["config"][0] == {
        "key": "enabled",
        "default": "true",
        "meaning": "on by default; `labeler: false` turns it off",
        "default_is_prose": False,
    }


async def test_a_browser_asking_for_html_first_gets_the_page() -> None:
    accept = "text/html,application/xhtml+xml,application/json;q=0.9,*/*;q=0.8"
    async with running_app(make_settings(None)) as app:
        response = await app.client.get(app.url + "/help", headers={"accept": accept})
    assert response.headers["content-type"].startswith("text/html")


async def test_help_is_get_only() -> None:
    async with running_app(make_settings(None)) as app:
        response = await app.client.post(app.url + "/help")
    assert response.status_code == 405
