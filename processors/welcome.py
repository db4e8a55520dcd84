"""welcome: greets a person on the first issue they open in the repository.

The payload's ``author_association`` decides first, without any API call:
owners, members, collaborators and contributors are never greeted. For
``FIRST_TIMER``, ``FIRST_TIME_CONTRIBUTOR`` and ``NONE`` the app lists that
person's issues in the repository (one request) and comments only when this
is their first. ``{user}`` in the message becomes an @-mention of the author.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from pydantic import Field

from github_app.processor import Context, Processor, ProcessorConfig
from github_app.processor_help import Doc, ProcessorHelp
from processors.issue_api import IssueApi, has_marker, marker

MARKER_KIND = "welcome"
NEWCOMER_ASSOCIATIONS = frozenset({"FIRST_TIMER", "FIRST_TIME_CONTRIBUTOR", "NONE"})
DEFAULT_MESSAGE = (
    "Thanks for opening your first issue here, {user}! "
    "A maintainer will look at it soon; meanwhile, please make sure it says how to "
    "reproduce the problem."
)


@dataclass(frozen=True)
class WelcomeConfig(ProcessorConfig):
    enabled: bool = False  # opt-in: a `welcome:` section turns it on
    message: Annotated[
        str,
        Field(min_length=1, max_length=10_000),
        Doc(
            "the comment; `{user}` becomes an @-mention of the author",
            shown="a thank-you that asks how to reproduce the problem",
        ),
    ] = DEFAULT_MESSAGE


class WelcomeApi(Protocol):
    async def issues_by(self, login: str, per_page: int = 10) -> list[dict[str, Any]]: ...

    async def comment_bodies(self, number: int, since: str | None = None) -> list[str]: ...

    async def comment(self, number: int, body: str) -> None: ...


@dataclass(frozen=True)
class WelcomeFacts:
    """What welcome reads from an ``issues.opened`` payload."""

    number: int
    author: str
    author_type: str
    association: str
    created_at: str | None

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> WelcomeFacts:
        issue = payload["issue"]
        user = issue.get("user") or {}
        return cls(
            int(issue["number"]),
            str(user.get("login") or ""),
            str(user.get("type") or "User"),
            str(issue.get("author_association") or ""),
            issue.get("created_at"),
        )


def could_be_first(issue: WelcomeFacts) -> bool:
    """From the payload alone: may this be the author's first issue here?"""
    return (
        bool(issue.author)
        and issue.author_type != "Bot"
        and issue.association in NEWCOMER_ASSOCIATIONS
    )


def decide(issue: WelcomeFacts, their_issues: Sequence[Mapping[str, Any]]) -> bool:
    """Is this the author's first issue here, given the issues they opened (any state)?"""
    if not could_be_first(issue):
        return False
    return not any(
        "pull_request" not in item and item.get("number") != issue.number for item in their_issues
    )


def render(config: WelcomeConfig, issue: WelcomeFacts) -> str:
    return f"{config.message.replace('{user}', '@' + issue.author)}\n\n{marker(MARKER_KIND)}"


async def welcome(api: WelcomeApi, config: WelcomeConfig, issue: WelcomeFacts) -> bool:
    """Comment when this is the author's first issue here and no welcome is there yet."""
    if not could_be_first(issue) or not decide(issue, await api.issues_by(issue.author)):
        return False
    if has_marker(await api.comment_bodies(issue.number, since=issue.created_at), MARKER_KIND):
        return False  # a redelivery: the welcome is already there
    await api.comment(issue.number, render(config, issue))
    return True


async def handle(ctx: Context[WelcomeConfig]) -> None:
    issue = WelcomeFacts.from_payload(ctx.payload)
    if await welcome(IssueApi(ctx.github, ctx.owner, ctx.repo), ctx.config, issue):
        ctx.log.info("welcome: greeted %s on #%s", issue.author, issue.number)


WELCOME: Processor[WelcomeConfig] = Processor(
    name="welcome",
    help=ProcessorHelp(
        description="Comments a welcome on the first issue a person opens in the repository.",
        details=(
            "The payload's `author_association` rules out owners, members, collaborators and "
            "contributors without any API call; for `FIRST_TIMER`, `FIRST_TIME_CONTRIBUTOR` "
            "and `NONE` it reads the person's issues here (pull requests excluded) and the "
            "issue's comments (for its marker) before posting.",
        ),
        config_example=(
            "welcome:\n"
            "  message: |\n"
            "    Thanks for opening your first issue here, {user}!\n"
            "    Please say how to reproduce the problem.\n"
        ),
    ),
    events=("issues.opened",),
    config_type=WelcomeConfig,
    handle=handle,
    permissions={"issues": "write", "metadata": "read"},
)
