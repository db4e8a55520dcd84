"""The /admin page in a real headless browser (Debian's chromium): it renders and refreshes itself.

Marked ``browser``: skipped when no chromium is installed, except where
``REQUIRE_BROWSER`` is set (``.ci/run`` installs chromium and sets it).
Run these alone with ``python -m pytest -m browser``.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import anyio
import pytest

from github_app import __version__
from tests.conftest import make_settings, running_app
from tests.deliveries import issue_event, signed

pytestmark = [pytest.mark.anyio, pytest.mark.browser]

ADMIN = "browser-admin-token-0123456789"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    message = "no headless chromium installed (Debian: apt-get install chromium)"
    if os.environ.get("REQUIRE_BROWSER"):
        pytest.fail(message)
    pytest.skip(message)


async def rendered_dom(browser: str, url: str, profile: Path, *, budget_ms: int = 7000) -> str:
    """The page's DOM after ``budget_ms`` of virtual time (its timers run, fetches complete)."""
    command = [
        browser,
        "--headless=new",
        "--no-sandbox",  # CI containers run as root
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--virtual-time-budget={budget_ms}",
        "--dump-dom",
        url,
    ]
    with anyio.fail_after(60):
        result = await anyio.run_process(command, check=True)
    return result.stdout.decode("utf-8")


def cell(dom: str, key: str) -> str | None:
    found = re.search(rf'data-key="{re.escape(key)}"[^>]*>([^<]*)<', dom)
    return found.group(1) if found else None


async def test_admin_page_shows_the_status_and_refreshes_itself(tmp_path: Path) -> None:
    browser = find_browser()  # before the server's task group, which would wrap a skip
    async with running_app(make_settings(None, ADMIN_TOKEN=ADMIN)) as app:
        await app.post(signed(issue_event("opened", title="It crashes"), "issues"))
        await app.settle()
        dom = await rendered_dom(browser, f"{app.url}/admin#token={ADMIN}", tmp_path / "profile")
    assert re.search(r'id="banner" class="ready">ready: accepting work<', dom)
    assert cell(dom, "app.version") == f'"{__version__}"'
    assert cell(dom, "totals.processed") == "1"
    assert cell(dom, "processors.by_processor.labeler.ok") == "1"
    assert cell(dom, "queue.depth_by_priority.HIGH") == "0"
    assert cell(dom, "controller.width") == "4"  # the width controller starts there
    refreshes = re.search(r'id="refreshes">(\d+)<', dom)
    assert refreshes is not None and int(refreshes.group(1)) >= 2  # every 3 s of 7 s
    assert ADMIN not in dom  # the token left the address bar and never entered the page


async def test_admin_page_says_when_the_token_is_refused(tmp_path: Path) -> None:
    browser = find_browser()
    async with running_app(make_settings(None, ADMIN_TOKEN=ADMIN)) as app:
        url = f"{app.url}/admin#token=wrong"
        dom = await rendered_dom(browser, url, tmp_path / "profile", budget_ms=2000)
    assert "the admin token was refused" in dom
    assert 'data-key="app.version"' not in dom
    assert re.search(r'<form id="login"(?! hidden)', dom)
