"""The manifest flow through the real server, with GitHub's conversion endpoint faked by respx."""

from __future__ import annotations

import html
import json
import os
import re
import stat
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from github_app.admin.setup_flow import web_url, write_credentials
from github_app.config import load_settings
from github_app.errors import SettingsError
from tests.conftest import API, RunningApp, make_settings, running_app

pytestmark = pytest.mark.anyio

CODE = "a1b2c3d4e5"
CONVERSION = f"{API}/app-manifests/{CODE}/conversions"
WEBHOOK_SECRET = "e3b0c44298fc1c149afbf4c8996fb924"


def conversion_answer(pem: str, **changes: Any) -> httpx.Response:
    """GitHub's documented 201 answer to ``POST /app-manifests/{code}/conversions``."""
    body = {
        "id": 424242,
        "slug": "auto-issue-processor-octo-org",
        "node_id": "MDM6QXBwNTk=",
        "owner": {"login": "octo-org", "id": 1, "type": "Organization"},
        "name": "auto-issue-processor-octo-org",
        "description": "",
        "external_url": "https://example.test",
        "html_url": "https://github.com/apps/auto-issue-processor-octo-org",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "permissions": {"issues": "write", "metadata": "read", "contents": "read"},
        "events": ["issues", "issue_comment", "push"],
        "client_id": "Iv1.8a61f9b3a7aba766",
        "client_secret": "1726be1638095a19edd134c77bde3aa2ece1e5d8",
        "webhook_secret": WEBHOOK_SECRET,
        "pem": pem,
    }
    return httpx.Response(201, json={**body, **changes})


def setup_forms(page: str) -> tuple[str, dict[str, Any]]:
    """The POST form's action (GitHub's new-app URL) and the manifest it posts."""
    action = re.search(r'<form method="post" action="([^"]+)"', page)
    manifest = re.search(r'name="manifest" value="([^"]+)"', page)
    assert action is not None and manifest is not None
    return html.unescape(action.group(1)), json.loads(html.unescape(manifest.group(1)))


def unconfigured(tmp_path: Path, **env: str) -> Any:
    return make_settings(None, **env), {"env_file": tmp_path / ".env"}


def setup_token(app: RunningApp) -> str:
    """The token ``serve`` prints on the console."""
    token: str = app.server.config.app.state.setup.token
    return token


async def issued_state(app: RunningApp, **params: str) -> str:
    """The ``state`` a fresh ``/setup`` page sends to GitHub (the operator's browser asks)."""
    page = await app.client.get(app.url + "/setup", params=params)
    return parse_qs(urlsplit(setup_forms(page.text)[0]).query)["state"][0]


async def as_operator(app: RunningApp, client: httpx.AsyncClient | None = None) -> httpx.Response:
    """Present the setup token as the operator's browser does; the client keeps the cookie."""
    client = client or app.client
    answer = await client.get(app.url + "/setup", params={"token": setup_token(app)})
    assert answer.status_code == 303, answer.text
    return answer


async def test_setup_page_posts_the_manifest_to_the_orgs_new_app_page_with_this_servers_urls(
    tmp_path: Path,
) -> None:
    settings, options = unconfigured(tmp_path)
    async with running_app(settings, **options) as app:
        await as_operator(app)
        page = await app.client.get(app.url + "/setup", params={"org": "octo-org"})
    assert page.status_code == 200
    action, manifest = setup_forms(page.text)
    parts = urlsplit(action)
    assert f"{parts.scheme}://{parts.netloc}" == "https://github.com"
    assert parts.path == "/organizations/octo-org/settings/apps/new"
    assert parse_qs(parts.query)["state"][0]
    assert manifest["hook_attributes"]["url"] == app.url + "/api/github/webhooks"
    assert manifest["redirect_url"] == app.url + "/setup/callback"
    assert manifest["url"] == app.url
    assert manifest["name"] == "auto-issue-processor-octo-org"
    assert manifest["public"] is False
    assert manifest["default_permissions"]["issues"] == "write"
    assert "GitHub cannot reach" in page.text  # 127.0.0.1 is not reachable from GitHub


async def test_setup_for_a_personal_account_uses_public_url_and_a_chosen_name(
    tmp_path: Path,
) -> None:
    settings, options = unconfigured(tmp_path, PUBLIC_URL="https://hooks.example.com/")
    async with running_app(settings, **options) as app:
        await as_operator(app)
        page = await app.client.get(app.url + "/setup", params={"name": "triage bot"})
        bad_org = await app.client.get(app.url + "/setup", params={"org": "not/an org"})
    action, manifest = setup_forms(page.text)
    assert urlsplit(action).path == "/settings/apps/new"
    assert manifest["hook_attributes"]["url"] == "https://hooks.example.com/api/github/webhooks"
    assert manifest["redirect_url"] == "https://hooks.example.com/setup/callback"
    assert manifest["name"] == "triage bot"
    assert "GitHub cannot reach" not in page.text
    assert bad_org.status_code == 400
    assert "not a GitHub organisation name" in html.unescape(bad_org.text)


def test_github_web_address_follows_the_api_url() -> None:
    assert web_url("https://api.github.com") == "https://github.com"
    assert web_url("https://ghe.example.com/api/v3") == "https://ghe.example.com"
    assert web_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080"


async def test_callback_exchanges_the_code_and_writes_env_and_a_0600_key_file(
    tmp_path: Path, github: respx.MockRouter, private_key_pem: str
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("LOG_LEVEL=DEBUG\nWEBHOOK_SECRET=old-secret\n", "utf-8")
    conversion = github.post(CONVERSION).mock(return_value=conversion_answer(private_key_pem))
    settings, options = unconfigured(tmp_path)
    async with running_app(settings, **options) as app:
        await as_operator(app)
        state = await issued_state(app, org="octo-org")
        done = await app.client.get(
            app.url + "/setup/callback", params={"code": CODE, "state": state}
        )
        again = await app.client.get(app.url + "/setup")
    assert done.status_code == 200, done.text
    assert conversion.call_count == 1
    assert "https://github.com/apps/auto-issue-processor-octo-org/installations/new" in done.text
    assert "Restart" in done.text
    for secret in (private_key_pem, WEBHOOK_SECRET, "1726be1638095a19edd134c77bde3aa2ece1e5d8"):
        assert secret not in done.text
    assert "installations/new" in again.text  # /setup now says what is left to do

    key_file = tmp_path / "auto-issue-processor-octo-org.private-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert key_file.read_text("utf-8") == private_key_pem
    written = load_settings({}, env_file=env_file)
    assert written.has_credentials
    assert written.app_id == 424242
    assert written.private_key is not None
    assert written.private_key.get_secret_value() == private_key_pem
    assert written.webhook_secret.get_secret_value() == WEBHOOK_SECRET
    assert written.log_level == "DEBUG"  # the file's other settings are kept
    assert env_file.read_text("utf-8").count("WEBHOOK_SECRET=") == 1


async def test_forged_or_replayed_state_is_refused_and_nothing_is_written(
    tmp_path: Path, github: respx.MockRouter, private_key_pem: str
) -> None:
    conversion = github.post(CONVERSION).mock(return_value=conversion_answer(private_key_pem))
    settings, options = unconfigured(tmp_path)
    async with running_app(settings, **options) as app:
        await as_operator(app)
        callback = app.url + "/setup/callback"
        forged = await app.client.get(callback, params={"code": CODE, "state": "made-up"})
        missing = await app.client.get(callback, params={"code": CODE})
        state = await issued_state(app)
        used = await app.client.get(callback, params={"code": CODE, "state": state})
        replayed = await app.client.get(callback, params={"code": CODE, "state": state})
    assert forged.status_code == 403
    assert missing.status_code == 403
    assert used.status_code == 200
    assert replayed.status_code == 403
    assert conversion.call_count == 1


async def test_expired_code_is_explained_and_nothing_is_written(
    tmp_path: Path, github: respx.MockRouter
) -> None:
    github.post(CONVERSION).mock(return_value=httpx.Response(404, json={"message": "Not Found"}))
    settings, options = unconfigured(tmp_path)
    async with running_app(settings, **options) as app:
        await as_operator(app)
        state = await issued_state(app)
        answer = await app.client.get(
            app.url + "/setup/callback", params={"code": CODE, "state": state}
        )
    assert answer.status_code == 502
    assert "expired" in answer.text
    assert os.listdir(tmp_path) == []


async def test_setup_is_not_served_when_the_app_has_credentials(
    tmp_path: Path, github: respx.MockRouter, private_key_pem: str
) -> None:
    async with running_app(make_settings(private_key_pem), env_file=tmp_path / ".env") as app:
        assert (await app.client.get(app.url + "/setup")).status_code == 404
        callback = await app.client.get(app.url + "/setup/callback", params={"code": CODE})
        assert callback.status_code == 404


def test_without_a_webhook_secret_from_github_one_is_generated_and_the_page_says_so(
    tmp_path: Path, private_key_pem: str
) -> None:
    data = json.loads(conversion_answer(private_key_pem, webhook_secret=None).content)
    created = write_credentials(data, tmp_path / ".env")
    assert created.secret_generated
    written = load_settings({}, env_file=tmp_path / ".env")
    assert len(written.webhook_secret.get_secret_value()) == 40
    assert not written.webhook_secret_generated


def test_credentials_written_under_a_path_with_quotes_and_backslashes_load_back(
    tmp_path: Path, private_key_pem: str
) -> None:
    env_file = tmp_path / 'odd "dir" \\ with \\n' / ".env"
    env_file.parent.mkdir()
    env_file.write_text("HOST=127.0.0.1\n", encoding="utf-8")
    created = write_credentials(json.loads(conversion_answer(private_key_pem).content), env_file)
    written = load_settings({}, env_file=env_file)
    assert written.private_key_path == created.key_path
    assert written.private_key is not None
    assert written.private_key.get_secret_value() == private_key_pem
    assert written.host == "127.0.0.1"  # the lines that were there are kept


def test_public_url_must_be_an_http_url() -> None:
    with pytest.raises(SettingsError, match="PUBLIC_URL must be an http"):
        make_settings(None, PUBLIC_URL="hooks.example.com")


async def test_setup_is_refused_without_the_console_token_and_the_token_works_once(
    tmp_path: Path, github: respx.MockRouter, private_key_pem: str
) -> None:
    conversion = github.post(CONVERSION).mock(return_value=conversion_answer(private_key_pem))
    settings, options = unconfigured(tmp_path)
    async with running_app(settings, **options) as app:
        stranger = await app.client.get(app.url + "/setup")
        callback = await app.client.get(
            app.url + "/setup/callback", params={"code": CODE, "state": "x"}
        )
        wrong = await app.client.get(app.url + "/setup", params={"token": "guess"})
        admitted = await as_operator(app)
        async with httpx.AsyncClient() as other_browser:
            reused = await other_browser.get(app.url + "/setup", params={"token": setup_token(app)})
            still_out = await other_browser.get(app.url + "/setup")
        page = await app.client.get(app.url + "/setup")
    assert stranger.status_code == 403
    assert "console" in stranger.text
    assert "state=" not in stranger.text and "manifest" not in stranger.text
    assert callback.status_code == 403
    assert wrong.status_code == 403
    assert reused.status_code == 403
    assert still_out.status_code == 403
    assert page.status_code == 200 and "manifest" in page.text
    cookie = admitted.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/setup" in cookie
    assert admitted.headers["location"] == "/setup"  # the token leaves the address bar
    assert conversion.call_count == 0
    assert os.listdir(tmp_path) == []


async def test_token_link_keeps_the_other_query_parameters(tmp_path: Path) -> None:
    settings, options = unconfigured(tmp_path)
    async with running_app(settings, **options) as app:
        answer = await app.client.get(
            app.url + "/setup", params={"token": setup_token(app), "org": "octo-org"}
        )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/setup?org=octo-org"


async def test_callbacks_are_refused_once_the_app_was_created(
    tmp_path: Path, github: respx.MockRouter, private_key_pem: str
) -> None:
    conversion = github.post(CONVERSION).mock(return_value=conversion_answer(private_key_pem))
    settings, options = unconfigured(tmp_path)
    async with running_app(settings, **options) as app:
        await as_operator(app)
        states = [await issued_state(app), await issued_state(app)]
        callback = app.url + "/setup/callback"
        first = await app.client.get(callback, params={"code": CODE, "state": states[0]})
        written = (tmp_path / ".env").read_text("utf-8")
        second = await app.client.get(callback, params={"code": "other", "state": states[1]})
    assert first.status_code == 200
    assert second.status_code == 409
    assert conversion.call_count == 1
    assert (tmp_path / ".env").read_text("utf-8") == written
