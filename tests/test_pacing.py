"""The pacer: one write at a time per principal, the most urgent waiting writer first."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from github_app.github.pacing import InstallationPacer, serving
from github_app.queue.priority import Priority

pytestmark = pytest.mark.anyio


async def test_writes_never_overlap_and_a_waiting_live_write_goes_before_backfill() -> None:
    pacer = InstallationPacer(write_interval=0.0)
    order: list[str] = []
    on_wire = 0
    most = 0
    first_in = anyio.Event()
    release = anyio.Event()

    async def write(name: str, urgency: int) -> None:
        nonlocal on_wire, most
        with serving(urgency):
            async with pacer.write("POST"):
                on_wire += 1
                most = max(most, on_wire)
                order.append(name)
                if name == "first":
                    first_in.set()
                    await release.wait()
                await anyio.lowlevel.checkpoint()
                on_wire -= 1

    async with anyio.create_task_group() as group:
        group.start_soon(write, "first", Priority.LOW)
        await first_in.wait()
        for number in range(3):
            group.start_soon(write, f"backfill-{number}", Priority.LOW)
        await anyio.wait_all_tasks_blocked()
        group.start_soon(write, "live", Priority.HIGH)
        await anyio.wait_all_tasks_blocked()
        assert pacer.waiting_writers == 4
        release.set()
    assert most == 1
    assert order == ["first", "live", "backfill-0", "backfill-1", "backfill-2"]
    assert pacer.waiting_writers == 0


async def test_a_cancelled_waiting_writer_leaves_the_line() -> None:
    pacer = InstallationPacer(write_interval=0.0)
    done: list[str] = []
    holding = anyio.Event()
    release = anyio.Event()

    async def hold() -> None:
        async with pacer.write("POST"):
            holding.set()
            await release.wait()
        done.append("hold")

    async with anyio.create_task_group() as group:
        group.start_soon(hold)
        await holding.wait()
        with anyio.move_on_after(0.01):
            await pacer.write_turn()
            done.append("never")
        assert pacer.waiting_writers == 0
        release.set()
    assert await pacer.write_turn() == pytest.approx(0.0, abs=0.05)
    assert done == ["hold"]


async def test_slow_down_lowers_the_pace_and_counts() -> None:
    now = [100.0]
    pacer = InstallationPacer(write_interval=1.0, clock=lambda: now[0])
    await pacer.slow_down()
    assert pacer.interval == 2.0
    assert pacer.slowed == 1
    now[0] += 3601.0
    assert pacer.interval == 1.0
