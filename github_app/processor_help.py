"""Typed help of a processor: what it does, its commands, config keys, events and permissions.

A processor declares a ``ProcessorHelp`` (what it does, its slash commands, a
config example) and a one-line ``Doc`` on each field of its config dataclass;
``Processor.describe()`` joins them with what the processor value already
says (its events, permissions and config defaults) into a ``HelpRecord``, so
no fact is written twice. The server's ``GET /help``, ``python -m github_app
help`` and the README's processor reference all render these records (shape
after Prow's pluginhelp: description, config, commands with who may use them
and examples).

Text in these records may hold Markdown code spans (```label```) and nothing
else: every renderer escapes it for its medium.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Doc:
    """The one-line meaning of a config field: ``label: Annotated[str, Doc("...")] = "x"``.

    ``shown`` stands in for the default where its value is too long to show
    (a list of rules, a paragraph of text).
    """

    meaning: str
    shown: str | None = None


@dataclass(frozen=True)
class CommandHelp:
    """One slash command: ``/{name} {arguments}``, who may run it and an example comment line."""

    name: str
    arguments: str
    description: str
    who_can_use: str
    example: str

    @property
    def usage(self) -> str:
        return f"/{self.name} {self.arguments}".rstrip()


@dataclass(frozen=True)
class ProcessorHelp:
    """What a processor declares about itself for people; the rest is derived."""

    description: str
    """One sentence: what it does."""
    details: tuple[str, ...] = ()
    """Further paragraphs, for the README and the help page."""
    commands: tuple[CommandHelp, ...] = ()
    config_example: str = ""
    """A YAML config section (the processor's name as its key); a test parses each one."""
    backfill: str = ""
    """What it does to existing issues in a backfill job (with ``Processor.backfill``)."""


@dataclass(frozen=True)
class ConfigKeyHelp:
    key: str
    default: str
    """The default as it would be written in YAML, or the field's ``Doc.shown``."""
    meaning: str
    default_is_prose: bool = False
    """``default`` describes the value (``Doc.shown``) rather than spelling it."""


@dataclass(frozen=True)
class HelpRecord:
    """Everything a person may want to know about one processor, ready to render."""

    name: str
    description: str
    details: tuple[str, ...]
    enabled_by_default: bool
    events: tuple[str, ...]
    permissions: tuple[tuple[str, str], ...]
    config: tuple[ConfigKeyHelp, ...]
    config_example: str
    commands: tuple[CommandHelp, ...]
    backfill: str = ""
    """What a backfill job makes it do to existing issues."""

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict; each command also carries its ``usage`` line."""
        document = dataclasses.asdict(self)
        document["permissions"] = dict(self.permissions)
        document["commands"] = [
            {**dataclasses.asdict(command), "usage": command.usage} for command in self.commands
        ]
        return document


def show_default(value: Any) -> str:
    """A default as YAML would spell it (``true``, ``0.3``, ``needs-triage``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        plain = value and value.strip() == value and not any(c in value for c in ":#'\"{}[],&*")
        return value if plain else json.dumps(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(show_default(item) for item in value) + "]"
    return str(value)


def enabled_meaning(name: str, enabled: bool) -> str:
    if enabled:
        return f"on by default; `{name}: false` turns it off"
    return f"off unless the repository's config has a `{name}:` section (an empty one will do)"


def config_keys(name: str, config_type: type[Any]) -> tuple[ConfigKeyHelp, ...]:
    """One entry per field of a config dataclass, its meaning from the field's ``Doc``.

    A field without one (a third-party processor's, say) is listed with an empty
    meaning rather than breaking the help page; the built-ins' test forbids that.
    """
    hints = typing.get_type_hints(config_type, include_extras=True)
    found: list[ConfigKeyHelp] = []
    for field in dataclasses.fields(config_type):
        if field.default is not dataclasses.MISSING:
            default: Any = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            raise TypeError(f"config field {config_type.__name__}.{field.name} has no default")
        if field.name == "enabled":
            found.append(
                ConfigKeyHelp("enabled", show_default(default), enabled_meaning(name, default))
            )
            continue
        metadata = getattr(hints[field.name], "__metadata__", ())
        doc = next((m for m in metadata if isinstance(m, Doc)), Doc(""))
        if doc.shown is not None:
            found.append(ConfigKeyHelp(field.name, doc.shown, doc.meaning, default_is_prose=True))
        else:
            found.append(ConfigKeyHelp(field.name, show_default(default), doc.meaning))
    return tuple(found)
