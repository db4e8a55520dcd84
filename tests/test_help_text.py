"""github_app.help_text and ``python -m github_app help``: the terminal text, and the README's
processor reference, which must match the help records."""

from __future__ import annotations

from pathlib import Path

import pytest

from github_app import __version__, help_text
from github_app.cli import main
from github_app.generated_text import between
from processors import BUILTINS

ROOT = Path(__file__).resolve().parent.parent
RECORDS = [processor.describe() for processor in BUILTINS]


def test_readme_processor_reference_is_generated_from_the_help_records() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    assert between(readme, help_text.BEGIN, help_text.END) == help_text.markdown(RECORDS), (
        f"README.md's processor reference is stale: run `{help_text.REGENERATE}`"
    )


def test_update_readme_rewrites_only_the_generated_section(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = tmp_path / "README.md"
    stale = (
        f"# Title\n\nhand-written\n\n{help_text.BEGIN}\nold table\n{help_text.END}\n\n## After\n"
    )
    readme.write_text(stale, "utf-8")
    assert main(["help", "--update", str(readme)]) == 0
    after = readme.read_text("utf-8")
    assert after.startswith(f"# Title\n\nhand-written\n\n{help_text.BEGIN}\n| processor |")
    assert after.endswith(f"{help_text.END}\n\n## After\n")
    assert "old table" not in after
    assert between(after, help_text.BEGIN, help_text.END) == help_text.markdown(RECORDS)
    assert "updated" in capsys.readouterr().out
    assert main(["help", "--update", str(readme)]) == 0
    assert readme.read_text("utf-8") == after
    assert "already current" in capsys.readouterr().out


def test_update_readme_without_the_markers_is_a_clear_error_and_changes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no markers here\n", "utf-8")
    assert main(["help", "--update", str(readme)]) == 2
    assert capsys.readouterr().err == f"error: {readme} has no processor-reference markers\n"
    assert readme.read_text("utf-8") == "# no markers here\n"


def test_help_prints_every_processor_command_and_config_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"auto-issue-processor {__version__}: the processors of this app\n")
    for record in RECORDS:
        assert (
            f"\n{record.name} ({'on' if record.enabled_by_default else 'off'} by default)\n" in out
        )
        for key in record.config:
            assert f"    {key.key}: " in out
    assert "    /assign @user ... | me: assigns one or more people\n" in out
    assert "who: people with triage access or more to the repository" in out
    assert "<" not in out.replace("<!--", "")  # plain text, no markup


def test_help_markdown_prints_the_readme_section(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["help", "--markdown"]) == 0
    assert capsys.readouterr().out == help_text.markdown(RECORDS)


def test_markdown_table_cells_escape_pipes() -> None:
    section = help_text.markdown(RECORDS)
    assert "| `/priority critical\\|high\\|normal\\|low` |" in section
    for line in section.splitlines():
        if line.startswith("| `/priority"):
            assert line.replace("\\|", "").count("|") == 5
