"""The README's settings table is generated from the settings model and kept current."""

from __future__ import annotations

from pathlib import Path

import pytest

from github_app.cli import main
from github_app.config import TABLE_END, TABLE_START, Settings, settings_table

README = Path(__file__).resolve().parent.parent / "README.md"
REGENERATE = "python -m github_app settings-table --update README.md"


def test_readme_settings_table_is_the_generated_one() -> None:
    text = README.read_text("utf-8")
    block = text[text.index(TABLE_START) + len(TABLE_START) : text.index(TABLE_END)]
    assert block.strip() == settings_table().strip(), (
        f"README.md's settings table is stale: run `{REGENERATE}`"
    )


def test_the_table_has_one_row_per_setting_with_its_help() -> None:
    rows = settings_table().splitlines()[2:]
    assert len(rows) == len(Settings.model_fields)
    for row, (name, field) in zip(rows, Settings.model_fields.items(), strict=True):
        assert row.startswith(f"| `{name.upper()}` |")
        assert field.description
        assert row.endswith(f"| {field.description} |")
    port = next(row for row in rows if row.startswith("| `PORT` |"))
    assert port == (
        "| `PORT` | `3000` | a whole number between 0 and 65535 | listen port (`--port`) |"
    )


def test_settings_table_command_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings-table"]) == 0
    assert capsys.readouterr().out == settings_table()


def test_settings_table_update_rewrites_only_the_block_between_the_markers(
    tmp_path: Path,
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\n{TABLE_START}\n| stale |\n{TABLE_END}\n\nAfter.\n", "utf-8")
    assert main(["settings-table", "--update", str(readme)]) == 0
    assert readme.read_text("utf-8") == (
        f"# Title\n\n{TABLE_START}\n{settings_table()}{TABLE_END}\n\nAfter.\n"
    )


def test_settings_table_update_of_a_file_without_markers_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no table here\n", "utf-8")
    assert main(["settings-table", "--update", str(readme)]) == 2
    assert capsys.readouterr().err == f"error: {readme} has no settings-table markers\n"
    assert readme.read_text("utf-8") == "# no table here\n"
