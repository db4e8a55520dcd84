"""The built-in processors, listed in one place. Third-party ones use the entry-point group.

Every module here has one shape (``triage.py`` is the shortest and the model):
its config dataclass (each key with a ``Doc``), a ``Protocol`` of only the
GitHub calls it makes (``issue_api.IssueApi`` implements them all), a frozen
``...Facts`` read from the payload, a pure ``decide``, a thin ``handle``, and
last the ``Processor`` value with its ``ProcessorHelp``: what people read on
``GET /help``, in ``python -m github_app help`` and in the README.
"""

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
