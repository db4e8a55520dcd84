"""The circuit breaker through the real server, GitHub faked with respx answering 502s."""

from __future__ import annotations

import httpx
import pytest
import respx

from github_app.control.breaker import BreakerSettings
from tests.conftest import API, config_url, make_settings, running_app, wait_for
from tests.deliveries import issue_event, signed

pytestmark = pytest.mark.anyio

REPO = "Codertocat/Hello-World"


async def test_while_github_answers_502_the_breaker_opens_and_events_wait_in_the_queue(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    config = github.get(config_url(REPO)).mock(return_value=httpx.Response(502))
    github.get(config_url("Codertocat/.github")).mock(return_value=httpx.Response(404))
    labels = github.post(url__regex=rf"{API}/repos/{REPO}/issues/\d+/labels").mock(
        return_value=httpx.Response(200, json=[])
    )
    settings = make_settings(
        private_key_pem, DRY_RUN="false", WORKERS_MAX="1", RETRY_BASE="0.2", RETRY_MAX="0.5"
    )
    async with running_app(settings) as app:
        runtime = app.runtime
        # The cooldown is long enough that no probe can go out before the assertions below
        # read the open breaker, even on a loaded machine (0.3 s raced them under load).
        runtime.breaker.settings = BreakerSettings(failures=3, cooldown=2.0, probe_interval=0.2)
        for number in range(1, 9):
            delivery = signed(
                issue_event(number=number, title="Crash on start", labels=[]), "issues"
            )
            assert (await app.post(delivery)).status_code == 202
        await wait_for(lambda: runtime.breaker.stats().state != "closed", what="the breaker")
        # Three failures opened it. Those three wait for their retry, the other five were
        # not taken: all eight are still queued, none failed, none is lost.
        assert config.call_count == 3
        assert runtime.queue.stats().retried == 3
        assert runtime.runner.stats.events_failed == 0
        assert len(runtime.queue) == 8
        assert runtime.dispatcher.in_flight == 0
        assert runtime.breaker.stats().opened == 1

        config.mock(return_value=httpx.Response(404))  # GitHub recovers
        await app.settle()
        assert runtime.breaker.stats().state == "closed"
        assert runtime.runner.stats.events_ok == 8
        assert labels.call_count == 8
        assert runtime.controller.stats().errors >= 3
        assert runtime.queue.stats().dead_lettered_by_reason == {}
