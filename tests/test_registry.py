"""Processor registration: built-ins, third-party entry points, and lookups by event."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from github_app.dispatch.registry import ENTRY_POINT_GROUP, Registry
from github_app.errors import SettingsError
from github_app.processor import Context, Processor, ProcessorConfig
from github_app.processor_help import ProcessorHelp


async def _noop(ctx: Context[Any]) -> None:
    return None


def make(name: str, *events: str) -> Processor[ProcessorConfig]:
    return Processor(name, ProcessorHelp("test"), events, ProcessorConfig, _noop)


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory on sys.path where tests install a tiny third-party distribution."""
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith("aip_test_plugin")]:
            del sys.modules[name]


def install_plugin(root: Path, target: str, module_source: str) -> None:
    (root / "aip_test_plugin.py").write_text(module_source)
    dist = root / "aip_test_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: aip-test-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nstale = {target}\n")


def test_builtins_are_loaded_and_the_labeler_handles_opened_and_edited_issues() -> None:
    registry = Registry.load()
    opened = [p.name for p in registry.for_event("issues", "opened")]
    assert opened == ["labeler", "triage", "welcome", "duplicates"]
    assert [p.name for p in registry.for_event("issues", "edited")] == ["labeler", "duplicates"]
    assert [p.name for p in registry.for_event("issues", "closed")] == ["triage", "duplicates"]
    assert [p.name for p in registry.for_event("issue_comment", "created")] == ["commands"]
    assert registry.for_event("issues", "milestoned") == ()
    assert not registry.subscribes("star", "created")


def test_a_processor_subscribed_to_a_whole_event_gets_every_action() -> None:
    registry = Registry([make("all", "issue_comment"), make("one", "issue_comment.created")])
    assert [p.name for p in registry.for_event("issue_comment", "created")] == ["all", "one"]
    assert [p.name for p in registry.for_event("issue_comment", "deleted")] == ["all"]


def test_two_processors_with_one_name_are_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="labeler"):
        Registry([make("labeler", "issues"), make("labeler", "push")])


def test_third_party_processor_from_an_entry_point_is_registered(plugin_dir: Path) -> None:
    install_plugin(
        plugin_dir,
        "aip_test_plugin:PROCESSOR",
        "from github_app.processor import Processor, ProcessorConfig\n"
        "from github_app.processor_help import ProcessorHelp\n"
        "async def handle(ctx):\n    return None\n"
        "PROCESSOR = Processor('stale', ProcessorHelp('closes stale issues'), ('issues.labeled',),"
        " ProcessorConfig, handle)\n",
    )
    registry = Registry.load()
    assert registry.get("stale") is not None
    assert [p.name for p in registry.for_event("issues", "labeled")][-1] == "stale"
    assert registry.get("labeler") is not None


def test_an_entry_point_that_is_not_a_processor_is_a_clear_start_up_error(
    plugin_dir: Path,
) -> None:
    install_plugin(plugin_dir, "aip_test_plugin:PROCESSOR", "PROCESSOR = 42\n")
    with pytest.raises(SettingsError, match=r"'stale'.*is not a Processor"):
        Registry.load()


def test_an_entry_point_that_fails_to_import_is_a_clear_start_up_error(plugin_dir: Path) -> None:
    install_plugin(plugin_dir, "aip_test_plugin:PROCESSOR", "raise ImportError('missing dep')\n")
    with pytest.raises(SettingsError, match="failed to load: missing dep"):
        Registry.load()
