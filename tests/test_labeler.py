"""processors.labeler: rules, matching and config checks, its pure decision, and (through the
real server) its calls."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import respx
from pydantic import TypeAdapter, ValidationError

from processors.labeler import (
    DEFAULT_RULES,
    LabelChange,
    LabelerApi,
    LabelerConfig,
    LabelerFacts,
    compile_rules,
    decide,
    label_issue,
    labels_to_add,
    labels_to_remove,
)
from tests.conftest import make_settings, running_app
from tests.deliveries import issue_event, signed
from tests.processor_helpers import ISSUE_URL, REPO, use_config, writes

CONFIG = TypeAdapter(LabelerConfig)


def config(*rules: dict[str, Any]) -> LabelerConfig:
    """A LabelerConfig validated exactly as a repository's YAML section is."""
    return CONFIG.validate_python({"rules": list(rules)})


def labels(
    cfg: LabelerConfig, title: str, body: str | None = None, existing: tuple[str, ...] = ()
) -> list[str]:
    return labels_to_add(compile_rules(cfg.rules), title, body, existing)


CRASH = config({"label": "bug", "keywords": ["crash"]})


class RecordingApi:
    """The LabelerApi protocol, recording each call in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, list[str]]] = []

    async def add_labels(self, number: int, labels: list[str]) -> None:
        self.calls.append(("add", number, labels))

    async def remove_label(self, number: int, label: str) -> None:
        self.calls.append(("remove", number, [label]))


def facts(
    title: str, body: str | None = None, labels: tuple[str, ...] = (), action: str = "opened"
) -> LabelerFacts:
    return LabelerFacts(action, 7, title, body, labels)


# --- keywords -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "title", ["Crash on start", "it CRASH", "crash", "app crash.", "(crash)", "boom-crash-boom"]
)
def test_keyword_matches_as_a_whole_word_in_any_case(title: str) -> None:
    assert labels(CRASH, title) == ["bug"]


@pytest.mark.parametrize("title", ["crashing on start", "Crashed", "nocrash", "crash_report"])
def test_keyword_does_not_match_inside_a_longer_word(title: str) -> None:
    assert labels(CRASH, title) == []


def test_keyword_in_the_body_matches_too() -> None:
    assert labels(CRASH, "Startup problem", "It is a crash\nevery time") == ["bug"]


def test_no_body_is_the_same_as_an_empty_body() -> None:
    assert labels(CRASH, "Startup problem", None) == []
    assert labels(CRASH, "crash", None) == ["bug"]


def test_multi_word_keyword_matches_the_phrase() -> None:
    cfg = config({"label": "enhancement", "keywords": ["feature request"]})
    assert labels(cfg, "Feature Request: dark mode") == ["enhancement"]
    assert labels(cfg, "feature for request") == []


def test_keywords_with_regex_characters_are_literal() -> None:
    cfg = config({"label": "x", "keywords": ["a.b"]})
    assert labels(cfg, "see a.b here") == ["x"]
    assert labels(cfg, "see axb here") == []


def test_blank_keyword_does_not_label_every_issue() -> None:
    try:
        cfg = config({"label": "x", "keywords": [""]})
    except ValidationError:
        return  # refusing the rule is a correct answer too
    assert labels(cfg, "hello world") == []


def test_keyword_ending_in_punctuation_matches_as_a_whole_word() -> None:
    cfg = config({"label": "cpp", "keywords": ["c++"]})
    assert labels(cfg, "crash in c++ code") == ["cpp"]


# --- patterns -------------------------------------------------------------------------------


def test_pattern_rule_matches_title_or_body() -> None:
    cfg = config({"label": "documentation", "pattern": r"(?i)\bdocs?\b"})
    assert labels(cfg, "Fix the Docs") == ["documentation"]
    assert labels(cfg, "Question", "where is the doc for this?") == ["documentation"]
    assert labels(cfg, "Docker image broken") == []


def test_rule_with_keywords_and_pattern_matches_either() -> None:
    cfg = config({"label": "bug", "keywords": ["crash"], "pattern": r"E\d{4}"})
    assert labels(cfg, "crash") == ["bug"]
    assert labels(cfg, "got E1234") == ["bug"]
    assert labels(cfg, "all fine") == []


def test_pattern_is_case_sensitive_unless_it_says_otherwise() -> None:
    cfg = config({"label": "urgent", "pattern": "URGENT"})
    assert labels(cfg, "URGENT: prod down") == ["urgent"]
    assert labels(cfg, "urgent: prod down") == []


# --- which labels ---------------------------------------------------------------------------


def test_label_the_issue_already_has_in_any_case_is_not_added_again() -> None:
    assert labels(CRASH, "crash", existing=("BUG",)) == []
    assert labels(CRASH, "crash", existing=("Bug", "other")) == []
    assert labels(CRASH, "crash", existing=("other",)) == ["bug"]


def test_several_matching_rules_give_their_labels_in_rule_order() -> None:
    cfg = config(
        {"label": "zeta", "keywords": ["docs"]},
        {"label": "alpha", "keywords": ["crash"]},
        {"label": "mid", "pattern": "broken"},
        {"label": "never", "keywords": ["unrelated"]},
    )
    assert labels(cfg, "broken crash", "see docs") == ["zeta", "alpha", "mid"]


def test_two_rules_for_the_same_label_add_it_once() -> None:
    cfg = config(
        {"label": "bug", "keywords": ["crash"]},
        {"label": "Bug", "pattern": "traceback"},
    )
    assert labels(cfg, "crash with traceback") == ["bug"]


def test_default_rules_label_a_plain_bug_report() -> None:
    cfg = LabelerConfig()
    assert cfg.rules == DEFAULT_RULES
    assert cfg.enabled is True
    assert labels(cfg, "App crashes on launch", "Traceback below") == ["bug"]
    assert labels(cfg, "Typo in README") == ["documentation"]
    assert labels(cfg, "How do I log in?") == []


# --- config errors --------------------------------------------------------------------------


def test_rule_without_keywords_or_pattern_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="needs keywords or a pattern"):
        config({"label": "bug"})


def test_rule_with_empty_keywords_and_no_pattern_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="needs keywords or a pattern"):
        config({"label": "bug", "keywords": []})


def test_pattern_with_a_backreference_is_a_config_error_naming_re2() -> None:
    with pytest.raises(ValidationError, match="RE2") as info:
        config({"label": "dup", "pattern": r"(\w+) \1"})
    assert info.value.errors()[0]["loc"] == ("rules", 0, "pattern")


def test_pattern_with_lookahead_is_a_config_error_naming_re2() -> None:
    with pytest.raises(ValidationError, match="RE2"):
        config({"label": "x", "pattern": r"foo(?=bar)"})


def test_overlong_pattern_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="longer than"):
        config({"label": "x", "pattern": "a" * 5000})


def test_unknown_rule_key_is_a_config_error() -> None:
    with pytest.raises(ValidationError):
        config({"label": "bug", "keywords": ["crash"], "colour": "red"})


def test_catastrophic_backtracking_pattern_is_matched_by_re2_the_linear_time_engine() -> None:
    """RE2 guarantees time linear in the text; Python's re would backtrack for ages here.

    Asserting the engine, not a duration, keeps the test exact on a busy machine."""
    cfg = config({"label": "slow", "pattern": "(a+)+$"})
    rules = compile_rules(cfg.rules)
    assert all(type(rule.matcher).__module__.startswith("re2") for rule in rules)
    text = "a" * 50_000 + "b"
    assert labels_to_add(rules, text, text, ()) == []
    assert labels_to_add(rules, "title", "a" * 50_000, ()) == ["slow"]


# --- decide: the pure decision --------------------------------------------------------------


def test_decide_adds_every_matching_label_the_issue_lacks() -> None:
    cfg = config(
        {"label": "bug", "keywords": ["crash"]},
        {"label": "documentation", "pattern": r"(?i)\bdocs?\b"},
    )
    assert decide(cfg, facts("Crash in docs build", labels=("question",))) == LabelChange(
        ("bug", "documentation"), ()
    )
    assert decide(cfg, facts("Crash in docs build", labels=("Bug",))) == LabelChange(
        ("documentation",), ()
    )


@pytest.mark.parametrize(
    ("remove", "action", "removed"),
    [(True, "edited", ("bug",)), (True, "opened", ()), (False, "edited", ())],
)
def test_decide_removes_only_on_edits_and_only_when_configured(
    remove: bool, action: str, removed: tuple[str, ...]
) -> None:
    cfg = LabelerConfig(rules=CRASH.rules, remove_unmatched=remove)
    assert decide(cfg, facts("fine now", labels=("bug",), action=action)).remove == removed


def test_facts_read_label_names_from_a_real_payload() -> None:
    payload = issue_event("edited", title="T", body="B", labels=["bug", "x"])
    found = LabelerFacts.from_payload(payload)
    assert (found.action, found.title, found.body, found.labels) == (
        "edited",
        "T",
        "B",
        ("bug", "x"),
    )


# --- label_issue: one API call --------------------------------------------------------------


def test_label_issue_adds_all_matching_labels_in_one_call() -> None:
    recorder = RecordingApi()
    api: LabelerApi = recorder
    cfg = config(
        {"label": "bug", "keywords": ["crash"]},
        {"label": "documentation", "pattern": r"(?i)\bdocs?\b"},
    )
    change = asyncio.run(label_issue(api, cfg, facts("Crash in docs build", labels=("question",))))
    assert change.add == ("bug", "documentation")
    assert recorder.calls == [("add", 7, ["bug", "documentation"])]


def test_label_issue_makes_no_call_when_nothing_matches() -> None:
    recorder = RecordingApi()
    change = asyncio.run(label_issue(recorder, CRASH, facts("A question", "How do I do this?")))
    assert change == LabelChange()
    assert recorder.calls == []


def test_label_issue_makes_no_call_when_the_issue_already_has_every_label() -> None:
    recorder = RecordingApi()
    asyncio.run(label_issue(recorder, CRASH, facts("crash", labels=("Bug",))))
    assert recorder.calls == []


def test_label_issue_adds_before_it_removes() -> None:
    recorder = RecordingApi()
    cfg = config({"label": "bug", "keywords": ["crash"]}, {"label": "docs", "keywords": ["readme"]})
    cfg = LabelerConfig(rules=cfg.rules, remove_unmatched=True)
    asyncio.run(label_issue(recorder, cfg, facts("readme typo", labels=("bug",), action="edited")))
    assert recorder.calls == [("add", 7, ["docs"]), ("remove", 7, ["bug"])]


# --- remove_unmatched -----------------------------------------------------------------------


def test_labels_to_remove_names_rule_labels_whose_rules_stopped_matching() -> None:
    cfg = config({"label": "bug", "keywords": ["crash"]}, {"label": "docs", "keywords": ["readme"]})
    rules = compile_rules(cfg.rules)
    assert labels_to_remove(rules, "readme typo", None, ["Bug", "docs", "question"]) == ["Bug"]
    assert labels_to_remove(rules, "crash in readme", None, ["bug", "docs"]) == []


@pytest.mark.anyio
async def test_edit_that_stops_matching_removes_the_label_through_the_server(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(
        github,
        "labeler:\n  remove_unmatched: true\n  rules:\n    - label: bug\n      keywords: [crash]\n",
    )
    github.delete(f"{ISSUE_URL}/1/labels/bug").mock(return_value=httpx.Response(200, json=[]))
    edited = issue_event(
        "edited", title="Question about setup", body="no problem", labels=["bug", "x"]
    )
    async with running_app(make_settings(private_key_pem)) as app:
        assert (await app.post(signed(edited, "issues"))).status_code == 202
        await app.settle()
    assert writes(github) == [("DELETE", f"/repos/{REPO}/issues/1/labels/bug", None)]


@pytest.mark.anyio
async def test_removal_is_off_by_default(github: respx.MockRouter, private_key_pem: str) -> None:
    use_config(github, "labeler:\n  rules:\n    - label: bug\n      keywords: [crash]\n")
    edited = issue_event("edited", title="Question about setup", body="no problem", labels=["bug"])
    async with running_app(make_settings(private_key_pem)) as app:
        assert (await app.post(signed(edited, "issues"))).status_code == 202
        await app.settle()
    assert writes(github) == []
