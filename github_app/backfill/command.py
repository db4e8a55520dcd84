"""``python -m github_app backfill``: start a job on the running server and follow it.

It talks to the admin API only (``POST /admin/backfills``, then ``GET`` the
job every ``--every`` seconds), so the job runs in the server and survives
the command: Ctrl-C detaches and says how to follow or cancel the job. On a
terminal it draws a progress bar with the rate and the time left (``rich``);
otherwise it prints a plain line every ``PLAIN_EVERY`` seconds. Exit codes:
0 the job finished, 1 it failed or was cancelled, 2 it could not be started
(bad request, a job already on that repository, no server), 130 detached.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from github_app.config import load_settings

FINISHED, REFUSED, FAILED, DETACHED = 0, 2, 1, 130
PLAIN_EVERY = 10.0


def add_parser(commands: Any) -> None:
    backfill = commands.add_parser(
        "backfill", help="process a repository's or an installation's existing issues"
    )
    target = backfill.add_mutually_exclusive_group(required=True)
    target.add_argument("--repo", metavar="OWNER/REPO", help="one repository")
    target.add_argument("--installation", type=int, metavar="ID", help="all its repositories")
    backfill.add_argument(
        "--processors", metavar="a,b", help="default: every processor that backfills"
    )
    backfill.add_argument("--state", choices=["open", "closed", "all"], default="open")
    backfill.add_argument("--since", metavar="DATE", help="only issues updated since (ISO date)")
    backfill.add_argument(
        "--dry-run", action="store_true", help="say what would change, write nothing"
    )
    backfill.add_argument("--url", help="the server (default http://127.0.0.1:$PORT)")
    backfill.add_argument("--env-file", default=".env", help="settings file (default .env)")
    backfill.add_argument(
        "--every", type=float, default=1.0, help="seconds between looks at the job (default 1)"
    )


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"state": args.state, "dry_run": args.dry_run}
    if args.repo is not None:
        body["repository"] = args.repo
    else:
        body["installation"] = args.installation
    if args.processors:
        body["processors"] = [name.strip() for name in args.processors.split(",") if name.strip()]
    if args.since:
        body["since"] = args.since
    return body


def run(
    args: argparse.Namespace,
    *,
    out: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    out = out if out is not None else sys.stdout
    settings = load_settings(env_file=args.env_file)
    if settings.admin_token is None:
        print("error: set ADMIN_TOKEN (the server's) in the environment or .env", file=out)
        return REFUSED
    base = (args.url or f"http://127.0.0.1:{settings.port}").rstrip("/")
    headers = {"authorization": f"Bearer {settings.admin_token.get_secret_value()}"}
    with httpx.Client(base_url=base, headers=headers, timeout=10.0) as client:
        try:
            answer = client.post("/admin/backfills", json=request_body(args))
        except httpx.HTTPError as exc:
            print(f"error: cannot reach the server at {base}: {exc}", file=out)
            return REFUSED
        if answer.status_code != 202:
            print(f"error: {_message(answer)}", file=out)
            return REFUSED
        job = answer.json()
        print(f"backfill job {job['id']} started: {_target(job)}", file=out)
        try:
            job = follow(client, job, out=out, every=args.every, sleep=sleep)
        except KeyboardInterrupt:
            print(
                f"\ndetached: job {job['id']} keeps running on the server.\n"
                f"  follow: curl -H 'Authorization: Bearer $ADMIN_TOKEN' "
                f"{base}/admin/backfills/{job['id']}\n"
                f"  cancel: curl -X DELETE -H 'Authorization: Bearer $ADMIN_TOKEN' "
                f"{base}/admin/backfills/{job['id']}",
                file=out,
            )
            return DETACHED
    print(summary(job), file=out)
    return FINISHED if job["state"] == "finished" else FAILED


def follow(
    client: httpx.Client,
    job: dict[str, Any],
    *,
    out: TextIO,
    every: float,
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    """Look at the job until it is final: a bar on a terminal, plain lines otherwise."""
    console = Console(file=out)
    if not console.is_terminal:
        last = 0.0
        while not _final(job):
            if time.monotonic() - last >= PLAIN_EVERY:
                last = time.monotonic()
                print(progress_line(job), file=out, flush=True)
            sleep(every)
            job = _get(client, job["id"])
        return job
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(_target(job), total=job.get("estimated_total"), rate="")
        while not _final(job):
            sleep(every)
            job = _get(client, job["id"])
            rate = job.get("rate")
            bar.update(
                task,
                completed=job["processed"],
                total=job.get("estimated_total") or None,
                rate=f"{rate:.1f} issues/s" if rate else "",
            )
    return job


def _get(client: httpx.Client, job_id: str) -> dict[str, Any]:
    answer = client.get(f"/admin/backfills/{job_id}")
    answer.raise_for_status()
    found: dict[str, Any] = answer.json()
    return found


def _final(job: dict[str, Any]) -> bool:
    return job["state"] in ("finished", "failed", "cancelled")


def _target(job: dict[str, Any]) -> str:
    spec = job["spec"]
    target = spec["repository"] or f"installation {spec['installation']}"
    return target + (" (dry run)" if spec["dry_run"] else "")


def _message(answer: httpx.Response) -> str:
    try:
        message = answer.json().get("message")
    except ValueError:
        message = None
    return str(message or f"the server answered {answer.status_code}")


def progress_line(job: dict[str, Any]) -> str:
    total = job.get("estimated_total")
    eta = job.get("eta")
    parts = [
        f"{job['state']}: {job['processed']}" + (f"/{total}" if total else "") + " issues",
        f"{job['changed']} changed",
        f"{job['errors']} errors",
    ]
    if job.get("rate"):
        parts.append(f"{job['rate']:.1f}/s")
    if eta:
        parts.append(f"about {eta:.0f}s left")
    return ", ".join(parts)


def summary(job: dict[str, Any]) -> str:
    verb = "would change" if job["spec"]["dry_run"] else "changed"
    lines = [
        f"backfill job {job['id']} {job['state']}"
        + (f": {job['reason']}" if job.get("reason") and job["state"] != "finished" else ""),
        f"  issues seen:     {job['listed']}",
        f"  issues {verb}: {job['changed']}",
        f"  labels added:    {job['labels_added']}",
        f"  comments made:   {job['comments']}",
        f"  errors:          {job['errors']}",
    ]
    if job["spec"]["dry_run"] and job.get("examples"):
        lines.append("  what would change (first few):")
        lines += [f"    {example}" for example in job["examples"]]
    return "\n".join(lines)
