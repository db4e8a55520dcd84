"""commands: slash commands in issue comments, one per line.

Only people with at least *triage* access to the repository may run them,
except ``/assign me`` on an issue they opened themselves. A refused or
malformed command gets one reply that says why. Lines inside code blocks
(fenced or indented) and quotes (``>``) are not commands; a line whose first
word is not one of the commands in ``HELP`` is ordinary text. When a comment is
edited, only commands it did not have before are run. All commands of one
comment are applied together: at most one call to add labels, one per label
removed, one per assignee change and one to change the state.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

from cachetools import TTLCache
from pydantic import Field

from github_app.processor import Context, Processor, ProcessorConfig
from github_app.processor_help import CommandHelp, Doc, ProcessorHelp
from processors.issue_api import (
    IssueApi,
    code_span,
    has_marker,
    is_own_comment,
    label_names,
    marker,
)

PRIORITIES = ("critical", "high", "normal", "low")
TRIAGERS = "people with triage access or more to the repository"
HELP = (
    CommandHelp("label", "a, b", "adds labels `a` and `b`", TRIAGERS, "/label bug, help wanted"),
    CommandHelp("unlabel", "a, b", "removes labels `a` and `b`", TRIAGERS, "/unlabel question"),
    CommandHelp(
        "assign",
        "@user ... | me",
        "assigns one or more people",
        f"{TRIAGERS}; anyone may `/assign me` on an issue they opened",
        "/assign @octocat",
    ),
    CommandHelp("unassign", "@user ... | me", "unassigns people", TRIAGERS, "/unassign me"),
    CommandHelp("close", "", "closes the issue", TRIAGERS, "/close"),
    CommandHelp("reopen", "", "reopens the issue", TRIAGERS, "/reopen"),
    CommandHelp(
        "priority",
        "|".join(PRIORITIES),
        "sets one `priority/...` label (the configured prefix), replacing another",
        TRIAGERS,
        "/priority high",
    ),
)
NAMES = tuple(command.name for command in HELP)
TRIAGE_ROLES = frozenset({"triage", "write", "maintain", "admin"})
LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
PERMISSION_TTL = 300.0


@dataclass(frozen=True)
class CommandsConfig(ProcessorConfig):
    enabled: bool = False  # opt-in: a `commands:` section turns it on
    priority_prefix: Annotated[
        str,
        Field(min_length=1, max_length=40),
        Doc("what `/priority high` puts before `high` to make the label"),
    ] = "priority/"


@dataclass(frozen=True)
class Command:
    name: str
    args: tuple[str, ...]
    line: str


@dataclass(frozen=True)
class Problem:
    line: str
    reason: str


def command_lines(body: str) -> list[str]:
    """Lines that may be commands: outside fenced or indented code, quotes and HTML comments."""
    found: list[str] = []
    fence: str | None = None
    in_html_comment = False
    for raw in body.replace("\r\n", "\n").split("\n"):
        opening = FENCE.match(raw)
        if fence is not None:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = None
            continue
        if opening:
            fence = opening.group(1)
            continue
        if in_html_comment:
            in_html_comment = "-->" not in raw
            continue
        if raw.lstrip().startswith("<!--"):
            in_html_comment = "-->" not in raw
            continue
        if raw.startswith(("    ", "\t")) or raw.lstrip().startswith(">"):
            continue
        line = raw.strip()
        if line.startswith("/"):
            found.append(line)
    return found


def parse(body: str) -> tuple[list[Command], list[Problem]]:
    """The commands of a comment in order, and the malformed ones with the reason."""
    commands: list[Command] = []
    problems: list[Problem] = []
    for line in command_lines(body):
        word, _, rest = line[1:].partition(" ")
        name = word.lower()
        if name not in NAMES:
            continue  # "/usr/bin is missing" is text, not a command
        rest = rest.strip()
        reason: str | None = None
        args: tuple[str, ...] = ()
        if name in ("label", "unlabel"):
            args = tuple(part.strip().strip("\"'").strip() for part in rest.split(","))
            args = tuple(a for a in args if a)
            if not args:
                reason = f"/{name} needs at least one label, e.g. /{name} bug, help wanted"
            elif any(len(a) > 50 for a in args):
                reason = "label names are at most 50 characters"
        elif name in ("assign", "unassign"):
            args = tuple(a.lstrip("@") for a in re.split(r"[\s,]+", rest) if a.strip("@"))
            bad = [a for a in args if a.lower() != "me" and not LOGIN.match(a)]
            if not args:
                reason = f"/{name} needs @user or me"
            elif bad:
                reason = f"not a GitHub login: {code_span(bad[0][:40])}"
        elif name == "priority":
            args = (rest.lower(),)
            if rest.lower() not in PRIORITIES:
                reason = f"/priority takes one of {', '.join(PRIORITIES)}"
        elif rest:
            reason = f"/{name} takes no arguments"
        if reason is None:
            commands.append(Command(name, args, line))
        else:
            problems.append(Problem(line, reason))
    return commands, problems


def new_commands(commands: list[Command], old_body: str | None) -> list[Command]:
    """In an edited comment, the commands the previous text did not already have."""
    if old_body is None:
        return commands
    seen = Counter(command.line for command in parse(old_body)[0])
    fresh = []
    for command in commands:
        if seen[command.line] > 0:
            seen[command.line] -= 1
        else:
            fresh.append(command)
    return fresh


@dataclass(frozen=True)
class IssueState:
    """The issue as the payload shows it."""

    number: int
    author: str
    labels: tuple[str, ...]
    assignees: tuple[str, ...]
    state: str


@dataclass
class Plan:
    """The net effect of a comment's commands on the issue, as API calls to make."""

    add_labels: list[str] = field(default_factory=list)
    remove_labels: list[str] = field(default_factory=list)
    assign: list[str] = field(default_factory=list)
    unassign: list[str] = field(default_factory=list)
    state: str | None = None

    def is_empty(self) -> bool:
        return not (
            self.add_labels or self.remove_labels or self.assign or self.unassign or self.state
        )


def plan(
    commands: Sequence[Command], issue: IssueState, commenter: str, config: CommandsConfig
) -> Plan:
    """Apply the commands in order to the payload's issue; the difference is what to send."""
    labels = {name.lower(): name for name in issue.labels}
    assignees = {login.lower(): login for login in issue.assignees}
    state = issue.state
    prefix = config.priority_prefix.lower()
    for command in commands:
        logins = [commenter if a.lower() == "me" else a for a in command.args]
        if command.name == "label":
            labels.update({a.lower(): labels.get(a.lower(), a) for a in command.args})
        elif command.name == "unlabel":
            for a in command.args:
                labels.pop(a.lower(), None)
        elif command.name == "priority":
            for key in [k for k in labels if k.startswith(prefix)]:
                del labels[key]
            wanted = config.priority_prefix + command.args[0]
            labels[wanted.lower()] = wanted
        elif command.name == "assign":
            assignees.update({login.lower(): login for login in logins})
        elif command.name == "unassign":
            for login in logins:
                assignees.pop(login.lower(), None)
        elif command.name == "close":
            state = "closed"
        elif command.name == "reopen":
            state = "open"
    before = {name.lower() for name in issue.labels}
    had = {login.lower() for login in issue.assignees}
    return Plan(
        add_labels=[name for key, name in labels.items() if key not in before],
        remove_labels=[name for name in issue.labels if name.lower() not in labels],
        assign=[login for key, login in assignees.items() if key not in had],
        unassign=[login for login in issue.assignees if login.lower() not in assignees],
        state=state if state != issue.state else None,
    )


def needs_triage(command: Command, issue: IssueState, commenter: str) -> bool:
    """Everything but ``/assign me`` (or one's own login) on one's own issue."""
    own = commenter.lower() == issue.author.lower()
    if command.name == "assign" and own:
        return any(a.lower() not in ("me", commenter.lower()) for a in command.args)
    return True


def has_triage_access(permission: Mapping[str, Any]) -> bool:
    """From ``GET /repos/{o}/{r}/collaborators/{user}/permission``: triage or more.

    ``role_name`` names the role (a custom role has its own name); ``permission``
    is the legacy field, where triage reads as ``read``; ``user.permissions``
    holds the booleans a custom role resolves to.
    """
    user = permission.get("user")
    flags = user.get("permissions") if isinstance(user, dict) else None
    if isinstance(flags, dict) and any(flags.get(k) for k in ("triage", "push", "maintain")):
        return True
    if isinstance(flags, dict) and flags.get("admin"):
        return True
    return permission.get("role_name") in TRIAGE_ROLES or permission.get("permission") in (
        "write",
        "admin",
    )


class CommandsApi(Protocol):
    async def add_labels(self, number: int, labels: list[str]) -> None: ...

    async def remove_label(self, number: int, label: str) -> None: ...

    async def add_assignees(self, number: int, logins: list[str]) -> None: ...

    async def remove_assignees(self, number: int, logins: list[str]) -> None: ...

    async def set_state(self, number: int, state: str) -> None: ...

    async def comment(self, number: int, body: str) -> None: ...

    async def comment_bodies(self, number: int, since: str | None = None) -> list[str]: ...

    async def permission(self, login: str) -> dict[str, Any]: ...


class CommandsState:
    """Kept for the runtime's life: permission answers (5 minutes) and comments handled."""

    def __init__(self, permission_ttl: float = PERMISSION_TTL) -> None:
        self.permissions: TTLCache[tuple[str, str], bool] = TTLCache(
            maxsize=10_000, ttl=permission_ttl
        )
        self.handled: TTLCache[tuple[str, int, str], bool] = TTLCache(maxsize=50_000, ttl=86_400)
        self.permission_lookups = 0


@dataclass(frozen=True)
class CommandsFacts:
    repository: str
    comment_id: int
    body: str
    old_body: str | None
    commenter: str
    commenter_type: str
    association: str
    created_at: str | None
    issue: IssueState

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], repository: str) -> CommandsFacts:
        comment = payload["comment"]
        issue = payload["issue"]
        user = comment.get("user") or {}
        changes = payload.get("changes") or {}
        old = changes.get("body", {}).get("from") if isinstance(changes, dict) else None
        return cls(
            repository=repository,
            comment_id=int(comment["id"]),
            body=str(comment.get("body") or ""),
            old_body=old if isinstance(old, str) else None,
            commenter=str(user.get("login") or ""),
            commenter_type=str(user.get("type") or "User"),
            association=str(comment.get("author_association") or ""),
            created_at=comment.get("created_at"),
            issue=IssueState(
                number=int(issue["number"]),
                author=str((issue.get("user") or {}).get("login") or ""),
                labels=label_names(issue),
                assignees=tuple(
                    str(a["login"])
                    for a in issue.get("assignees") or ()
                    if isinstance(a, dict) and a.get("login")
                ),
                state=str(issue.get("state") or "open"),
            ),
        )

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.body.encode()).hexdigest()[:12]


def pending(facts: CommandsFacts) -> tuple[list[Command], list[Problem]]:
    """The comment's commands and malformed lines; of an edited comment, only the new ones."""
    commands, problems = parse(facts.body)
    commands = new_commands(commands, facts.old_body)
    if facts.old_body is not None:
        old_problems = {p.line for p in parse(facts.old_body)[1]}
        problems = [p for p in problems if p.line not in old_problems]
    return commands, problems


def decide(
    config: CommandsConfig,
    facts: CommandsFacts,
    commands: list[Command],
    problems: list[Problem],
    *,
    allowed: bool,
) -> tuple[Plan, list[Problem]]:
    """What to send and what to reply; ``allowed``: the commenter has triage access."""
    issue = facts.issue
    if not allowed:
        refused = [c for c in commands if needs_triage(c, issue, facts.commenter)]
        commands = [c for c in commands if not needs_triage(c, issue, facts.commenter)]
        reason = "needs triage access to this repository"
        problems = [*problems, *(Problem(c.line, reason) for c in refused)]
    return plan(commands, issue, facts.commenter, config), problems


async def may_triage(api: CommandsApi, state: CommandsState, facts: CommandsFacts) -> bool:
    if facts.association == "OWNER":
        return True  # the repository's owner: admin, no need to ask
    key = (facts.repository, facts.commenter.lower())
    cached = state.permissions.get(key)
    if cached is None:
        state.permission_lookups += 1
        cached = has_triage_access(await api.permission(facts.commenter))
        state.permissions[key] = cached
    return cached


async def run_commands(
    api: CommandsApi, config: CommandsConfig, state: CommandsState, facts: CommandsFacts
) -> Plan | None:
    """Run a comment's commands; ``None`` when the comment has none to run."""
    if facts.commenter_type == "Bot" or is_own_comment(facts.body) or not facts.commenter:
        return None
    handled_key = (facts.repository, facts.comment_id, facts.digest)
    if handled_key in state.handled:
        return None  # a redelivery of a comment already handled
    commands, problems = pending(facts)
    if not commands and not problems:
        return None
    issue = facts.issue
    allowed = not any(needs_triage(c, issue, facts.commenter) for c in commands) or (
        await may_triage(api, state, facts)
    )
    result, problems = decide(config, facts, commands, problems, allowed=allowed)
    number = issue.number
    if result.add_labels:
        await api.add_labels(number, result.add_labels)
    for label in result.remove_labels:
        await api.remove_label(number, label)
    if result.assign:
        await api.add_assignees(number, result.assign)
    if result.unassign:
        await api.remove_assignees(number, result.unassign)
    if result.state:
        await api.set_state(number, result.state)
    if problems:
        await reply_once(api, facts, problems)
    state.handled[handled_key] = True
    return result


async def reply_once(api: CommandsApi, facts: CommandsFacts, problems: list[Problem]) -> None:
    kind = f"commands:{facts.comment_id}:{facts.digest}"
    if has_marker(await api.comment_bodies(facts.issue.number, since=facts.created_at), kind):
        return
    lines = "\n".join(f"- {code_span(p.line[:100])}: {p.reason}" for p in problems)
    body = f"@{facts.commenter}, not run:\n\n{lines}\n\n{marker(kind)}"
    await api.comment(facts.issue.number, body)


async def handle(ctx: Context[CommandsConfig]) -> None:
    facts = CommandsFacts.from_payload(ctx.payload, f"{ctx.owner}/{ctx.repo}")
    state = ctx.state if isinstance(ctx.state, CommandsState) else CommandsState()
    result = await run_commands(IssueApi(ctx.github, ctx.owner, ctx.repo), ctx.config, state, facts)
    if result is not None and not result.is_empty():
        ctx.log.info("commands: applied %s to #%s", result, facts.issue.number)


COMMANDS: Processor[CommandsConfig] = Processor(
    name="commands",
    help=ProcessorHelp(
        description="Runs the slash commands of issue comments, one per line.",
        details=(
            "Only people with at least triage access (collaborator permission API, cached five "
            "minutes) may run them, except `/assign me` on their own issue. A refused or "
            "malformed command gets one reply saying why.",
            "Lines in code blocks, quotes and HTML comments are not commands; an edited "
            "comment runs only the commands it did not have before. A comment's commands are "
            "applied together as their net effect: at most one label add, one call per label "
            "removed, one per assignee change and one state change.",
        ),
        commands=HELP,
        config_example='commands:\n  priority_prefix: "priority/"\n',
    ),
    events=("issue_comment.created", "issue_comment.edited"),
    config_type=CommandsConfig,
    handle=handle,
    # Reading a collaborator's permission needs metadata read; issues write for the rest.
    permissions={"issues": "write", "metadata": "read"},
    state_factory=CommandsState,
)
