"""Unit tests for the pure part of github_app.dispatch.repo_config: ConfigParser."""

from __future__ import annotations

import anyio
import httpx
import pytest
import respx
from githubkit import GitHub, TokenAuthStrategy

from github_app.control.feedback import Observation, note_work, reporting
from github_app.dispatch.registry import Registry
from github_app.dispatch.repo_config import (
    MAX_CONFIG_BYTES,
    MAX_ERROR_CHARS,
    MAX_REPORTED_ERRORS,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    Budget,
    ConfigParser,
    ConfigTooCostly,
    RepoConfig,
    RepoConfigStore,
    extends_target,
)
from processors import BUILTINS
from processors.labeler import (
    DEFAULT_RULES,
    LABELER,
    MAX_KEYWORDS,
    MAX_RULES,
    LabelerConfig,
    LabelRule,
)
from tests.conftest import config_url

SOURCE = "octo/hello"

VALID = """\
labeler:
  rules:
    - label: bug
      keywords: [crash, traceback, exception]  # whole words, any case
    - label: documentation
      pattern: '(?i)\\bdocs?\\b'
"""


@pytest.fixture
def parser() -> ConfigParser:
    return ConfigParser(BUILTINS)


def only_error(config: RepoConfig) -> str:
    assert config.sections == {}
    assert len(config.errors) == 1
    return config.errors[0]


def test_valid_yaml_with_labeler_rules_gives_a_labeler_config(parser: ConfigParser) -> None:
    config = parser.parse(VALID, SOURCE)
    assert config.errors == ()
    assert config.source == SOURCE
    labeler = config.sections["labeler"]
    assert isinstance(labeler, LabelerConfig)
    assert labeler.enabled is True
    assert labeler.rules == (
        LabelRule("bug", ("crash", "traceback", "exception")),
        LabelRule("documentation", pattern=r"(?i)\bdocs?\b"),
    )
    assert config.for_processor(LABELER) is labeler


def test_parser_built_from_the_registry_knows_the_builtin_processors() -> None:
    parser = ConfigParser(Registry.load())
    config = parser.parse(b"labeler:\n  enabled: false\n", SOURCE)
    assert config.errors == ()
    assert config.sections["labeler"] == LabelerConfig(enabled=False)


@pytest.mark.parametrize("text", ["", "\n", "# only a comment\n", "---\n", b""])
def test_empty_file_gives_defaults_without_errors(parser: ConfigParser, text: str | bytes) -> None:
    config = parser.parse(text, SOURCE)
    assert config.errors == ()
    assert config.sections == {}
    defaults = config.for_processor(LABELER)
    assert isinstance(defaults, LabelerConfig)
    assert defaults.rules == DEFAULT_RULES


def test_empty_labeler_section_gives_labeler_defaults(parser: ConfigParser) -> None:
    config = parser.parse("labeler:\n", SOURCE)
    assert config.errors == ()
    assert config.sections["labeler"] == LabelerConfig()


def test_bad_yaml_is_an_error_that_says_which_line(parser: ConfigParser) -> None:
    error = only_error(parser.parse("labeler:\n  rules: [bug\n  enabled: true\n", SOURCE))
    assert "invalid YAML" in error
    assert "line " in error


def test_yaml_with_bad_indentation_is_an_error_naming_line_three(parser: ConfigParser) -> None:
    error = only_error(parser.parse("labeler:\n  enabled: true\n bad: indent\n", SOURCE))
    assert "line 3" in error


def test_top_level_list_is_an_error(parser: ConfigParser) -> None:
    error = only_error(parser.parse("- labeler\n- triage\n", SOURCE))
    assert "mapping" in error


def test_top_level_scalar_is_an_error(parser: ConfigParser) -> None:
    assert only_error(parser.parse("just some text\n", SOURCE))


def test_unknown_processor_key_is_an_error_naming_it(parser: ConfigParser) -> None:
    config = parser.parse("labeller:\n  enabled: true\n", SOURCE)
    error = only_error(config)
    assert "labeller" in error
    assert "unknown processor" in error
    assert "labeler" in error.split("labeller", 1)[1]  # lists the known ones


def test_non_utf8_file_is_an_error(parser: ConfigParser) -> None:
    assert "UTF-8" in only_error(parser.parse(b"labeler: \xff\xfe\n", SOURCE))


def test_oversized_file_is_an_error(parser: ConfigParser) -> None:
    text = "# " + "x" * MAX_CONFIG_BYTES + "\n"
    assert "larger than" in only_error(parser.parse(text, SOURCE))


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("labeler: {enabled: maybe}\n", "labeler.enabled"),
        ("labeler:\n  rules: 5\n", "labeler.rules"),
        ("labeler:\n  rules:\n    - label: bug\n", "labeler.rules.0"),
        (
            "labeler:\n  rules:\n    - label: bug\n      keywords: crash-is-not-a-list\n",
            "labeler.rules.0.keywords",
        ),
        (
            "labeler:\n  rules:\n    - label: dup\n      pattern: '(a)\\1'\n",
            "labeler.rules.0.pattern",
        ),
        ("labeler:\n  colour: red\n", "labeler.colour"),
    ],
)
def test_wrong_type_is_an_error_with_the_dotted_key_path(
    parser: ConfigParser, text: str, path: str
) -> None:
    config = parser.parse(text, SOURCE)
    assert config.sections == {}
    assert config.errors
    assert any(error.startswith(f"{path}:") for error in config.errors), config.errors


def test_invalid_file_never_half_applies(parser: ConfigParser) -> None:
    config = parser.parse("labeler: {enabled: false}\nnope: {}\n", SOURCE)
    assert config.sections == {}
    assert len(config.errors) == 1
    assert config.errors[0].startswith("nope: unknown processor (known: ")
    assert "labeler" in config.errors[0]
    assert config.for_processor(LABELER).enabled is True


def test_validate_accepts_and_ignores_the_extends_key(parser: ConfigParser) -> None:
    sections, errors = parser.validate({"_extends": "octo/.github", "labeler": {"enabled": False}})
    assert errors == []
    assert set(sections) == {"labeler"}
    assert sections["labeler"] == LabelerConfig(enabled=False)


def test_parse_accepts_a_file_with_extends(parser: ConfigParser) -> None:
    config = parser.parse("_extends: .github\n", SOURCE)
    assert config.errors == ()
    assert config.sections == {}


def test_validate_collects_every_problem_of_a_document(parser: ConfigParser) -> None:
    _, errors = parser.validate({"labeler": {"enabled": "maybe", "rules": 5}, "other": {}})
    assert len(errors) == 3
    assert any(error.startswith("labeler.enabled:") for error in errors)
    assert any(error.startswith("labeler.rules:") for error in errors)
    assert any(error.startswith("other:") for error in errors)


def test_labeler_false_does_not_silently_enable_the_labeler(parser: ConfigParser) -> None:
    config = parser.parse("labeler: false\n", SOURCE)
    enabled = config.for_processor(LABELER).enabled
    assert config.errors or not enabled


def test_yaml_alias_is_refused_with_its_line(parser: ConfigParser) -> None:
    text = "labeler:\n  rules:\n    - label: bug\n      keywords: [a]\ntriage: *x\n"
    error = only_error(parser.parse(text, SOURCE))
    assert "aliases" in error and "line 5" in error


def test_yaml_anchor_is_refused_even_without_an_alias(parser: ConfigParser) -> None:
    error = only_error(parser.parse("labeler: &base\n  enabled: true\n", SOURCE))
    assert "anchors (&base)" in error and "line 1" in error


def test_a_document_with_too_many_values_is_refused_before_it_is_built(
    parser: ConfigParser,
) -> None:
    text = "x: [" + ",".join("1" * (MAX_YAML_NODES + 1)) + "]\n"
    assert len(text) < MAX_CONFIG_BYTES
    error = only_error(parser.parse(text, SOURCE))
    assert f"more than {MAX_YAML_NODES} values" in error


def test_a_deeply_nested_document_is_refused(parser: ConfigParser) -> None:
    text = "x: " + "[" * (MAX_YAML_DEPTH + 1) + "]" * (MAX_YAML_DEPTH + 1) + "\n"
    assert f"more than {MAX_YAML_DEPTH} levels" in only_error(parser.parse(text, SOURCE))


def test_reported_errors_are_capped_and_the_last_counts_the_rest(parser: ConfigParser) -> None:
    text = "".join(f"unknown{i}: 1\n" for i in range(500))
    config = parser.parse(text, SOURCE)
    assert len(config.errors) == MAX_REPORTED_ERRORS
    assert config.errors[0].startswith("unknown0: unknown processor")
    assert config.errors[-1] == f"... and {500 - MAX_REPORTED_ERRORS + 1} more errors"


def test_a_long_error_is_shortened(parser: ConfigParser) -> None:
    error = only_error(parser.parse("x" * 1000 + ": 1\n", SOURCE))
    assert len(error) == MAX_ERROR_CHARS
    assert error.endswith("...")


def test_reading_past_the_time_budget_is_an_error(parser: ConfigParser) -> None:
    ticks = iter(range(1000))
    budget = Budget(2.0, clock=lambda: float(next(ticks)))  # each look at the clock: 1 s later
    text = "".join(f"unknown{i}: 1\n" for i in range(5))
    error = only_error(parser.parse(text, SOURCE, budget))
    assert "longer than 2 s" in error


def test_labeler_rules_and_keywords_are_capped(parser: ConfigParser) -> None:
    rules = "".join(f"    - {{label: l{i}, keywords: [w]}}\n" for i in range(MAX_RULES + 1))
    error = only_error(parser.parse("labeler:\n  rules:\n" + rules, SOURCE))
    assert error.startswith("labeler.rules:") and f"at most {MAX_RULES}" in error
    words = ", ".join(f"w{i}" for i in range(MAX_KEYWORDS + 1))
    text = f"labeler:\n  rules:\n    - {{label: bug, keywords: [{words}]}}\n"
    error = only_error(parser.parse(text, SOURCE))
    assert error.startswith("labeler.rules.0.keywords:") and f"at most {MAX_KEYWORDS}" in error
    text = f"labeler:\n  rules:\n    - {{label: bug, keywords: [{'w' * 101}]}}\n"
    assert "longer than 100 characters" in only_error(parser.parse(text, SOURCE))


def test_a_validated_labeler_config_is_compiled_already(parser: ConfigParser) -> None:
    config = parser.parse(VALID, SOURCE).sections["labeler"]
    assert "compiled" in vars(config)  # compiled where the config was read, not per event
    assert [rule.label for rule in config.compiled] == ["bug", "documentation"]


@pytest.mark.parametrize(
    ("value", "target"),
    [("shared", ("octo", "shared")), ("other-org/.github", ("other-org", ".github"))],
)
def test_extends_names_a_repository_of_the_owner_or_another(
    value: str, target: tuple[str, str]
) -> None:
    assert extends_target(value, "octo") == target


@pytest.mark.parametrize("value", ["../../x", "a/b/c", "o/r?x=1", "o/r#x", "..", "", 3, "-o/r"])
def test_extends_outside_githubs_name_shapes_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="must be 'repo' or 'owner/repo'"):
        extends_target(value, "octo")


def test_check_config_reports_a_bad_extends(parser: ConfigParser) -> None:
    assert only_error(parser.parse("_extends: ../../orgs/x\n", SOURCE)).startswith("_extends:")


def test_the_time_budget_is_checked_between_patterns_inside_one_section(
    parser: ConfigParser,
) -> None:
    ticks = iter(range(1000))
    budget = Budget(2.0, clock=lambda: float(next(ticks)))  # each look at the clock: 1 s later
    rules = "".join(f"    - {{label: l{i}, pattern: 'w{i}'}}\n" for i in range(5))
    error = only_error(parser.parse("labeler:\n  rules:\n" + rules, SOURCE, budget))
    assert "longer than 2 s" in error  # one section: only the checks per pattern could see it


def test_time_the_budget_is_paused_does_not_count() -> None:
    now = [0.0]
    budget = Budget(2.0, clock=lambda: now[0])
    budget.pause()
    now[0] = 60.0  # waiting for the reader thread or for GitHub
    budget.resume()
    now[0] = 61.5
    budget.check()  # 1.5 s of work
    now[0] = 62.5
    with pytest.raises(ConfigTooCostly):
        budget.check()


@pytest.mark.anyio
async def test_a_config_whose_extends_base_is_slow_to_arrive_is_not_refused_as_too_costly(
    github: respx.MockRouter,
) -> None:
    """GitHub taking long to answer (or the reader thread busy with other tenants' configs
    during a burst) is not the config's cost: only the time spent reading it counts."""
    now = [0.0]

    def slow_base(request: httpx.Request) -> httpx.Response:
        now[0] += 30.0  # the base arrives 30 s later on the budget's clock
        return httpx.Response(200, text=VALID)

    github.get(config_url("octo/hello")).mock(
        return_value=httpx.Response(200, text="_extends: org-config\n")
    )
    github.get(config_url("octo/org-config")).mock(side_effect=slow_base)
    store = RepoConfigStore(BUILTINS, budget=2.0, budget_clock=lambda: now[0])
    async with GitHub(TokenAuthStrategy("ghs_test")) as client:
        config = await store.get(client, "octo/hello")
    assert now[0] == 30.0
    assert config.errors == ()
    assert isinstance(config.sections["labeler"], LabelerConfig)


class GatedGitHub(httpx.AsyncBaseTransport):
    """Answers every config read with ``VALID``, once the test lets it."""

    def __init__(self) -> None:
        self.asked = anyio.Event()
        self.answer = anyio.Event()
        self.reads = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.reads += 1
        self.asked.set()
        await self.answer.wait()
        return httpx.Response(200, text=VALID)


@pytest.mark.anyio
async def test_waiting_for_another_events_read_of_the_config_is_the_apps_own_wait() -> None:
    now = [0.0]
    gated = GatedGitHub()
    store = RepoConfigStore(BUILTINS, clock=lambda: now[0])
    seen: list[Observation] = []

    async def event(client: GitHub[TokenAuthStrategy]) -> None:
        with reporting(seen.append, clock=lambda: now[0]):
            note_work()
            await store.get(client, SOURCE)

    async with (
        GitHub(TokenAuthStrategy("ghs_test"), async_transport=gated) as client,
        anyio.create_task_group() as group,
    ):
        group.start_soon(event, client)
        await gated.asked.wait()
        group.start_soon(event, client)  # the same repository: it waits for that read
        await anyio.wait_all_tasks_blocked()
        now[0] += 3.0  # GitHub (or the token mint the read waits for) takes 3 s
        gated.answer.set()
    assert gated.reads == 1
    # the reading event spent them on its request; the other waited for the app's own read
    assert sorted(observation.latency for observation in seen) == [0.0, 3.0]
