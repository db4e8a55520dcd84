"""GitHub's lists a backfill reads: the repository's installation, an installation's
repositories, and a repository's issues page by page.

Issues are listed with ``GET /repos/{owner}/{repo}/issues`` (``per_page=100``,
oldest first by creation, so writes to listed issues do not move page
boundaries), following the ``Link: rel="next"`` URL GitHub sends. That list
holds pull requests too (they carry a ``pull_request`` key): they are skipped.
Every read goes through the installation's client, so it is conditional (ETag
cache) and paced like any other. A page that fails with a 5xx, a timeout or a
rate limit is read again after a backoff (``RetryPolicy``); a 404 means the
repository is unknown or hidden from the installation, and fails the job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from githubkit.exception import GitHubException

from github_app.backfill.job import JobSpec
from github_app.errors import GitHubError, RetryableGitHubError
from github_app.github.gateway import GitHubGateway, as_github_error
from github_app.queue.retry import RetryPolicy

PER_PAGE = 100
PAGE_RETRIES = RetryPolicy(attempts=8, base=1.0, cap=60.0)


class JobFailed(Exception):
    """The job cannot go on; the message is its reason, shown to people."""


@dataclass(frozen=True)
class Page:
    url: str  # what was read (the next page's URL of the page before, or the first page's)
    next_url: str | None
    issues: list[dict[str, Any]]  # pull requests skipped
    pull_requests: int


class Lister:
    """Reads what a backfill job needs from GitHub, retrying what may pass."""

    def __init__(
        self,
        gateway: GitHubGateway,
        *,
        retry: RetryPolicy = PAGE_RETRIES,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._gateway = gateway
        self._retry = retry
        self._sleep = sleep
        self.retries = 0

    async def _get(
        self, installation: int | None, url: str, params: dict[str, Any] | None = None
    ) -> Any:
        """One GET with retries; ``installation`` None: as the app (its JWT)."""
        attempts = 0
        while True:
            attempts += 1
            try:
                if installation is None:
                    if self._gateway.app is None:
                        raise JobFailed("no app credentials: cannot find the installation")
                    client: Any = self._gateway.app
                else:
                    client = self._gateway.installation(installation)
                return await client.arequest("GET", url, params=params)
            except (GitHubException, GitHubError) as exc:
                error = exc if isinstance(exc, GitHubError) else as_github_error(exc)
                if not isinstance(error, RetryableGitHubError) or self._retry.exhausted(attempts):
                    raise error from None
                self.retries += 1
                await self._sleep(self._retry.delay(attempts, error.retry_after))

    async def installation_of(self, repository: str) -> int:
        """The app's installation on ``repository`` (the app's JWT asks GitHub)."""
        try:
            response = await self._get(None, f"/repos/{repository}/installation")
        except GitHubError as exc:
            if exc.status_code == 404:
                raise JobFailed(
                    f"repository {repository} not found, or the app is not installed on it"
                ) from None
            raise
        return int(response.raw_response.json()["id"])

    async def open_issues(self, installation: int, repository: str) -> int:
        """Checks the installation sees ``repository``; its open issues and pull requests."""
        try:
            response = await self._get(installation, f"/repos/{repository}")
        except GitHubError as exc:
            if exc.status_code in (403, 404):
                raise JobFailed(
                    f"repository {repository} not found or not visible to installation "
                    f"{installation} ({exc.status_code})"
                ) from None
            raise
        return int(response.raw_response.json().get("open_issues_count") or 0)

    async def repositories(self, installation: int) -> list[tuple[str, int]]:
        """Every repository of the installation with its open issue count, in GitHub's order."""
        found: list[tuple[str, int]] = []
        url: str | None = "/installation/repositories"
        params: dict[str, Any] | None = {"per_page": PER_PAGE}
        while url is not None:
            response = await self._get(installation, url, params)
            for repository in response.raw_response.json().get("repositories") or ():
                found.append((repository["full_name"], int(repository.get("open_issues_count", 0))))
            url, params = _next(response), None
        return found

    async def page(
        self, installation: int, repository: str, spec: JobSpec, url: str | None
    ) -> Page:
        """One page of issues: the first (``url`` None) or the one ``url`` names."""
        params: dict[str, Any] | None = None
        if url is None:
            params = {
                "state": spec.state,
                "sort": "created",
                "direction": "asc",
                "per_page": PER_PAGE,
            }
            if spec.since is not None:
                params["since"] = spec.since
        try:
            response = await self._get(installation, url or f"/repos/{repository}/issues", params)
        except GitHubError as exc:
            if exc.status_code in (403, 404, 410):
                raise JobFailed(
                    f"cannot list the issues of {repository} ({exc.status_code}): not found, "
                    "not visible to the installation, or issues are turned off"
                ) from None
            raise
        items = response.raw_response.json()
        issues = [item for item in items if isinstance(item, dict) and "pull_request" not in item]
        return Page(
            url=str(response.raw_response.request.url),
            next_url=_next(response),
            issues=issues,
            pull_requests=len(items) - len(issues),
        )


def _next(response: Any) -> str | None:
    link = response.raw_response.links.get("next")
    return str(link["url"]) if link and link.get("url") else None
