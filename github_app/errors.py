"""One exception family for the project, each carrying what a caller needs to answer."""

from __future__ import annotations


class AppError(Exception):
    """Base of every error this package raises on purpose."""


class SettingsError(AppError):
    """The settings cannot start the app; the message is one line meant for the operator."""


class WebhookError(AppError):
    """A delivery is refused before it is queued; carries the HTTP status to answer with."""

    def __init__(self, status_code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.reason = reason
        self.message = message


class GitHubError(AppError):
    """A GitHub call failed in a way the caller should know about."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class RetryableGitHubError(GitHubError):
    """A failure that may pass: 5xx, timeouts, rate limits. The event may be tried again.

    ``retry_after`` is set for a rate limit only, and only by the client layer
    (``github.ratelimit`` decides what is one): how many seconds GitHub asked
    us to wait, or our own layer must wait before sending (a paused
    installation). The queue waits at least that long.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after

    @property
    def rate_limited(self) -> bool:
        """A throttle (GitHub keeping its limits), not GitHub failing."""
        return self.retry_after is not None


class StoreUnavailable(AppError):
    """A store the replicas share (Redis) did not answer; what needed it is tried again later.
    The message names the store, never its URL."""


class Deferred(AppError):
    """The event's installation must wait (budget under reserve, secondary-limit pause).

    Raised before any processor runs; the event goes back to its place in the
    queue, not before ``until`` (``time.monotonic()`` seconds), and the try
    does not count as an attempt.
    """

    def __init__(self, until: float, reason: str) -> None:
        super().__init__(f"deferred until {until:.3f}: {reason}")
        self.until = until
        self.reason = reason


class InstallationGone(GitHubError):
    """The installation was removed or suspended: its events can no longer be processed."""


class ConfigError(AppError):
    """A repository's config file is invalid; ``problems`` lists each offending key."""

    def __init__(self, repository: str, problems: list[str]) -> None:
        super().__init__(f"{repository}: invalid config: " + "; ".join(problems))
        self.repository = repository
        self.problems = problems
