"""What observability costs: the runner's metrics hook per event, and one scrape of each endpoint.

Command (from the repository root; not part of CI)::

    .venv/bin/python -m benchmarks.observability [--events 20000] [--rounds 7]

In one process, side by side and in alternating order per round:

  hook    ``Metrics.processor_finished`` + ``event_finished`` for one event with one
          processor (histogram observe + three counter increments), against
  no-op   the same two calls on an observer that does nothing (the cost of the hook
          itself), so the ratio shows what prometheus-client adds per event;
  scrape  ``GET /metrics`` body (``Metrics.render``) and ``/admin/status`` body
          (``StatusReporter.json``) of a runtime whose label sets are filled the way a
          busy app fills them: 4 priorities x 6 events x 6 processors x 2 outcomes;
  stall   the longest gap a 1 ms ticker task sees on the event loop during one
          ``Metrics.scrape`` (what ``GET /metrics`` runs: formatting in a worker thread),
          against rendering on the loop itself.

Printed: medians over the rounds (microseconds per event, milliseconds per scrape,
milliseconds of loop stall) and the body sizes. Clock: time.perf_counter.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable

import anyio

from github_app.config import load_settings
from github_app.envelope import Envelope
from github_app.queue.event import QueuedEvent
from github_app.queue.priority import Priority
from github_app.runtime import Runtime

EVENTS = ("issues", "issue_comment", "push", "label", "installation", "star")
PROCESSORS = ("labeler", "triage", "welcome", "commands", "duplicates", "plugin")


class NoOp:
    def processor_finished(self, item: QueuedEvent, processor: str, seconds: float, ok: bool):
        return None

    def event_finished(self, item: QueuedEvent, ok: bool) -> None:
        return None


def item(event: str, priority: Priority) -> QueuedEvent:
    envelope = Envelope("d", event, "opened", 1, "o/r", 1, "u", "User", time.time(), b"x", 1)
    return QueuedEvent(envelope, priority, 1, 0.0)


def per_event_us(observer: object, items: list[QueuedEvent]) -> float:
    finished: Callable[..., None] = observer.processor_finished  # type: ignore[attr-defined]
    done: Callable[..., None] = observer.event_finished  # type: ignore[attr-defined]
    started = time.perf_counter()
    for index, queued in enumerate(items):
        finished(queued, "labeler", 0.05, index % 10 != 0)
        done(queued, index % 10 != 0)
    return (time.perf_counter() - started) / len(items) * 1e6


def per_call_ms(call: Callable[[], object], repeat: int = 50) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        call()
    return (time.perf_counter() - started) / repeat * 1e3


async def loop_stall_ms(scrape: Callable[[], Awaitable[object]]) -> float:
    """The longest gap a 1 ms ticker sees on the loop while one scrape runs."""
    gaps: list[float] = []
    running = True

    async def ticker() -> None:
        last = time.perf_counter()
        while running:
            await anyio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        await anyio.sleep(0.01)
        await scrape()
        running = False
    return max(gaps) * 1e3


async def main(events: int, rounds: int) -> None:
    settings = load_settings({"ADMIN_TOKEN": "x" * 32}, env_file=None)
    runtime = Runtime(settings)
    metrics = runtime.metrics
    for priority in Priority:
        for event in EVENTS:
            for processor in PROCESSORS:
                for ok in (True, False):
                    metrics.processor_finished(item(event, priority), processor, 0.1, ok)
            metrics.event_finished(item(event, priority), True)
    priorities = list(Priority)
    items = [item(EVENTS[i % len(EVENTS)], priorities[i % len(priorities)]) for i in range(events)]
    hook, noop, render, status = [], [], [], []
    for round_number in range(rounds):
        pair = [(hook, metrics), (noop, NoOp())]
        for results, observer in pair if round_number % 2 == 0 else reversed(pair):
            results.append(per_event_us(observer, items))
        render.append(per_call_ms(metrics.render, repeat=10))
        status.append(per_call_ms(runtime.status.json))
    body, _ = metrics.render()
    print(f"{events} events x {rounds} rounds; medians")
    print(f"  hook per event     {statistics.median(hook):8.2f} us")
    print(f"  no-op per event    {statistics.median(noop):8.2f} us")
    print(f"  ratio hook/no-op   {statistics.median(hook) / statistics.median(noop):8.1f} x")
    print(f"  /metrics render    {statistics.median(render):8.2f} ms  ({len(body)} bytes)")

    async def inline() -> object:
        return metrics.render()

    threaded, on_loop = [], []
    for _ in range(rounds):
        threaded.append(await loop_stall_ms(metrics.scrape))
        on_loop.append(await loop_stall_ms(inline))
    print(f"  loop stall, scrape in a thread  {statistics.median(threaded):6.2f} ms")
    print(f"  loop stall, render on the loop  {statistics.median(on_loop):6.2f} ms")
    print(
        f"  /admin/status      {statistics.median(status):8.2f} ms  "
        f"({len(runtime.status.json())} bytes)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    anyio.run(main, args.events, args.rounds)
