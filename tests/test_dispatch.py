"""The dispatcher through the real server: priority order, per-issue order, isolation, shutdown."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from github_app.dispatch.registry import Registry
from github_app.processor import Context, Processor, ProcessorConfig
from github_app.processor_help import ProcessorHelp
from tests.conftest import make_settings, running_app, wait_for
from tests.deliveries import app_payload, fixture, issue_event, signed

pytestmark = pytest.mark.anyio


@dataclass
class Recorder:
    """A processor for tests: records what it ran, optionally blocks or fails on cue."""

    seen: list[str]
    running: set[tuple[str, int]]
    overlaps: int = 0
    block_on: str | None = None
    release: anyio.Event | None = None
    started: anyio.Event | None = None
    fail_on: str | None = None

    async def handle(self, ctx: Context[Any]) -> None:
        envelope = ctx.envelope
        key = envelope.issue_key or ("", 0)
        if key in self.running:
            self.overlaps += 1
        self.running.add(key)
        try:
            if envelope.delivery_id == self.block_on:
                assert self.release is not None and self.started is not None
                self.started.set()
                await self.release.wait()
            if envelope.delivery_id == self.fail_on:
                raise RuntimeError("processor bug")
            self.seen.append(envelope.delivery_id)
        finally:
            self.running.discard(key)


def recording_registry(recorder: Recorder, name: str = "recorder") -> Registry:
    processor: Processor[ProcessorConfig] = Processor(
        name=name,
        help=ProcessorHelp("records events"),
        events=("issues", "issue_comment", "installation", "star"),
        config_type=ProcessorConfig,
        handle=recorder.handle,
    )
    return Registry([processor])


async def test_with_the_drain_paused_low_high_critical_come_out_critical_high_low() -> None:
    recorder = Recorder([], set())
    settings = make_settings(None)  # dry run: no GitHub at all
    async with running_app(settings, registry=recording_registry(recorder), paused=True) as app:
        low = signed(app_payload("star.created"), "star", delivery_id="low")
        high = signed(issue_event("opened", number=8), "issues", delivery_id="high")
        critical = signed(fixture("installation.created"), "installation", delivery_id="crit")
        answers = [await app.post(delivery) for delivery in (low, high, critical)]
        assert [a.json()["priority"] for a in answers] == ["LOW", "HIGH", "CRITICAL"]
        app.runtime.dispatcher.resume()
        await app.settle()
    assert recorder.seen == ["crit", "high", "low"]


async def test_events_of_one_issue_run_one_at_a_time_in_arrival_order() -> None:
    recorder = Recorder([], set(), block_on="first", release=anyio.Event(), started=anyio.Event())
    settings = make_settings(None, WORKERS_MAX="4")
    async with running_app(settings, registry=recording_registry(recorder)) as app:
        first = signed(issue_event("edited", number=5), "issues", delivery_id="first")
        second = signed(issue_event("opened", number=5), "issues", delivery_id="second")
        other = signed(issue_event("opened", number=6), "issues", delivery_id="other")
        assert (await app.post(first)).status_code == 202
        assert recorder.started is not None
        with anyio.fail_after(5):
            await recorder.started.wait()
        # The second event of issue 5 has higher priority but must wait for the first;
        # issue 6 is not held up by issue 5.
        assert (await app.post(second)).status_code == 202
        assert (await app.post(other)).status_code == 202
        await wait_for(lambda: "other" in recorder.seen, what="the other issue's event")
        assert "second" not in recorder.seen
        assert recorder.release is not None
        recorder.release.set()
        await app.settle()
    assert recorder.seen == ["other", "first", "second"]
    assert recorder.overlaps == 0


async def test_a_failing_processor_is_logged_with_the_delivery_id_and_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failing = Recorder([], set(), fail_on="boom")
    healthy = Recorder([], set())
    registry = Registry(
        [*recording_registry(failing, "failing"), *recording_registry(healthy, "healthy")]
    )
    caplog.set_level(logging.INFO)
    async with running_app(make_settings(None), registry=registry) as app:
        assert (
            await app.post(signed(issue_event(number=1), "issues", delivery_id="boom"))
        ).is_success
        assert (
            await app.post(signed(issue_event(number=2), "issues", delivery_id="ok"))
        ).is_success
        await app.settle()
        assert app.runtime.runner.stats.failed["failing"] == 1
        assert app.runtime.runner.stats.ok["healthy"] == 2
    assert healthy.seen == ["boom", "ok"] or sorted(healthy.seen) == ["boom", "ok"]
    assert failing.seen == ["ok"]
    failures = [r for r in caplog.records if "processor failing raised" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].ctx["delivery_id"] == "boom"  # type: ignore[attr-defined]
    assert failures[0].exc_info is not None


async def test_width_change_takes_effect_while_events_run() -> None:
    gates = [anyio.Event(), anyio.Event()]
    active = 0
    peaks = [0, 0]
    phase = 0

    async def slow(ctx: Context[Any]) -> None:
        nonlocal active
        active += 1
        peaks[phase] = max(peaks[phase], active)
        try:
            await gates[phase].wait()
        finally:
            active -= 1

    registry = Registry(
        [Processor("slow", ProcessorHelp("waits"), ("issues",), ProcessorConfig, slow)]
    )
    async with running_app(make_settings(None, WORKERS_MAX="1"), registry=registry) as app:
        for number in range(1, 6):
            assert (await app.post(signed(issue_event(number=number), "issues"))).is_success
        await wait_for(lambda: active == 1, what="one event running")
        assert len(app.runtime.queue) == 4
        app.runtime.dispatcher.width = 3  # raising it admits waiting work at once
        await wait_for(lambda: active == 3, what="the wider limit to admit waiting work")
        assert len(app.runtime.queue) == 2
        app.runtime.dispatcher.width = 1  # lowering it lets running work finish
        assert active == 3
        phase = 1
        gates[0].set()
        await wait_for(lambda: active == 1, what="one event of the two left to start")
        assert len(app.runtime.queue) == 1
        gates[1].set()
        await app.settle()
    assert peaks == [3, 1]


async def test_shutdown_refuses_new_deliveries_and_finishes_in_flight_work(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder(
        [], set(), block_on="inflight", release=anyio.Event(), started=anyio.Event()
    )
    caplog.set_level(logging.INFO)
    settings = make_settings(None, WORKERS_MAX="1")
    async with running_app(settings, registry=recording_registry(recorder)) as app:
        assert (
            await app.post(signed(issue_event(number=1), "issues", delivery_id="inflight"))
        ).is_success
        assert (
            await app.post(signed(issue_event(number=2), "issues", delivery_id="queued"))
        ).is_success
        assert recorder.started is not None and recorder.release is not None
        with anyio.fail_after(5):
            await recorder.started.wait()
        async with anyio.create_task_group() as group:
            group.start_soon(app.runtime.shutdown)
            await wait_for(lambda: app.runtime.shutting_down, what="shutdown to begin")
            refused = await app.post(signed(issue_event(number=3), "issues"))
            assert refused.status_code == 503
            assert refused.json()["error"] == "shutting_down"
            ready = await app.client.get(app.url + "/readyz")
            assert ready.status_code == 503
            recorder.release.set()
    assert recorder.seen == ["inflight"]
    assert any("1 queued event(s) stay in the spool" in r.getMessage() for r in caplog.records)


async def test_a_closed_gate_with_an_overdue_retry_waits_instead_of_spinning() -> None:
    """While GitHub asked for a pause, an overdue retry must not make the dispatcher loop hot."""
    from github_app.dispatch.dispatcher import Dispatcher
    from github_app.envelope import Envelope
    from github_app.queue.event import QueuedEvent
    from github_app.queue.memory import MemoryQueue
    from github_app.queue.priority import Priority

    class ClosedGate:
        """Closed until the test opens it; asks to be looked at again in an hour."""

        def __init__(self) -> None:
            self.open = False
            self.checks = 0

        def allow(self) -> bool:
            self.checks += 1
            return self.open

        def wait_hint(self) -> float:
            return 3600.0

    clock = [100.0]  # the queue's clock moves only when the test moves it
    queue = MemoryQueue(10, 1_000_000, clock=lambda: clock[0])
    envelope = Envelope("d1", "issues", "opened", 1, "o/r", 1, "u", "User", 0.0, b"x", 1)
    assert queue.offer(envelope, Priority.HIGH).admitted
    taken = queue.take()
    assert taken is not None
    queue.retry(taken, clock[0] + 1.0, "GitHub answered 403")
    clock[0] += 2.0  # the retry is overdue, and stays so: the clock stands still from here
    assert queue.next_due_in() == 0
    ran: list[QueuedEvent] = []

    async def handler(item: QueuedEvent) -> None:
        ran.append(item)

    gate = ClosedGate()
    dispatcher = Dispatcher(queue, handler, width=2, gate=gate, clock=lambda: clock[0])
    async with anyio.create_task_group() as group:
        group.start_soon(dispatcher.run)
        await wait_for(lambda: gate.checks >= 1, what="the dispatcher to look at the gate")
        for _ in range(100):  # a loop waiting on the overdue retry would look on every turn
            await anyio.lowlevel.checkpoint()
        checks_while_closed = gate.checks
        gate.open = True
        dispatcher.notify()
        await wait_for(lambda: bool(ran), what="the retried event once the gate opens")
        dispatcher.stop()
    assert checks_while_closed == 1
    assert [item.envelope.delivery_id for item in ran] == ["d1"]


async def test_shutdown_of_the_memory_queue_names_the_events_and_dead_letters_it_loses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="github_app.runtime")
    settings = make_settings(None, QUEUE_BACKEND="memory")
    async with running_app(settings, paused=True) as app:
        for number, delivery_id in ((1, "dead-one"), (2, "queued-a"), (3, "queued-b")):
            delivery = signed(issue_event(number=number), "issues", delivery_id=delivery_id)
            assert (await app.post(delivery)).status_code == 202
        queue = app.runtime.queue
        item = queue.take()
        assert item is not None and item.envelope.delivery_id == "dead-one"
        queue.dead_letter(item, "exhausted", "GitHub answered 502")
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        "2 queued event(s) remain unprocessed and are lost" in line
        and line.endswith(("queued-a, queued-b", "queued-b, queued-a"))
        for line in lines
    ), lines
    assert any(
        line == "shutdown: 1 dead letter(s) are lost with the process (QUEUE_BACKEND=memory): "
        "dead-one"
        for line in lines
    ), lines
