"""``GET /help``: a public page for an org's members on what the app does and who may run what.

It renders the processors' help records (``Processor.describe()``): what each
processor does, whether it is on by default, its slash commands with who may
use them and an example, its config keys with defaults, the events it
handles and the permissions it needs. Unlike the admin routes it needs no
token: it says nothing a repository's config or the README would not.

Everything in a record is escaped; Markdown code spans become ``<code>``
after escaping, so no text can add markup. The page has no script; a
per-response nonce lets only its own inline style apply (the admin page's
policy, minus script and fetch). ``Accept: application/json`` gets the
records as JSON instead.
"""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Sequence

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from github_app import __version__
from github_app.help_text import ABOUT, CONFIG_FILE, on_off, permissions_line
from github_app.processor_help import HelpRecord

CODE_SPAN = re.compile(r"`([^`]+)`")
STYLE = """
  body { font: 15px/1.5 system-ui, sans-serif; margin: 1.5em auto; max-width: 60em;
         padding: 0 1em; color: #1f2328; background: #fff; }
  h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
  h3 { font-size: 1em; margin: 1em 0 .3em; }
  table { border-collapse: collapse; margin: .4em 0; }
  th, td { text-align: left; padding: .2em .6em; border-bottom: 1px solid #d0d7de;
           vertical-align: top; }
  code, pre { font-family: ui-monospace, monospace; background: #f6f8fa; }
  code { padding: 0 .2em; border-radius: 3px; }
  pre { padding: .6em .8em; border-radius: 6px; overflow-x: auto; }
  .meta { color: #59636e; }
"""


def inline(text: str) -> str:
    """Escaped text whose ``code spans`` are shown as code."""
    return CODE_SPAN.sub(r"<code>\1</code>", html.escape(text))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table of already escaped cells."""
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _processor(record: HelpRecord) -> str:
    name = html.escape(record.name)
    parts = [
        f'<section id="{name}"><h2>{name}</h2>',
        f'<p class="meta">{on_off(record)} by default · events: '
        f"{html.escape(', '.join(record.events))} · permissions: "
        f"{html.escape(permissions_line(record))}</p>",
        *(f"<p>{inline(p)}</p>" for p in (record.description, *record.details)),
    ]
    if record.commands:
        commands: list[tuple[str, ...]] = [
            (
                f"<code>{html.escape(c.usage)}</code>",
                inline(c.description),
                inline(c.who_can_use),
                f"<code>{html.escape(c.example)}</code>",
            )
            for c in record.commands
        ]
        parts += [
            "<h3>Commands</h3>",
            _table(("command", "does", "who may use it", "example"), commands),
        ]
    keys: list[tuple[str, ...]] = [
        (
            f"<code>{html.escape(k.key)}</code>",
            inline(k.default) if k.default_is_prose else f"<code>{html.escape(k.default)}</code>",
            inline(k.meaning),
        )
        for k in record.config
    ]
    parts += [
        f"<h3>Config: the <code>{name}:</code> section</h3>",
        _table(("key", "default", "meaning"), keys),
    ]
    if record.config_example:
        parts.append(f"<pre>{html.escape(record.config_example)}</pre>")
    parts.append("</section>")
    return "\n".join(parts)


def render(records: Sequence[HelpRecord], nonce: str) -> str:
    """The whole page: no external asset, no script."""
    summary = _table(
        ("processor", "default", "does"),
        [
            (
                f'<a href="#{html.escape(r.name)}">{html.escape(r.name)}</a>',
                on_off(r),
                inline(r.description),
            )
            for r in records
        ],
    )
    commands = [c for r in records for c in r.commands]
    command_list = (
        _table(
            ("command", "who may use it"),
            [(f"<code>{html.escape(c.usage)}</code>", inline(c.who_can_use)) for c in commands],
        )
        if commands
        else "<p>No processor here takes commands.</p>"
    )
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>auto-issue-processor · help</title>",
            f'<style nonce="{html.escape(nonce)}">{STYLE}</style></head><body>',
            "<h1>auto-issue-processor: what it does here</h1>",
            *(f"<p>{inline(p)}</p>" for p in ABOUT),
            summary,
            "<h2>Commands in issue comments</h2>",
            command_list,
            *(_processor(r) for r in records),
            f'<p class="meta">auto-issue-processor {html.escape(__version__)} · config file: '
            f"<code>{html.escape(CONFIG_FILE)}</code></p>",
            "</body></html>",
        ]
    )


def wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def help_routes(records: Sequence[HelpRecord]) -> list[BaseRoute]:
    """``GET /help`` for these records (the runtime's processors, fixed at start)."""
    document = {"version": __version__, "processors": [r.as_json() for r in records]}

    async def page(request: Request) -> Response:
        if wants_json(request):
            return JSONResponse(document, headers={"vary": "accept"})
        nonce = secrets.token_urlsafe(16)
        policy = (
            f"default-src 'none'; style-src 'nonce-{nonce}'; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'"
        )
        return HTMLResponse(
            render(records, nonce),
            headers={
                "content-security-policy": policy,
                "referrer-policy": "no-referrer",
                "x-content-type-options": "nosniff",
                "cache-control": "no-store",
                "vary": "accept",
            },
        )

    return [Route("/help", page, methods=["GET"])]
