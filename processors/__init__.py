"""The built-in processors, listed in one place. Third-party ones use the entry-point group."""

from __future__ import annotations

from typing import Any

from github_app.processor import Processor
from processors.commands import COMMANDS
from processors.duplicates import DUPLICATES
from processors.labeler import LABELER
from processors.triage import TRIAGE
from processors.welcome import WELCOME

BUILTINS: tuple[Processor[Any], ...] = (LABELER, TRIAGE, WELCOME, COMMANDS, DUPLICATES)

__all__ = ["BUILTINS"]
