"""Command line: ``serve`` runs the app, ``send`` posts a signed test delivery to it,
``check-config FILE`` validates a repository config file with the app's own parser,
``settings-table`` prints (or ``--update``s) the README's table of settings,
``help`` prints what each processor does (``--markdown``: the README's processor
reference; ``--update README.md`` rewrites it there), ``backfill`` starts a backfill job on
the running server and follows it (``github_app.backfill.command``), ``redeliver`` runs
one round of recovery now (GitHub's delivery log read back, failed deliveries asked for
again).

``serve`` owns signal handling (uvicorn's own is turned off): the first
SIGTERM/SIGINT makes the webhook answer 503, lets in-flight events finish
within SHUTDOWN_TIMEOUT and logs how many queued events remain (in the spool,
for the next start); a second one stops at once: in-flight events are cut
off and stay queued, the spool is left consistent, the process exits.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import signal
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import uvicorn
from anyio.abc import TaskStatus
from githubkit.webhooks import sign
from rich.console import Console

from github_app import __version__
from github_app.config import (
    TABLE_END,
    TABLE_START,
    Settings,
    load_settings,
    settings_table,
)
from github_app.errors import SettingsError, StoreUnavailable
from github_app.generated_text import rewrite
from github_app.http_guard import uvicorn_options
from github_app.logs import configure_logging
from github_app.runtime import Runtime
from github_app.server import create_app

if TYPE_CHECKING:
    from github_app.github.gateway import GitHubGateway
    from github_app.recovery.loop import RoundReport

log = logging.getLogger("github_app")

EXAMPLE_INSTALLATION = {"id": 1, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uMQ=="}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m github_app", description="auto-issue-processor, a GitHub App."
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the app (dry run when no credentials are set)")
    serve.add_argument(
        "--host",
        help="address to listen on (HOST, default 0.0.0.0; 127.0.0.1 while there are no app "
        "credentials, so /setup is not open to the network)",
    )
    serve.add_argument("--port", type=int, help="port to listen on (PORT, default 3000)")
    serve.add_argument("--env-file", default=".env", help="settings file (default .env)")
    serve.add_argument("--dry-run", action="store_true", default=None, help="log writes only")
    serve.add_argument("--webhook-path", help="webhook route (WEBHOOK_PATH)")
    serve.add_argument("--github-api-url", help="API base URL (GITHUB_API_URL), e.g. for GHES")
    serve.add_argument(
        "--public-url",
        help="URL GitHub reaches this server at (PUBLIC_URL), used by the /setup manifest flow",
    )
    serve.add_argument("--log-level", help="LOG_LEVEL: DEBUG, INFO, WARNING, ERROR")
    serve.add_argument("--log-format", choices=["text", "json"], help="LOG_FORMAT")
    serve.add_argument("--workers", type=int, help="drain width (sets WORKERS_MIN and WORKERS_MAX)")

    send = commands.add_parser("send", help="post a signed example delivery to a running app")
    send.add_argument("--url", help="webhook URL (default: this machine's HOST/PORT/WEBHOOK_PATH)")
    send.add_argument("--port", type=int, help="port of a local app (default PORT, 3000)")
    send.add_argument("--secret", help="webhook secret (default: WEBHOOK_SECRET)")
    send.add_argument("--env-file", default=".env", help="settings file (default .env)")
    send.add_argument(
        "--payload", type=Path, help="JSON payload file (default: GitHub's issues.opened example)"
    )
    send.add_argument("--event", help="X-GitHub-Event (default: from the file name, or issues)")
    send.add_argument("--installation", type=int, help="installation id to add if missing (1)")
    send.add_argument("--delivery", help="X-GitHub-Delivery (default: a new UUID)")
    send.add_argument(
        "--form", action="store_true", help="send as application/x-www-form-urlencoded"
    )

    check = commands.add_parser(
        "check-config", help="validate a .github/auto-issue-processor.yml file locally"
    )
    check.add_argument("file", type=Path, help="the config file to check")

    table = commands.add_parser(
        "settings-table", help="print the README's settings table, generated from the settings"
    )
    table.add_argument(
        "--update", type=Path, metavar="README", help="rewrite the table in this file instead"
    )

    redeliver = commands.add_parser(
        "redeliver",
        help="ask GitHub now to redeliver what failed to reach the app (one round of recovery)",
    )
    redeliver.add_argument(
        "--since",
        type=parse_duration,
        metavar="DURATION",
        help="read the delivery log this far back (90s, 30m, 6h, 2d) instead of from the "
        "checkpoint; never beyond what GitHub keeps",
    )
    redeliver.add_argument("--event", help="only events of this name (e.g. issues)")
    redeliver.add_argument(
        "--dry-run", action="store_true", help="list what would be redelivered; request nothing"
    )
    redeliver.add_argument("--env-file", default=".env", help="settings file (default .env)")

    helps = commands.add_parser(
        "help", help="what each processor does: commands, config keys, events, permissions"
    )
    helps.add_argument(
        "--markdown", action="store_true", help="print the README's processor reference"
    )
    helps.add_argument(
        "--update",
        type=Path,
        metavar="README",
        help="rewrite the processor reference between its markers in this file instead",
    )
    from github_app.backfill.command import add_parser

    add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return run_serve(args)
        if args.command == "check-config":
            return run_check_config(args.file)
        if args.command == "settings-table":
            return run_settings_table(args.update)
        if args.command == "help":
            return run_help(args.markdown, args.update)
        if args.command == "backfill":
            from github_app.backfill import command

            return command.run(args)
        if args.command == "redeliver":
            return run_redeliver(args)
        return run_send(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run_check_config(path: Path) -> int:
    """Validate a config file with the parser the app uses; 1 and one line per error if invalid.

    ``_extends`` is accepted but not followed: the base lives on GitHub.
    """
    from github_app.dispatch.registry import Registry
    from github_app.dispatch.repo_config import ConfigParser

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror}") from None
    config = ConfigParser(Registry.load()).parse(raw, str(path))
    for problem in config.errors:
        print(f"{path}: {problem}")
    if config.errors:
        return 1
    sections = ", ".join(sorted(config.sections)) or "none (defaults everywhere)"
    print(f"{path}: OK; sections: {sections}")
    return 0


def run_settings_table(readme: Path | None) -> int:
    """Print the settings table, or regenerate it between its markers in ``readme``."""
    if readme is None:
        print(settings_table(), end="")
        return 0
    rewrite(readme, TABLE_START, TABLE_END, settings_table(), "settings-table")
    return 0


def run_help(markdown: bool, readme: Path | None) -> int:
    """Plain text of every loaded processor; Markdown of the built-ins (plugins are not ours
    to document in our README)."""
    from github_app import help_text
    from github_app.dispatch.registry import Registry

    if not markdown and readme is None:
        print(help_text.text([p.describe() for p in Registry.load()], __version__), end="")
        return 0
    from processors import BUILTINS

    section = help_text.markdown([p.describe() for p in BUILTINS])
    if readme is None:
        print(section, end="")
        return 0
    changed = rewrite(readme, help_text.BEGIN, help_text.END, section, "processor-reference")
    print(f"{readme}: processor reference {'updated' if changed else 'already current'}")
    return 0


DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``6h``, ``2d`` as seconds (positive)."""
    value = text.strip().lower()
    unit = DURATION_UNITS.get(value[-1:]) if value else None
    number = value[:-1] if unit is not None else value
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration (like 90s, 30m, 6h or 2d)"
        ) from None
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive duration")
    return seconds


def run_redeliver(args: argparse.Namespace) -> int:
    """One round of recovery now: progress while paging and requesting, then the summary.

    0 when the round completed, 1 when it stopped (GitHub failing, a rate limit, a
    malformed log entry: the table says which).
    """
    settings = load_settings(env_file=args.env_file)
    if not settings.has_credentials:
        raise SettingsError(
            "redeliver needs the app's credentials (APP_ID and PRIVATE_KEY or PRIVATE_KEY_PATH)"
        )
    configure_logging("WARNING", settings.log_format)  # the bars and tables tell the rest
    return anyio.run(redeliver_once, settings, args.since, args.event, args.dry_run)


async def redeliver_once(
    settings: Settings,
    since: float | None,
    event: str | None,
    dry_run: bool,
    *,
    console: Console | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    from github_app.github.gateway import GitHubGateway
    from github_app.recovery.progress import candidates, summary

    console = console if console is not None else Console()
    if settings.dry_run and not dry_run:
        console.print("DRY_RUN is on: redelivery requests are logged, not sent")
    gateway = GitHubGateway(settings, transport=transport, clock=clock)
    try:
        report = await _redeliver_round(
            settings, gateway, since, event, dry_run, console=console, clock=clock
        )
    except StoreUnavailable as exc:  # QUEUE_BACKEND=redis: the replicas' record is away
        console.print(f"error: {exc}")
        return 1
    finally:
        await gateway.aclose()
    if report.candidates:
        console.print(candidates(report))
    console.print(summary(report))
    return 0 if report.outcome == "complete" else 1


async def _redeliver_round(
    settings: Settings,
    gateway: GitHubGateway,
    since: float | None,
    event: str | None,
    dry_run: bool,
    *,
    console: Console,
    clock: Callable[[], float],
) -> RoundReport:
    """The round itself, on the store of the queue backend (see ``command_store``)."""
    from github_app.recovery.loop import Recovery
    from github_app.recovery.progress import RoundProgress
    from github_app.recovery.spool_store import command_store

    async with command_store(settings, clock=clock) as (store, note):
        if note is not None:
            console.print(note)
        recovery = Recovery.from_settings(settings, gateway, store, clock=clock)
        now = clock()
        with RoundProgress(console, now=now) as progress:
            return await recovery.round(
                since=None if since is None else now - since,
                event=event,
                dry_run=dry_run,
                progress=progress,
            )


def run_serve(args: argparse.Namespace) -> int:
    overrides: dict[str, str | None] = {
        "HOST": args.host,
        "PORT": None if args.port is None else str(args.port),
        "DRY_RUN": "true" if args.dry_run else None,
        "WEBHOOK_PATH": args.webhook_path,
        "GITHUB_API_URL": args.github_api_url,
        "PUBLIC_URL": args.public_url,
        "LOG_LEVEL": args.log_level,
        "LOG_FORMAT": args.log_format,
        "WORKERS_MIN": None if args.workers is None else str(args.workers),
        "WORKERS_MAX": None if args.workers is None else str(args.workers),
    }
    settings = load_settings(env_file=args.env_file, overrides=overrides)
    if not settings.has_credentials and args.host is None:
        # Unconfigured, the server offers /setup: loopback only, unless --host says otherwise.
        settings = settings.model_copy(update={"host": "127.0.0.1"})
    listener = None
    if settings.port == 0:
        # A port the kernel gives: bound now, so that the banner, the setup link and uvicorn's
        # own line name it (and nobody takes it meanwhile).
        listener = bound_socket(settings.host)
        settings = settings.model_copy(update={"port": listener.getsockname()[1]})
    print(banner(settings), flush=True)
    configure_logging(settings.log_level, settings.log_format)
    runtime = Runtime(settings)
    return anyio.run(
        serve,
        settings,
        runtime,
        Path(args.env_file),
        listener,
        backend_options={"use_uvloop": True},
    )


def bound_socket(host: str) -> socket.socket:
    """A TCP socket bound to ``host`` on a free port of the kernel's choosing."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.set_inheritable(True)
    return sock


def banner(settings: Settings) -> str:
    """The first line of output: the mode, and a generated secret (a configured one never)."""
    url = f"http://{settings.host}:{settings.port}{settings.webhook_path}"
    if settings.webhook_secret_generated:
        generated = settings.webhook_secret.get_secret_value()
        secret = f"webhook secret (generated for this run): {generated}"
    else:
        secret = "webhook secret: from WEBHOOK_SECRET"  # noqa: S105 - says where, never what
    if settings.dry_run and not settings.has_credentials:
        mode = "DRY RUN, no app credentials: GitHub calls are logged, not made"
    elif settings.dry_run:
        mode = f"DRY RUN as app {settings.app_id}: reads go to GitHub, writes are logged, not made"
    else:
        mode = f"app {settings.app_id} against {settings.github_api_url}"
    return f"auto-issue-processor {__version__}: {mode}; {secret}; webhooks at {url}"


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: ``serve`` handles them for a graceful drain."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if sockets is not None and self.started:
            # uvicorn names where it listens only when it bound the socket itself; operators
            # (and the tests, for a port the kernel gave) read that line.
            self._log_started_message(sockets)


async def serve(
    settings: Settings,
    runtime: Runtime,
    env_file: Path = Path(".env"),
    listener: socket.socket | None = None,
) -> int:
    """Serve until a signal drains it; on ``listener`` if given (bound already), else on
    ``settings.host`` and ``settings.port``."""
    try:
        await runtime.identify()
    except SettingsError as exc:
        log.error("%s", exc)
        return 2
    app = create_app(settings, runtime=runtime, env_file=env_file)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
        **uvicorn_options(settings),
    )
    server = _Server(config)
    # Everything built so far lives as long as the process: keep it out of the collector's
    # full passes, whose pauses otherwise grow with the imported modules and caches.
    gc.collect()
    gc.freeze()
    if not settings.has_credentials:
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
        base = settings.public_url or f"http://{host}:{settings.port}"
        log.info("no app credentials: open %s/setup to create the GitHub App and install it", base)
        # On the console only (never in the log): whoever holds it may create the app.
        print(
            f"to create the GitHub App, open {base}/setup?token={app.state.setup.token} "
            "in your browser (the token works once)",
            flush=True,
        )
    async with anyio.create_task_group() as group:
        # Signals are ours before the socket listens: a SIGTERM that comes as soon as /healthz
        # answers must drain, not kill the process with the default action.
        await group.start(_watch_signals, runtime, server)
        await server.serve(None if listener is None else [listener])
        group.cancel_scope.cancel()
    return 1 if server.force_exit or runtime.stopped_at_once else 0


async def _watch_signals(
    runtime: Runtime,
    server: uvicorn.Server,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        task_status.started()
        async with anyio.create_task_group() as group:
            async for signum in signals:
                if runtime.shutting_down:
                    log.warning("second %s: stopping now", signal.Signals(signum).name)
                    # The shutdown under way ends without waiting for in-flight events; the
                    # lifespan still runs to its end, so the spool's last writes are committed.
                    runtime.stop_now()
                    server.should_exit = True
                    return
                log.info("received %s", signal.Signals(signum).name)
                group.start_soon(_shutdown, runtime, server)


async def _shutdown(runtime: Runtime, server: uvicorn.Server) -> None:
    await runtime.shutdown()
    server.should_exit = True


def run_send(args: argparse.Namespace) -> int:
    settings = load_settings(
        env_file=args.env_file,
        overrides={
            "WEBHOOK_SECRET": args.secret,
            "PORT": None if args.port is None else str(args.port),
        },
    )
    if settings.webhook_secret_generated:
        raise SettingsError(
            "no secret: pass --secret (the one serve printed) or set WEBHOOK_SECRET"
        )
    payload, event = _load_payload(args.payload, args.event)
    if "installation" not in payload or args.installation is not None:
        installation = dict(EXAMPLE_INSTALLATION)
        if args.installation is not None:
            installation["id"] = args.installation
        payload["installation"] = installation
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    content_type = "application/json"
    if args.form:
        body = httpx.QueryParams({"payload": body.decode("utf-8")}).__str__().encode("ascii")
        content_type = "application/x-www-form-urlencoded"
    delivery = args.delivery or str(uuid.uuid4())
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    url = args.url or f"http://{host}:{settings.port}{settings.webhook_path}"
    headers = {
        "Content-Type": content_type,
        "User-Agent": "GitHub-Hookshot/auto-issue-processor-send",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(settings.webhook_secret.get_secret_value(), body, "sha256"),
    }
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=10.0)
    except httpx.HTTPError as exc:
        print(f"error: cannot deliver to {url}: {exc}", file=sys.stderr)
        return 1
    print(f"{event}.{payload.get('action', '')} delivery {delivery} -> {response.status_code}")
    print(response.text)
    return 0 if response.is_success else 1


def _load_payload(path: Path | None, event: str | None) -> tuple[dict[str, Any], str]:
    if path is None:
        text = files("github_app").joinpath("examples/issues.opened.json").read_text("utf-8")
        return json.loads(text), event or "issues"
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise SettingsError(f"{path} is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise SettingsError(f"{path} must hold a JSON object")
    return payload, event or path.name.split(".", 1)[0]
