"""The processor interface: what a processor declares and what it is given for each event.

A processor is a value, not a subclass: a name, its help (``ProcessorHelp``),
the ``event.action`` pairs it handles, a config dataclass with defaults, an
async ``handle(context)`` and the GitHub permissions it needs. Third-party packages expose one
through the ``auto_issue_processor.processors`` entry-point group.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from githubkit import GitHub
from pydantic import ConfigDict

from github_app.envelope import Envelope
from github_app.processor_help import HelpRecord, ProcessorHelp, config_keys

_CONFIG_BUDGET: ContextVar[Callable[[], None] | None] = ContextVar("config_budget", default=None)


@contextmanager
def config_budget(check: Callable[[], None]) -> Iterator[None]:
    """While a repository's config is validated, ``check`` raises once its time is up."""
    token = _CONFIG_BUDGET.set(check)
    try:
        yield
    finally:
        _CONFIG_BUDGET.reset(token)


def check_config_budget() -> None:
    """Called by config validators before each costly item (compiling a pattern, ...).

    A config is read within a time budget, and one item's validation may be
    the costly part: checking between items bounds the overrun to one item.
    Outside a config read it does nothing.
    """
    check = _CONFIG_BUDGET.get()
    if check is not None:
        check()


@dataclass(frozen=True)
class ProcessorConfig:
    """Every processor's config section has ``enabled``; unknown keys are errors."""

    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    enabled: bool = True


ConfigT = TypeVar("ConfigT", bound=ProcessorConfig)


@dataclass(frozen=True)
class Context(Generic[ConfigT]):
    """What a processor gets for one event.

    ``payload`` is the decoded JSON object (decoded once per event).
    ``event`` is githubkit's typed model of it, or ``None`` when the payload
    does not match the pinned schema; it is built only when a processor reads
    it, once per event (``typed_event``), because validating a payload costs
    far more than reading it. ``github`` acts as the event's installation and goes through
    the shared client layer; in dry-run mode its writes are logged, not sent.
    ``log`` lines carry the delivery's context automatically.
    """

    envelope: Envelope
    payload: Mapping[str, Any]
    github: GitHub[Any]
    config: ConfigT
    dry_run: bool
    log: logging.Logger
    bot_login: str | None = None
    state: Any = None
    """The processor's own long-lived state (``Processor.state_factory``), owned by the runtime."""
    typed_event: Callable[[], Any] = field(default=lambda: None, repr=False, compare=False)
    """Builds (or returns the kept) typed model; the runner passes ``LazyEvent.get``."""

    @property
    def event(self) -> Any:
        """githubkit's typed model of ``payload``, or ``None`` if it does not match the schema."""
        return self.typed_event()

    @property
    def owner(self) -> str:
        return (self.envelope.repository or "/").split("/", 1)[0]

    @property
    def repo(self) -> str:
        return (self.envelope.repository or "/").split("/", 1)[1]


Handler = Callable[[Context[Any]], Awaitable[None]]

BACKFILL_EVENT = "backfill"
"""The event name of an existing issue sent through the queue by a backfill job.

Its payload is shaped like an ``issues`` event's (``issue``, ``repository``,
``installation``) with ``action`` ``"backfill"`` and a ``backfill`` object
naming the job, its processors and whether it is a dry run. Only processors
that declare a ``backfill`` handler ever see one.
"""
NOT_BACKFILLED = "never acts on existing issues"


@dataclass(frozen=True)
class BackfillChange:
    """What a processor did (or, in a dry run, would do) to one existing issue."""

    labels_added: tuple[str, ...] = ()
    comments: int = 0
    writes: int = 0
    """Requests that changed something on GitHub (0 in a dry run)."""

    @property
    def changed(self) -> bool:
        return bool(self.labels_added or self.comments)

    def __str__(self) -> str:
        parts = [f"add label {label}" for label in self.labels_added]
        parts += ["comment"] * self.comments
        return ", ".join(parts) or "nothing"


NO_CHANGE = BackfillChange()


@dataclass(frozen=True)
class Processor(Generic[ConfigT]):
    """A declared processor. ``events`` holds ``"issues.opened"`` or ``"issues"`` (any action)."""

    name: str
    help: ProcessorHelp
    events: tuple[str, ...]
    config_type: type[ConfigT]
    handle: Callable[[Context[ConfigT]], Awaitable[None]]
    permissions: Mapping[str, str] = field(default_factory=dict)
    state_factory: Callable[[], Any] | None = None
    """Builds state kept across events (caches, indexes): once per runtime, never at import."""
    backfill: Callable[[Context[ConfigT]], Awaitable[BackfillChange]] | None = None
    """How it treats an existing issue a backfill job streams (``BACKFILL_EVENT``); ``None``:
    it never acts on old issues. It writes nothing when ``ctx.dry_run`` and says what it
    would have done. ``help.backfill`` tells people what it does."""
    reads_event_model: bool = False
    """It reads ``ctx.event`` (githubkit's typed model): the parsers of its events are built
    at start-up, before the server listens, instead of on the first such event, while the
    event loop waits (up to a second). Left ``False``, the model is still built when read."""

    def __post_init__(self) -> None:
        if isinstance(self.help, str):  # a one-line description is help enough to start with
            object.__setattr__(self, "help", ProcessorHelp(self.help))
        if not isinstance(self.help, ProcessorHelp):
            raise TypeError(f"processor {self.name!r}: help must be a ProcessorHelp or a string")

    def handles(self, event: str, action: str | None) -> bool:
        return event in self.events or (action is not None and f"{event}.{action}" in self.events)

    def describe(self) -> HelpRecord:
        """The processor's help joined with what its declaration says (events, config keys)."""
        return HelpRecord(
            name=self.name,
            description=self.help.description,
            details=self.help.details,
            enabled_by_default=self.config_type().enabled,
            events=self.events,
            permissions=tuple(sorted(self.permissions.items())),
            config=config_keys(self.name, self.config_type),
            config_example=self.help.config_example,
            commands=self.help.commands,
            backfill=(self.help.backfill or "acts on existing issues")
            if self.backfill is not None
            else NOT_BACKFILLED,
        )
