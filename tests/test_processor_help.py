"""github_app.processor_help: config keys derived from a config dataclass, and the built-ins'
help records are complete and true (examples parse, commands are the parser's)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import pytest

from github_app.dispatch.registry import Registry
from github_app.dispatch.repo_config import ConfigParser
from github_app.processor import Context, Processor, ProcessorConfig
from github_app.processor_help import ConfigKeyHelp, Doc, ProcessorHelp, config_keys, show_default
from processors import BUILTINS
from processors.commands import COMMANDS, NAMES, parse


@dataclass(frozen=True)
class SampleConfig(ProcessorConfig):
    enabled: bool = False
    label: Annotated[str, Doc("the label to add")] = "needs: triage"
    rules: Annotated[tuple[str, ...], Doc("what to match", shown="two rules")] = ("a", "b")
    limit: Annotated[float, Doc("at most this")] = 0.5
    undocumented: int = 3


async def _noop(ctx: Context[Any]) -> None:
    return None


SAMPLE = Processor(
    "sample", ProcessorHelp("Does a thing."), ("issues.opened",), SampleConfig, _noop
)


def test_config_keys_come_from_the_dataclass_fields_with_their_docs_and_defaults() -> None:
    assert config_keys("sample", SampleConfig) == (
        ConfigKeyHelp(
            "enabled",
            "false",
            "off unless the repository's config has a `sample:` section (an empty one will do)",
        ),
        ConfigKeyHelp("label", '"needs: triage"', "the label to add"),
        ConfigKeyHelp("rules", "two rules", "what to match", default_is_prose=True),
        ConfigKeyHelp("limit", "0.5", "at most this"),
        ConfigKeyHelp("undocumented", "3", ""),
    )


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (True, "true"),
        (False, "false"),
        (3, "3"),
        ("plain", "plain"),
        ("a: b", '"a: b"'),
        (("x", "y"), "[x, y]"),
    ],
)
def test_defaults_are_shown_as_yaml_would_spell_them(value: object, shown: str) -> None:
    assert show_default(value) == shown


def test_describe_joins_the_declared_help_with_events_permissions_and_defaults() -> None:
    record = SAMPLE.describe()
    assert record.name == "sample"
    assert record.description == "Does a thing."
    assert record.enabled_by_default is False
    assert record.events == ("issues.opened",)
    assert [key.key for key in record.config] == [
        "enabled",
        "label",
        "rules",
        "limit",
        "undocumented",
    ]
    assert record.as_json()["permissions"] == {}


def test_every_builtin_config_key_says_what_it_means() -> None:
    for processor in BUILTINS:
        record = processor.describe()
        assert record.description.endswith("."), processor.name
        assert record.config[0].key == "enabled"
        undocumented = [key.key for key in record.config if not key.meaning]
        assert undocumented == [], f"{processor.name}: add Doc(...) to {undocumented}"


def test_every_builtin_config_example_is_a_valid_config_of_that_processor() -> None:
    parser = ConfigParser(Registry.load())
    for processor in BUILTINS:
        example = processor.help.config_example
        assert example, f"{processor.name} has no config example"
        config = parser.parse(example, f"{processor.name} example")
        assert not config.errors, processor.name
        assert set(config.sections) == {processor.name}


def test_the_commands_help_lists_exactly_the_commands_the_parser_runs() -> None:
    assert tuple(command.name for command in COMMANDS.help.commands) == NAMES
    for command in COMMANDS.help.commands:
        commands, problems = parse(command.example)
        assert problems == [], command.example
        assert [c.name for c in commands] == [command.name]
        assert command.usage.startswith(f"/{command.name}")
        assert command.who_can_use


def test_help_records_as_json_carry_each_commands_usage() -> None:
    document = COMMANDS.describe().as_json()
    usages = [c["usage"] for c in document["commands"]]
    assert "/label a, b" in usages
    assert document["permissions"] == {"issues": "write", "metadata": "read"}
    assert document["config"][1]["key"] == "priority_prefix"


def test_a_plain_string_is_taken_as_the_description() -> None:
    processor = Processor("plain", "Does one thing.", ("issues",), ProcessorConfig, _noop)  # type: ignore[arg-type]
    assert processor.help == ProcessorHelp("Does one thing.")
    assert processor.describe().description == "Does one thing."


def test_help_of_another_type_is_refused_at_declaration() -> None:
    with pytest.raises(TypeError, match="help must be a ProcessorHelp"):
        Processor("odd", 42, ("issues",), ProcessorConfig, _noop)  # type: ignore[arg-type]
