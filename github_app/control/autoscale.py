"""The I/O around the pure width controller: its feedback and gate, its tick task, the host sampler.

``GitHubGate`` is the runner's observer (each event's latency and outcome go
to the controller and to the circuit breaker) and the dispatcher's gate: no
event is taken while GitHub's retry-after pause runs (continuing while limited
can get an integration banned) or while the circuit breaker is open. It needs
no dispatcher: the dispatcher looks at the gate again after every event it
finishes, which is when an observation can reopen it.

``Autoscaler.run`` lives in the runtime's task group next to the dispatcher:
every tick it reads the backlog and the host load, asks the controller for a
width and sets ``dispatcher.width`` when the controller changes its mind
(anyio's limiter applies it at once). The dispatcher starts at the
controller's width, set once, at its construction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

import anyio
import psutil

from github_app.control.breaker import BreakerState, CircuitBreaker
from github_app.control.controller import Backlog, Decision, HostLoad, WidthController
from github_app.control.feedback import Observation

log = logging.getLogger(__name__)


class Drain(Protocol):
    """What the autoscaler steers: the dispatcher's width."""

    @property
    def width(self) -> int: ...

    @width.setter
    def width(self, value: int) -> None: ...


class HostSampler:
    """This process's CPU (psutil, fraction of one core) and the event loop's lag.

    The lag is measured by ``run``, a small task that sleeps ``interval`` and
    notes how late it woke; ``sample`` returns the worst lag since the last
    sample, so a short stall between two ticks is not averaged away.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self._interval = interval
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first reading only starts the measurement
        self._lag = 0.0

    async def run(self) -> None:
        while True:
            started = time.perf_counter()
            await anyio.sleep(self._interval)
            late = time.perf_counter() - started - self._interval
            self._lag = max(self._lag, late)

    def sample(self) -> HostLoad:
        lag, self._lag = self._lag, 0.0
        return HostLoad(cpu=self._process.cpu_percent(None) / 100.0, lag=max(0.0, lag))


class GitHubGate:
    """Feeds the controller and the breaker; tells the dispatcher whether to take events."""

    def __init__(
        self,
        controller: WidthController,
        breaker: CircuitBreaker,
        *,
        on_observation: Callable[[Observation], None] | None = None,
    ) -> None:
        self.controller = controller
        self.breaker = breaker
        self._on_observation = on_observation  # for benchmarks and tests

    def observe(self, observation: Observation) -> None:
        was_open = self.breaker.state is not BreakerState.CLOSED
        self.controller.observe(
            observation.latency,
            observation.outcome,
            observation.retry_after,
            observation.installation,
        )
        self.breaker.record(observation.outcome)
        is_open = self.breaker.state is not BreakerState.CLOSED
        if was_open != is_open:
            log.warning("circuit breaker %s", "closed" if was_open else "opened: GitHub is failing")
        if self._on_observation is not None:
            self._on_observation(observation)

    def allow(self) -> bool:
        """The dispatcher gate: no new event in a throttle pause or while the breaker is open."""
        if self.controller.pause_left() > 0:
            return False
        return self.breaker.allow()

    def wait_hint(self) -> float:
        return max(self.controller.pause_left(), self.breaker.wait_hint())


class Autoscaler:
    """Applies the controller's width to the dispatcher every tick."""

    def __init__(
        self,
        controller: WidthController,
        dispatcher: Drain,
        *,
        backlog: Callable[[], Backlog],
        host: Callable[[], HostLoad],
        on_decision: Callable[[Decision], None] | None = None,
    ) -> None:
        self.controller = controller
        self._dispatcher = dispatcher
        self._backlog = backlog
        self._host = host
        # Told every tick's decision (the dashboard marks width changes; benchmarks log them).
        self._on_decision = on_decision

    def step(self) -> Decision:
        """One tick: read the inputs, decide, apply."""
        decision = self.controller.tick(self._backlog(), self._host())
        # Applied when the controller changes its mind, so a width set by hand lasts till then.
        if decision.width != decision.previous:
            log.info("width %d -> %d: %s", decision.previous, decision.width, decision.reason)
            self._dispatcher.width = decision.width
        if self._on_decision is not None:
            self._on_decision(decision)
        return decision

    async def run(self) -> None:
        while True:
            await anyio.sleep(self.controller.settings.tick)
            self.step()
