"""Two replicas in one process on one Redis (the real server and runtime, respx GitHub)."""

from __future__ import annotations

from typing import Any

import pytest
import respx

from github_app.dispatch.registry import Registry
from tests.conftest import make_settings, running_app, wait_for
from tests.deliveries import app_payload, signed
from tests.redis_server import RedisServer
from tests.test_retries import Counting, counting, no_config

pytestmark = pytest.mark.anyio


def redis_settings(private_key: str, server: RedisServer, **env: str) -> Any:
    return make_settings(
        private_key, QUEUE_BACKEND="redis", REDIS_URL=server.url, REDIS_CLAIM_IDLE="1", **env
    )


async def test_a_delivery_admitted_by_one_replica_is_a_duplicate_at_the_other_and_runs_once(
    github: respx.MockRouter, private_key_pem: str, redis_server: RedisServer
) -> None:
    no_config(github)
    runs = Counting()
    registry = Registry([counting(runs)])
    settings = redis_settings(private_key_pem, redis_server)
    async with (
        running_app(settings, registry=registry) as one,
        running_app(settings, registry=registry) as two,
    ):
        delivery = signed(app_payload("issues.opened"), "issues")
        assert (await one.post(delivery)).status_code == 202
        again = await two.post(delivery)
        assert (again.status_code, again.json()["status"]) == (200, "duplicate")
        await wait_for(lambda: len(runs.runs) == 1, what="the event to run")
        await one.settle()
        await two.settle()
        ready = await one.client.get(one.url + "/readyz")
        assert ready.status_code == 200
    assert runs.runs == [delivery.headers["X-GitHub-Delivery"]]
