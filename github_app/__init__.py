"""auto-issue-processor: a GitHub App that handles every issue event of an organisation."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("auto-issue-processor")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
