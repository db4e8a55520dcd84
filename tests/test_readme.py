"""The README's commands are the ones CI and users actually run."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_command(marker: str) -> str:
    lines = (ROOT / "README.md").read_text("utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(marker))
    return lines[start + 1].strip()


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    command = readme_command("# 2. install and run the tests")
    assert command.endswith("python -m pytest")
    ci_lines = (ROOT / ".ci" / "run").read_text("utf-8").splitlines()
    assert command in ci_lines


def test_readme_run_command_serves_the_app() -> None:
    command = readme_command("# 1. install and run the app")
    assert command.endswith("python -m github_app serve")
    assert "pip install -e ." in command
