"""Recovery end to end through the real server: a simulated GitHub sends deliveries, logs
each attempt, and redelivers on request; the app is down for a while, then up. Every delivery
that failed is processed exactly once."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import httpx
import pytest
import respx

from github_app.dispatch.registry import Registry
from github_app.processor import Context, Processor, ProcessorConfig
from github_app.processor_help import ProcessorHelp
from tests.conftest import free_socket, make_settings, running_app, wait_for
from tests.deliveries import issue_event, signed
from tests.fake_hook_log import FakeHookLog

pytestmark = pytest.mark.anyio

ADMIN = "admin-token-for-recovery"


def counting_registry(processed: Counter[str]) -> Registry:
    async def handle(ctx: Context[Any]) -> None:
        processed[ctx.envelope.delivery_id] += 1

    return Registry(
        [
            Processor(
                name="counter",
                help=ProcessorHelp("counts events"),
                events=("issues",),
                config_type=ProcessorConfig,
                handle=handle,
            )
        ]
    )


async def test_deliveries_lost_while_the_app_was_down_are_each_processed_exactly_once(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    github.get(url__regex=r"/contents/\.github/").mock(
        return_value=httpx.Response(404, json={"message": "Not Found"})
    )
    hook_log = FakeHookLog(github)
    processed: Counter[str] = Counter()
    events = [
        signed(issue_event("opened", number=n), "issues", delivery_id=f"event-{n}")
        for n in range(1, 7)
    ]
    with free_socket() as closed:  # bound, never listening: the app is down
        down = f"http://127.0.0.1:{closed.getsockname()[1]}/api/github/webhooks"
        async with httpx.AsyncClient() as client:
            assert [await hook_log.send(client, down, d) for d in events[:4]] == [0] * 4

    settings = make_settings(private_key_pem, RECOVERY_INTERVAL="0.5", ADMIN_TOKEN=ADMIN)
    async with running_app(settings, registry=counting_registry(processed)) as app:
        recovery = app.runtime.recovery
        # live traffic goes on once the app is up
        for delivery in events[4:]:
            assert await hook_log.send(app.client, app.webhook_url, delivery) == 202
        # GitHub's first redelivery of event-2 fails too (the app unreachable a moment longer)
        first_try = True

        async def github_redelivers() -> None:
            nonlocal first_try
            while True:
                if first_try and "event-2" in hook_log.pending:
                    hook_log.pending.remove("event-2")
                    hook_log.log("event-2", status_code=0, redelivery=True)
                    first_try = False
                await hook_log.redeliver_pending(app.client, app.webhook_url)
                await anyio.sleep(0.01)

        async with anyio.create_task_group() as group:
            group.start_soon(github_redelivers)
            await wait_for(
                lambda: len(processed) == len(events), timeout=15, what="every event processed"
            )
            await app.settle()
            for _ in range(3):  # later rounds find nothing more to do
                await recovery.round_done.wait()
            group.cancel_scope.cancel()

        assert processed == Counter({d.delivery_id: 1 for d in events})
        requested = Counter(hook_log.requested_guids())
        assert requested == Counter({"event-1": 1, "event-2": 2, "event-3": 1, "event-4": 1})
        stats = recovery.stats()
        assert (stats.requested, stats.recovered, stats.outstanding) == (5, 4, 0)

        answer = await app.client.get(
            app.url + "/admin/status", headers={"Authorization": f"Bearer {ADMIN}"}
        )
        status = answer.json()["recovery"]
        assert status["enabled"] is True and status["recovered"] == 4
        assert status["last_round"]["outcome"] == "complete"
        assert status["last_round"]["finished_at"] is not None
        metrics = (await app.client.get(app.url + "/metrics")).text
        assert 'auto_issue_processor_redelivery_requests_total{outcome="accepted"} 5.0' in metrics
        assert "auto_issue_processor_recovered_deliveries_total 4.0" in metrics
