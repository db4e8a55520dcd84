"""The /admin dashboard in a real headless browser (Debian's chromium) against a real server.

Marked ``browser``: skipped when no chromium is installed, except where
``REQUIRE_BROWSER`` is set (``.ci/run`` installs chromium and sets it).
Run these alone with ``python -m pytest -m browser``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx

from tests.chromium import DevTools, devtools, find_browser, rendered_dom
from tests.conftest import (
    API,
    RunningApp,
    config_url,
    make_settings,
    running_app,
    token_response,
    wait_for,
)
from tests.dashboard_samples import synthetic_sample
from tests.deliveries import INSTALLATION_ID, issue_event, signed
from tests.fake_hook_log import FakeHookLog

pytestmark = [pytest.mark.anyio, pytest.mark.browser]

ADMIN = "browser-admin-token-0123456789"
REPO = "Codertocat/Hello-World"
OTHER_INSTALLATION = INSTALLATION_ID + 1
FAILING_ISSUE = 99
CHARTS = ("chart-depth", "chart-throughput", "chart-latency", "chart-width", "chart-github")

POINTS = (
    "Object.fromEntries([...document.querySelectorAll('svg.chart')]"
    ".map((svg) => [svg.id, Number(svg.dataset.points)]))"
)
TILES = (
    "Object.fromEntries([...document.querySelectorAll('#headline .tile')]"
    ".map((t) => [t.dataset.tile, t.innerText]))"
)


def rows(body_id: str) -> str:
    return (
        f"[...document.querySelectorAll('#{body_id} tr')]"
        ".map((row) => [...row.cells].map((cell) => cell.textContent))"
    )


def fake_github_with_budget(github: respx.MockRouter, failing: set[int]) -> respx.Route:
    """Label writes answered with a shrinking budget; issues in ``failing`` answer 502."""
    github.post(f"{API}/app/installations/{OTHER_INSTALLATION}/access_tokens").mock(
        side_effect=lambda request: token_response()
    )
    github.get(config_url(REPO)).mock(return_value=httpx.Response(404))
    github.get(config_url("Codertocat/.github")).mock(return_value=httpx.Response(404))
    remaining = {INSTALLATION_ID: 5000, OTHER_INSTALLATION: 5000}
    reset = str(int(time.time()) + 1800)

    def answer(request: httpx.Request) -> httpx.Response:
        number = int(request.url.path.split("/")[-2])
        if number in failing:
            return httpx.Response(502, json={"message": "Bad gateway"})
        installation = OTHER_INSTALLATION if number > 40 else INSTALLATION_ID
        remaining[installation] -= 1
        headers = {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": str(remaining[installation]),
            "x-ratelimit-reset": reset,
        }
        return httpx.Response(200, json=[], headers=headers)

    return github.post(url__regex=rf"{API}/repos/{REPO}/issues/\d+/labels").mock(side_effect=answer)


async def burst(app: RunningApp) -> None:
    """40 events of one installation, 10 of another, and one that is dead-lettered."""
    for number in range(1, 51):
        installation = OTHER_INSTALLATION if number > 40 else INSTALLATION_ID
        event = issue_event("opened", number=number, installation_id=installation)
        assert (await app.post(signed(event, "issues"))).status_code == 202
    dead = signed(issue_event("opened", number=FAILING_ISSUE), "issues")
    assert (await app.post(dead)).status_code == 202
    await app.settle()
    samples = app.runtime.sampler.history
    drained = samples.next_seq
    await wait_for(lambda: samples.next_seq > drained + 2, what="samples after the burst")
    assert len(app.runtime.queue.list_dead_letters()) == 1


async def in_browser(profile: Path, scenario: Callable[[DevTools], Any]) -> Any:
    """Run ``scenario`` against one headless chromium in a worker thread (the server goes on)."""
    browser = find_browser()

    def run() -> Any:
        with devtools(browser, profile) as tools:
            return scenario(tools)

    with anyio.fail_after(120):
        return await anyio.to_thread.run_sync(run)


async def test_dashboard_draws_a_burst_and_redrives_a_dead_letter_from_the_page(
    github: respx.MockRouter, private_key_pem: str, tmp_path: Path
) -> None:
    find_browser()  # before the server's task group, which would wrap a skip
    failing = {FAILING_ISSUE}
    labels = fake_github_with_budget(github, failing)
    settings = make_settings(private_key_pem, ADMIN_TOKEN=ADMIN, RETRY_ATTEMPTS="1")
    async with running_app(settings, history_interval=0.1) as app:
        await burst(app)
        seen: dict[str, Any] = {}

        def scenario(tools: DevTools) -> None:
            tools.navigate(f"{app.url}/admin#token={ADMIN}")
            tools.wait_for("document.querySelectorAll('#dead-letters button').length === 1")
            seen["points"] = tools.evaluate(POINTS)
            seen["tiles"] = tools.evaluate(TILES)
            seen["installations"] = tools.evaluate(rows("installations"))
            seen["dead_letters"] = tools.evaluate(rows("dead-letters"))
            seen["processed"] = tools.evaluate("Math.max(...state.series.processed_per_s)")
            seen["banner"] = tools.evaluate("document.getElementById('banner').textContent")
            failing.clear()  # GitHub is back: the redriven event will go through
            tools.evaluate("document.querySelector('#dead-letters button').click()")
            seen["result"] = tools.wait_for(
                "document.querySelector('#dead-letters td.empty') &&"
                " document.getElementById('dead-letter-result').textContent"
            )
            seen["address"] = tools.evaluate("location.href")
            seen["html"] = tools.evaluate("document.documentElement.outerHTML")
            seen["errors"] = tools.console_errors()
            seen["urls"] = tools.requested_urls()

        await in_browser(tmp_path / "profile", scenario)
        await app.settle()
        assert app.runtime.queue.stats().redriven == 1
        issue_99 = [c for c in labels.calls if f"/issues/{FAILING_ISSUE}/" in c.request.url.path]
        assert [c.response.status_code for c in issue_99] == [502, 200]

    assert seen["banner"] == "ready: accepting work"
    assert set(seen["points"]) == set(CHARTS)
    assert all(points >= 3 for points in seen["points"].values()), seen["points"]
    assert seen["processed"] > 0
    tiles = seen["tiles"]
    assert "4,9" in tiles["budget"] and "/ 5,000" in tiles["budget"]  # 4,960 left of 5,000
    assert "installation 42" in tiles["budget"]
    assert re.search(r"\bnothing waiting\b", tiles["queue"])
    assert re.fullmatch(r"\d+", tiles["width"].splitlines()[1])  # the controller moves it
    # Sorted by activity: 42 wrote 40 labels in the last minute, 43 wrote 10.
    installations = seen["installations"]
    assert [row[0] for row in installations] == ["42", "43"]
    assert installations[0][2] == "41"  # label writes, the one answered 502 too
    assert installations[1][2] == "10"
    assert int(installations[0][1]) >= 41
    assert "/ 5,000" in installations[0][3] and installations[0][4].startswith("in ")
    [dead] = seen["dead_letters"]
    assert dead[1] == "issues.opened" and dead[2] == f"{REPO} #{FAILING_ISSUE}"
    assert dead[3] == "exhausted" and "502" in dead[4] and dead[5].endswith("ago")
    assert seen["result"].startswith("redriven ")
    assert seen["errors"] == []
    assert seen["urls"] and all(url.startswith(app.url + "/admin") for url in seen["urls"])
    assert ADMIN not in seen["address"] and ADMIN not in seen["html"]


async def test_purge_from_the_page_asks_first_and_does_nothing_when_declined(
    github: respx.MockRouter, private_key_pem: str, tmp_path: Path
) -> None:
    find_browser()
    fake_github_with_budget(github, {FAILING_ISSUE})
    settings = make_settings(private_key_pem, ADMIN_TOKEN=ADMIN, RETRY_ATTEMPTS="1")
    async with running_app(settings, history_interval=0.1) as app:
        await burst(app)
        seen: dict[str, Any] = {}

        def scenario(tools: DevTools) -> None:
            tools.navigate(f"{app.url}/admin#token={ADMIN}")
            tools.wait_for("document.querySelectorAll('#dead-letters button').length === 1")
            tools.accept_dialogs = False
            tools.evaluate("document.getElementById('purge').click()")
            seen["declined"] = [
                e["params"]["message"]
                for e in tools.events
                if e["method"] == "Page.javascriptDialogOpening"
            ]
            seen["after_declining"] = tools.evaluate(
                "document.getElementById('dead-letter-result').textContent"
            )
            tools.accept_dialogs = True
            tools.evaluate("document.getElementById('purge').click()")
            seen["result"] = tools.wait_for(
                "document.querySelector('#dead-letters td.empty') &&"
                " document.getElementById('dead-letter-result').textContent"
            )
            seen["errors"] = tools.console_errors()

        await in_browser(tmp_path / "profile", scenario)
        stats = app.runtime.queue.stats().dead_letters
    assert seen["declined"] == [
        "Purge 1 dead letter(s)? They are deleted for good and cannot be redriven."
    ]
    assert seen["after_declining"] == ""
    assert seen["result"] == "1 purged"
    assert stats is not None and (stats.purged, stats.depth) == (1, 0)
    assert seen["errors"] == []


async def test_one_hour_of_history_is_drawn_whole_and_its_render_time_is_measured(
    tmp_path: Path,
) -> None:
    find_browser()
    offset = [-3600.0]
    clock: Callable[[], float] = lambda: time.time() + offset[0]  # noqa: E731
    async with running_app(make_settings(None, ADMIN_TOKEN=ADMIN), clock=clock) as app:
        history = app.runtime.sampler.history
        hour = history.capacity
        for index in range(hour):  # an hour of 2-second samples, ending now
            history.record(synthetic_sample(index))
            if index % 100 == 50:
                history.mark("grow 8 \u2192 12", "throughput rose 20% at width 8")
            offset[0] += 3600.0 / hour
        seen: dict[str, Any] = {}

        def scenario(tools: DevTools) -> None:
            tools.navigate(f"{app.url}/admin#token={ADMIN}")
            tools.wait_for("window.renderTimes.length >= 2")
            seen["points"] = tools.evaluate(POINTS)
            seen["samples"] = tools.evaluate(POINTS.replace("points", "samples"))
            seen["times"] = tools.evaluate("window.renderTimes")
            seen["marks"] = tools.evaluate("document.querySelectorAll('#chart-width title').length")
            seen["errors"] = tools.console_errors()

        await in_browser(tmp_path / "profile", scenario)
    assert hour == 1800
    # Every sample of the hour is in the charts (the sampler's own samples taken while the
    # page loads push the oldest few out of the hour); at most one per horizontal unit is
    # drawn, so a series has a few hundred points, not 1,800.
    for chart, series in (("chart-depth", 4), ("chart-latency", 2), ("chart-width", 2)):
        assert hour - 10 <= seen["samples"][chart] <= hour, chart
        assert 300 * series <= seen["points"][chart] <= 560 * series, chart
    assert 17 <= seen["marks"] <= 18
    assert all(isinstance(ms, int | float) and ms >= 0 for ms in seen["times"])
    assert seen["errors"] == []


async def test_admin_page_says_when_the_token_is_refused(tmp_path: Path) -> None:
    browser = find_browser()
    async with running_app(make_settings(None, ADMIN_TOKEN=ADMIN)) as app:
        url = f"{app.url}/admin#token=wrong"
        dom = await rendered_dom(browser, url, tmp_path / "profile", budget_ms=2000)
    assert "the admin token was refused" in dom
    assert re.search(r'<main id="dashboard" hidden', dom)
    assert re.search(r'<form id="login"(?! hidden)', dom)


async def test_the_recovery_panel_shows_the_last_round(
    github: respx.MockRouter, private_key_pem: str, tmp_path: Path
) -> None:
    browser = find_browser()
    hook_log = FakeHookLog(github)
    hook_log.log("lost-while-down", status_code=0)
    hook_log.log("delivered", status_code=202)
    settings = make_settings(private_key_pem, ADMIN_TOKEN=ADMIN, RECOVERY_INTERVAL="300")
    async with running_app(settings) as app:
        recovery = app.runtime.recovery
        await wait_for(lambda: recovery.stats().rounds >= 1, what="the first recovery round")
        url = f"{app.url}/admin#token={ADMIN}"
        dom = await rendered_dom(browser, url, tmp_path / "profile", budget_ms=3000)
    panel = re.search(r'<div id="recovery"[^>]*>(.*?)</section>', dom, re.S)
    assert panel is not None
    text = re.sub(r"<[^>]+>", " ", panel.group(1))
    assert "last round" in text and "2 attempts read" in text
    assert "1 failed" in text and "1 requested" in text and "complete" in text
    assert "on their way 1" in text
