"""Retries, deferral, dead letters and load shedding through the real server (respx GitHub)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
import respx

from github_app.dispatch.registry import Registry
from github_app.errors import Deferred
from github_app.processor import Context, Processor, ProcessorConfig
from github_app.processor_help import ProcessorHelp
from processors import BUILTINS
from tests.conftest import API, config_url, make_settings, running_app, wait_for
from tests.deliveries import app_payload, fixture, issue_event, signed

pytestmark = pytest.mark.anyio

LABELS = f"{API}/repos/Codertocat/Hello-World/issues/1/labels"
FAST_RETRIES = {"RETRY_BASE": "0.02", "RETRY_MAX": "0.05"}


@dataclass
class Counting:
    """A processor that counts its runs; defers the first ``defer`` runs of an event."""

    runs: list[str] = field(default_factory=list)
    defer: int = 0

    async def handle(self, ctx: Context[Any]) -> None:
        self.runs.append(ctx.envelope.delivery_id)
        if self.defer:
            self.defer -= 1
            raise Deferred(time.monotonic() + 0.05, "secondary rate limit pause")


def counting(recorder: Counting, events: tuple[str, ...] = ("issues",)) -> Processor[Any]:
    return Processor(
        name="counting",
        help=ProcessorHelp("counts runs"),
        events=events,
        config_type=ProcessorConfig,
        handle=recorder.handle,
    )


def no_config(github: respx.MockRouter) -> None:
    github.get(config_url("Codertocat/Hello-World")).mock(return_value=httpx.Response(404))
    github.get(config_url("Codertocat/.github")).mock(return_value=httpx.Response(404))


async def test_a_502_on_a_processors_write_brings_the_event_back_and_the_retry_succeeds(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    no_config(github)
    labels = github.post(LABELS).mock(
        side_effect=[httpx.Response(502, json={"message": "Bad gateway"}), httpx.Response(200)]
    )
    other = Counting()
    registry = Registry([*BUILTINS, counting(other)])
    settings = make_settings(private_key_pem, **FAST_RETRIES)
    async with running_app(settings, registry=registry) as app:
        delivery = signed(app_payload("issues.opened"), "issues")
        assert (await app.post(delivery)).status_code == 202
        await app.settle()
        stats = app.runtime.queue.stats()
        # A redelivery of a retried-and-processed event is still a duplicate.
        assert (await app.post(delivery)).json()["status"] == "duplicate"
    assert labels.call_count == 2
    assert json.loads(labels.calls.last.request.content) == {"labels": ["documentation"]}
    assert (stats.retried, stats.processed, stats.taken) == (1, 1, 2)
    assert stats.dead_lettered_by_reason == {}
    assert app.runtime.runner.stats.ok["labeler"] == 1
    # The processor that succeeded on the first try is not run again by the retry.
    assert other.runs == [delivery.delivery_id]


async def test_exhausted_retries_land_in_the_dead_letter_queue_with_the_last_error(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    no_config(github)
    statuses = iter([502, 503, 504])
    labels = github.post(LABELS).mock(
        side_effect=lambda request: httpx.Response(next(statuses), json={"message": "down"})
    )
    settings = make_settings(private_key_pem, RETRY_ATTEMPTS="3", **FAST_RETRIES)
    async with running_app(settings) as app:
        delivery = signed(app_payload("issues.opened"), "issues")
        assert (await app.post(delivery)).status_code == 202
        queue = app.runtime.queue
        await wait_for(lambda: len(queue.list_dead_letters()) == 1, what="the dead letter")
        [entry] = queue.list_dead_letters()
        tries = labels.call_count
        # Forgotten by the delivery memory: GitHub's redelivery is accepted again.
        github.post(LABELS).mock(return_value=httpx.Response(200))
        redelivered = await app.post(delivery)
        assert redelivered.status_code == 202
        assert redelivered.json()["status"] == "queued"
        # Queued again, so no longer dead: a redrive would have processed it a second time.
        assert queue.list_dead_letters() == []
        assert queue.redrive() == 0
        await app.settle()
    assert tries == 3
    assert labels.call_count == 4  # and the redelivery was processed
    assert (entry.delivery_id, entry.reason, entry.attempts) == (
        delivery.delivery_id,
        "exhausted",
        3,
    )
    assert (
        entry.last_error
        == "GitHub answered 504 to POST /repos/Codertocat/Hello-World/issues/1/labels"
    )
    assert (entry.event, entry.action, entry.installation_id) == ("issues", "opened", 42)
    assert (entry.repository, entry.issue_number, entry.priority) == (
        "Codertocat/Hello-World",
        1,
        "HIGH",
    )
    stats = app.runtime.queue.stats()
    assert stats.retried == 2
    assert stats.dead_lettered_by_reason == {"exhausted": 1}
    assert stats.dead_letters is not None and stats.dead_letters.superseded == 1
    assert app.runtime.dispatcher.stats().exhausted == 1


async def test_a_deferred_event_comes_back_without_counting_an_attempt(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    recorder = Counting(defer=2)
    settings = make_settings(None, RETRY_ATTEMPTS="1")  # one attempt: a counted defer would DLQ
    async with running_app(settings, registry=Registry([counting(recorder)])) as app:
        delivery = signed(issue_event(number=3), "issues")
        assert (await app.post(delivery)).status_code == 202
        await app.settle()
    assert recorder.runs == [delivery.delivery_id] * 3
    stats = app.runtime.queue.stats()
    assert (stats.deferred, stats.retried, stats.processed) == (2, 0, 1)
    assert app.runtime.queue.list_dead_letters() == []


async def test_installation_gone_dead_letters_its_queued_events(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    mint = github.post(f"{API}/app/installations/42/access_tokens").mock(
        return_value=httpx.Response(404, json={"message": "Not Found"})
    )
    settings = make_settings(private_key_pem, WORKERS_MAX="1", WORKERS_MIN="1")
    async with running_app(settings, paused=True) as app:
        deliveries = [signed(issue_event(number=n), "issues") for n in (1, 2, 3)]
        for delivery in deliveries:
            assert (await app.post(delivery)).status_code == 202
        app.runtime.dispatcher.resume()
        await app.settle()
        entries = app.runtime.queue.list_dead_letters()
        # Each given-up delivery is forgotten: GitHub's redelivery is accepted again.
        assert not any(app.runtime.queue.knows(d.delivery_id) for d in deliveries)
    assert mint.call_count == 1  # the others were not even tried
    assert sorted(e.delivery_id for e in entries) == sorted(d.delivery_id for d in deliveries)
    assert {e.reason for e in entries} == {"installation_gone"}
    assert all("installation 42 is gone" in (e.last_error or "") for e in entries)


async def test_a_burst_beyond_capacity_is_refused_low_first_and_critical_is_still_admitted() -> (
    None
):
    recorder = Counting()
    registry = Registry([counting(recorder, ("issues", "installation", "star"))])
    settings = make_settings(None, QUEUE_MAX_EVENTS="40")
    waves = [
        ("LOW", lambda n: signed(app_payload("star.created"), "star"), 30),
        ("NORMAL", lambda n: signed(issue_event("edited", number=n), "issues"), 30),
        ("HIGH", lambda n: signed(issue_event("opened", number=n), "issues"), 30),
        ("CRITICAL", lambda n: signed(fixture("installation.created"), "installation"), 4),
    ]
    answers: dict[str, list[httpx.Response]] = {}
    async with running_app(settings, registry=registry, paused=True) as app:
        for level, make, count in waves:
            got: list[httpx.Response] = []

            async def post(n: int, make: Any = make, got: list[httpx.Response] = got) -> None:
                got.append(await app.post(make(n)))

            async with anyio.create_task_group() as group:  # each wave arrives at once
                for n in range(count):
                    group.start_soon(post, n)
            answers[level] = got
            # the levels below are still refused while this one is admitted
            if level == "CRITICAL":
                low = await app.post(signed(app_payload("star.created"), "star"))
                assert low.status_code == 503
        stats = app.runtime.queue.stats()

    def admitted(level: str) -> int:
        return sum(1 for a in answers[level] if a.status_code == 202)

    # Fill thresholds of 40: LOW 50 % (20), NORMAL 75 % (30), HIGH 90 % (36), CRITICAL 100 %.
    assert [admitted(level) for level in ("LOW", "NORMAL", "HIGH", "CRITICAL")] == [20, 10, 6, 4]
    for level in ("LOW", "NORMAL", "HIGH"):
        refused = [a for a in answers[level] if a.status_code != 202]
        assert refused, level
        assert all(a.status_code == 503 for a in refused)
        assert all(int(a.headers["retry-after"]) > 0 for a in refused)
        assert all(a.json()["priority"] == level for a in refused)
    assert stats.depth == 40
    assert stats.refused_by_priority == {"CRITICAL": 0, "HIGH": 24, "NORMAL": 20, "LOW": 11}
    assert stats.depth_by_priority == {"CRITICAL": 4, "HIGH": 6, "NORMAL": 10, "LOW": 20}
