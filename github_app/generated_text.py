"""Text regenerated between two marker lines of a hand-written document.

The README keeps its prose by hand and two references generated from the
code (the settings table from ``config.Settings``, the processor reference
from the processors' help records): each sits between its own begin and end
markers, is rewritten by a CLI command, and a test compares it with what the
code would write now.
"""

from __future__ import annotations

from pathlib import Path

from github_app.errors import SettingsError


def _span(document: str, begin: str, end: str) -> tuple[int, int]:
    start = document.index(begin) + len(begin)  # ValueError when a marker is missing
    return start, document.index(end, start)


def between(document: str, begin: str, end: str) -> str:
    """What ``replace_between`` wrote: the text after ``begin``'s line, up to ``end``."""
    start, stop = _span(document, begin, end)
    return document[start + 1 : stop]


def replace_between(document: str, begin: str, end: str, section: str) -> str:
    """``document`` with the text between the markers replaced by ``section``."""
    start, stop = _span(document, begin, end)
    return f"{document[:start]}\n{section}{document[stop:]}"


def rewrite(path: Path, begin: str, end: str, section: str, what: str) -> bool:
    """Regenerate ``what`` in the file at ``path``; whether it changed. One-line errors."""
    try:
        before = path.read_text("utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror}") from None
    try:
        after = replace_between(before, begin, end, section)
    except ValueError:
        raise SettingsError(f"{path} has no {what} markers") from None
    if after != before:
        path.write_text(after, "utf-8")
    return after != before
