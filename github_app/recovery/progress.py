"""What ``python -m github_app redeliver`` shows: a progress bar, then a summary table.

On a terminal, rich draws two bars: reading the delivery log (how far back in
time the pages have reached, of the span to read) and requesting
redeliveries. Elsewhere (a pipe, CI, a log file) it prints a plain line per
step instead, at most every ``every`` pages or requests, and the tables as
plain text.
"""

from __future__ import annotations

from datetime import UTC, datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table

from github_app.recovery.loop import RoundReport
from github_app.recovery.plan import Candidate, Skip


def when(epoch: float | None) -> str:
    if epoch is None:
        return "—"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


class RoundProgress:
    """A round's ``Progress``: rich bars on a terminal, plain lines otherwise."""

    def __init__(self, console: Console, *, now: float, every: int = 10) -> None:
        self._console = console
        self._now = now
        self._every = every
        self._bars: Progress | None = None
        self._reading: TaskID | None = None
        self._sending: TaskID | None = None
        self._sent = 0
        self._total = 0

    def __enter__(self) -> RoundProgress:
        if self._console.is_terminal:
            self._bars = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                console=self._console,
                transient=False,
            )
            self._bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bars is not None:
            self._bars.stop()

    def paged(self, pages: int, seen: int, oldest: float | None, since: float) -> None:
        span = max(1, round(self._now - since))
        reached = span if oldest is None else min(span, max(0, round(self._now - oldest)))
        detail = f"{pages} page(s), {seen} attempt(s), back to {when(oldest)}"
        if self._bars is not None:
            if self._reading is None:
                self._reading = self._bars.add_task(
                    "reading the delivery log (s)", total=span, detail=""
                )
            self._bars.update(self._reading, completed=reached, detail=detail)
        elif pages == 1 or pages % self._every == 0:
            self._console.print(f"reading the delivery log: {detail}")

    def requesting(self, total: int) -> None:
        self._total = total
        if self._bars is not None:
            if self._reading is not None:
                task = self._bars.tasks[self._reading]
                self._bars.update(self._reading, completed=task.total)
            self._sending = self._bars.add_task("requesting redeliveries", total=total, detail="")
        elif total:
            self._console.print(f"requesting {total} redelivery(ies)")

    def requested(self, candidate: Candidate, ok: bool) -> None:
        self._sent += 1
        detail = f"{candidate.guid} ({candidate.name}){'' if ok else ' skipped'}"
        if self._bars is not None and self._sending is not None:
            self._bars.update(self._sending, advance=1, detail=detail)
        elif self._sent % self._every == 0 or self._sent == self._total:
            self._console.print(f"requested {self._sent}/{self._total}: {detail}")


def summary(report: RoundReport) -> Table:
    """Deliveries seen, failed events, already admitted, requested, refused, skipped and why."""
    table = Table(title="redelivery round" + (" (dry run)" if report.dry_run else ""))
    table.add_column("what")
    table.add_column("count", justify="right")
    skipped = dict(report.skipped)
    admitted = skipped.pop(Skip.ADMITTED, 0)
    rows = [
        ("delivery log read back to", when(report.since)),
        ("pages read", str(report.pages)),
        ("deliveries seen (attempts)", str(report.seen)),
        ("failed events (no attempt delivered)", str(report.failed)),
        ("already admitted", str(admitted)),
        ("would request" if report.dry_run else "requested", str(report.requested)),
        ("refused by GitHub", str(report.request_failed)),
        ("given up now", str(report.given_up)),
        *((f"skipped: {reason}", str(count)) for reason, count in sorted(skipped.items())),
        ("outcome", report.outcome),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def candidates(report: RoundReport) -> Table:
    """The events requested (or, in a dry run, that would be), oldest first."""
    title = "would redeliver" if report.dry_run else "redelivery requested"
    table = Table(title=title)
    table.add_column("guid", no_wrap=True, min_width=36)
    for column in ("event", "first failed", "last attempt", "requests before"):
        table.add_column(column, no_wrap=True)
    for c in report.candidates:
        table.add_row(c.guid, c.name, when(c.first_at), when(c.last_at), str(c.attempts))
    return table
