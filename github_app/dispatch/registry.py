"""Which processors exist and which of them want a given event.

Built-ins are listed in ``processors.BUILTINS``; third-party processors come
from the ``auto_issue_processor.processors`` entry-point group, so a user adds
one by installing a package, without editing this one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from importlib.metadata import entry_points
from typing import Any

from github_app.errors import SettingsError
from github_app.processor import Processor

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "auto_issue_processor.processors"


class Registry:
    """An immutable set of processors with a per-(event, action) lookup cache."""

    def __init__(self, processors: Iterable[Processor[Any]]) -> None:
        self.processors: tuple[Processor[Any], ...] = tuple(processors)
        names = [p.name for p in self.processors]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise SettingsError(f"two processors share the name {duplicated[0]!r}")
        self._by_name = {p.name: p for p in self.processors}
        self._cache: dict[tuple[str, str | None], tuple[Processor[Any], ...]] = {}

    def __iter__(self) -> Any:
        return iter(self.processors)

    def get(self, name: str) -> Processor[Any] | None:
        return self._by_name.get(name)

    def for_event(self, event: str, action: str | None) -> tuple[Processor[Any], ...]:
        key = (event, action)
        found = self._cache.get(key)
        if found is None:
            found = tuple(p for p in self.processors if p.handles(event, action))
            if len(self._cache) < 4096:
                self._cache[key] = found
        return found

    def subscribes(self, event: str, action: str | None) -> bool:
        return bool(self.for_event(event, action))

    @classmethod
    def load(cls, extra: Sequence[Processor[Any]] = ()) -> Registry:
        """Built-ins, then every entry point of the group; a broken plugin is a start-up error."""
        from processors import BUILTINS

        found: list[Processor[Any]] = [*BUILTINS, *extra]
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            try:
                processor = entry.load()
            except Exception as exc:
                raise SettingsError(
                    f"processor plugin {entry.name!r} ({entry.value}) failed to load: {exc}"
                ) from exc
            if not isinstance(processor, Processor):
                raise SettingsError(
                    f"processor plugin {entry.name!r} ({entry.value}) is not a Processor"
                )
            log.info("loaded processor plugin %r from %s", processor.name, entry.value)
            found.append(processor)
        return cls(found)
