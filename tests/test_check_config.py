"""``python -m github_app check-config FILE``: the app's own parser, run on a local file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from github_app.cli import main


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "auto-issue-processor.yml"
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_file_exits_0_and_names_its_sections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "_extends: .github\ntriage:\ncommands:\n  priority_prefix: 'p/'\n")
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: OK; sections: commands, triage\n"


def test_invalid_file_prints_every_error_with_its_key_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "triage:\n  label: 5\nduplicates:\n  threshold: 3\nwelcom:\n  message: hi\n",
    )
    assert main(["check-config", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"{path}: ") for line in lines)
    assert any("triage.label:" in line for line in lines)
    assert any("duplicates.threshold:" in line for line in lines)
    assert any("welcom: unknown processor" in line for line in lines)


def test_bad_yaml_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "labeler:\n  rules: [\n")
    assert main(["check-config", str(path)]) == 1
    assert "invalid YAML at line" in capsys.readouterr().out


def test_missing_file_is_one_clear_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", str(tmp_path / "nope.yml")]) == 2
    assert capsys.readouterr().err.startswith("error: cannot read ")


def test_the_module_command_runs_it(tmp_path: Path) -> None:
    path = write(tmp_path, "welcome:\n  message: ''\n")
    result = subprocess.run(
        [sys.executable, "-m", "github_app", "check-config", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1
    assert "welcome.message:" in result.stdout
