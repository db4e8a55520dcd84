"""Create the GitHub App from ``manifest.yml`` in the browser: GitHub's manifest flow.

Served only while the app runs without credentials. ``GET /setup`` shows a
button that posts the manifest (with this server's webhook and callback URLs
filled in) to GitHub's "new app" page, for the user's account or an org.
GitHub then redirects to ``GET /setup/callback?code=...&state=...``; the code
is exchanged (``POST /app-manifests/{code}/conversions``, through githubkit,
against ``GITHUB_API_URL``) for the app's id, private key and webhook secret,
which are written to ``.env`` (and a key file, both mode 0600). The server
keeps running in dry-run mode until it is restarted with them.

Before it is configured the server is anyone's to reach, so ``/setup`` is
the operator's only: it needs the one-time token the server prints on its
console at start (``/setup?token=...``), which binds the browser that
presents it by an HttpOnly, SameSite cookie; every other visitor, and every
later use of the token, is refused. The ``state`` parameter is a random value
issued by ``/setup`` to that browser and accepted once, within an hour: a
forged or replayed callback cannot make this server write credentials of
someone else's choosing. Once an app was created, callbacks are refused.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import os
import re
import secrets
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import anyio
import yaml
from githubkit import GitHub, UnauthAuthStrategy
from githubkit.exception import RequestError, RequestFailed
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from github_app.config import Settings

log = logging.getLogger(__name__)

CALLBACK_PATH = "/setup/callback"
SESSION_COOKIE = "setup_session"
STATE_TTL = 3600.0
MAX_STATES = 256
OWNER_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
APP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,33}$")
CODE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
CREDENTIAL_KEYS = ("APP_ID", "PRIVATE_KEY", "PRIVATE_KEY_PATH", "WEBHOOK_SECRET")
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "0.0.0.0", "::1", "[::1]"})  # noqa: S104


def load_manifest() -> dict[str, Any]:
    """``manifest.yml`` as shipped with the package (a link to the repository's root file)."""
    text = files("github_app").joinpath("manifest.yml").read_text("utf-8")
    manifest: dict[str, Any] = yaml.safe_load(text)
    return manifest


def web_url(api_url: str) -> str:
    """GitHub's web address for an API base: api.github.com -> github.com, GHES /api/v3 -> host."""
    parts = urlsplit(api_url)
    host = parts.netloc
    path = parts.path.rstrip("/")
    if path.endswith("/api/v3"):
        path = path[: -len("/api/v3")]
    elif host.startswith("api.") and not path:
        host = host[len("api.") :]
    return f"{parts.scheme}://{host}{path}"


@dataclass(frozen=True)
class CreatedApp:
    """What the callback learned and wrote; never rendered with its secrets."""

    app_id: int
    slug: str
    name: str
    html_url: str
    key_path: Path
    secret_generated: bool


class StateStore:
    """One-use random values issued by ``/setup``, each valid for ``ttl`` seconds."""

    def __init__(self, *, ttl: float = STATE_TTL, clock: Callable[[], float] = time.monotonic):
        self._ttl = ttl
        self._clock = clock
        self._issued: OrderedDict[str, float] = OrderedDict()

    def issue(self) -> str:
        state = secrets.token_urlsafe(24)
        self._issued[state] = self._clock() + self._ttl
        while len(self._issued) > MAX_STATES:
            self._issued.popitem(last=False)
        return state

    def consume(self, presented: str) -> bool:
        """True once for a state this store issued and that has not expired."""
        now = self._clock()
        found = None
        for state, expires in list(self._issued.items()):
            if expires < now:
                del self._issued[state]
            elif hmac.compare_digest(state.encode(), presented.encode("utf-8", "replace")):
                found = state
        if found is None:
            return False
        del self._issued[found]
        return True


class SetupFlow:
    """The ``/setup`` routes of one server."""

    def __init__(
        self,
        settings: Settings,
        *,
        env_file: Path,
        states: StateStore | None = None,
        manifest: Mapping[str, Any] | None = None,
        token: str | None = None,
    ) -> None:
        self._settings = settings
        self._env_file = env_file
        self._states = states or StateStore()
        self._manifest = dict(manifest) if manifest is not None else load_manifest()
        self.created: CreatedApp | None = None
        self.token = token or secrets.token_urlsafe(24)
        """Printed on the console at start; admits one browser to ``/setup``, once."""
        self._session: str | None = None  # the cookie of the browser that presented the token
        self._creating = False

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/setup", self.page, methods=["GET"]),
            Route(CALLBACK_PATH, self.callback, methods=["GET"]),
        ]

    def base_url(self, request: Request) -> str:
        return self._settings.public_url or str(request.base_url).rstrip("/")

    def manifest_for(self, base: str, name: str) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads(json.dumps(self._manifest))  # a deep copy
        manifest["name"] = name
        manifest["url"] = base
        manifest.setdefault("hook_attributes", {})["url"] = base + self._settings.webhook_path
        manifest["redirect_url"] = base + CALLBACK_PATH
        return manifest

    def _is_operator(self, request: Request) -> bool:
        presented = request.cookies.get(SESSION_COOKIE, "")
        return self._session is not None and hmac.compare_digest(
            self._session.encode(), presented.encode("utf-8", "replace")
        )

    def _admit(self, request: Request, presented: str) -> Response:
        """Trade the one-time token for a cookie, then show ``/setup`` without it in the URL."""
        if self._session is not None or not hmac.compare_digest(
            self.token.encode(), presented.encode("utf-8", "replace")
        ):
            log.warning("setup: refused a wrong or already used setup token")
            return _page("Refused", _ALREADY_ADMITTED, 403)
        self._session = secrets.token_urlsafe(32)
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        query = "&".join(f"{quote(k)}={quote(v)}" for k, v in params)
        response = RedirectResponse("/setup" + (f"?{query}" if query else ""), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            self._session,
            httponly=True,
            samesite="lax",  # "strict" would not come back with GitHub's redirect
            secure=request.url.scheme == "https",
            path="/setup",
        )
        response.headers["cache-control"] = "no-store"
        response.headers["referrer-policy"] = "no-referrer"
        log.info("setup: a browser presented the setup token; /setup is now bound to it")
        return response

    async def page(self, request: Request) -> Response:
        presented = request.query_params.get("token")
        if presented is not None:
            return self._admit(request, presented)
        if not self._is_operator(request):
            return _page("Setup token needed", _OPERATOR_ONLY, 403)
        if self.created is not None:
            return _page("The app exists", _created_body(self.created, self._env_file))
        org = request.query_params.get("org", "").strip()
        if org and not OWNER_NAME.match(org):
            return _page("Not an organisation name", _form(org, "", error=_bad_org(org)), 400)
        default_name = f"auto-issue-processor-{org}" if org else "auto-issue-processor"
        name = request.query_params.get("name", "").strip() or default_name[:34]
        if not APP_NAME.match(name):
            message = "An app name is 1-34 letters, digits, spaces, '.', '_' or '-'."
            return _page("Not an app name", _form(org, name, error=message), 400)
        base = self.base_url(request)
        manifest = self.manifest_for(base, name)
        state = self._states.issue()
        owner_path = f"/organizations/{quote(org)}" if org else ""
        action = f"{web_url(self._settings.github_api_url)}{owner_path}/settings/apps/new"
        action += f"?state={quote(state)}"
        body = _form(org, name) + _create_button(action, manifest, org, base)
        return _page("Create the GitHub App", body)

    async def callback(self, request: Request) -> Response:
        if not self._is_operator(request):
            log.warning("setup callback refused: not from the browser that holds the setup token")
            return _page("Setup token needed", _OPERATOR_ONLY, 403)
        state = request.query_params.get("state", "")
        if not state or not self._states.consume(state):
            log.warning("setup callback refused: unknown, expired or reused state")
            body = (
                "<p>This callback's <code>state</code> was not issued by this server, has "
                "expired, or was already used. Nothing was written.</p>"
                '<p><a href="/setup">Start again</a>.</p>'
            )
            return _page("Refused", body, 403)
        if self.created is not None or self._creating:
            log.warning("setup callback refused: the app was already created")
            body = "<p>An app was already created by this server. Nothing was written.</p>"
            return _page("Already created", body, 409)
        code = request.query_params.get("code", "")
        if not CODE.match(code):
            return _page("No code", "<p>GitHub's callback carries no valid code.</p>", 400)
        self._creating = True  # a second callback while this one waits for GitHub is refused
        try:
            return await self._create(code)
        finally:
            self._creating = False

    async def _create(self, code: str) -> Response:
        try:
            data = await self._convert(code)
        except RequestFailed as exc:
            status = exc.response.status_code
            why = (
                "the code has expired (they last one hour) or was already used"
                if status in (404, 422)
                else f"GitHub answered {status}"
            )
            log.error("setup: cannot exchange the manifest code: %s", why)
            body = f'<p>Cannot finish: {html.escape(why)}.</p><p><a href="/setup">Start again</a>.'
            return _page("GitHub refused the code", body, 502)
        except RequestError as exc:
            reason = type(exc.__cause__ or exc).__name__
            log.error("setup: cannot reach GitHub: %s", reason)
            body = f"<p>Cannot reach GitHub ({html.escape(reason)}). Nothing was written.</p>"
            return _page("GitHub unreachable", body, 502)
        try:
            self.created = await anyio.to_thread.run_sync(write_credentials, data, self._env_file)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("setup: GitHub's answer lacks %s", exc)
            return _page("Unexpected answer", "<p>GitHub's answer is incomplete.</p>", 502)
        except OSError as exc:
            log.error("setup: cannot write credentials: %s", exc.strerror)
            body = f"<p>Cannot write {html.escape(str(self._env_file))}: {exc.strerror}.</p>"
            return _page("Cannot write", body, 500)
        log.info(
            "setup: created app %r (id %s); wrote APP_ID, PRIVATE_KEY_PATH and WEBHOOK_SECRET "
            "to %s; restart to use them",
            self.created.slug,
            self.created.app_id,
            self._env_file,
        )
        return _page("App created", _created_body(self.created, self._env_file))

    async def _convert(self, code: str) -> dict[str, Any]:
        github = GitHub(
            UnauthAuthStrategy(),
            base_url=self._settings.github_api_url + "/",
            user_agent="auto-issue-processor",
            http_cache=False,
            auto_retry=False,
        )
        response = await github.rest.apps.async_create_from_manifest(code)
        # Only a few fields are needed; reading the JSON keeps setup immune to schema drift.
        data: dict[str, Any] = response.raw_response.json()
        return data


def write_credentials(data: Mapping[str, Any], env_file: Path) -> CreatedApp:
    """Write the key file and the credentials in ``.env``, both readable by the owner only."""
    app_id = int(data["id"])
    slug = str(data.get("slug") or f"app-{app_id}")
    pem = str(data["pem"])
    if "PRIVATE KEY" not in pem:
        raise ValueError("a private key")
    secret = data.get("webhook_secret")
    generated = not secret
    if generated:
        secret = secrets.token_hex(20)  # GitHub returned none: the user sets this one there
    directory = env_file.parent
    directory.mkdir(parents=True, exist_ok=True)
    key_path = (directory / f"{re.sub(r'[^A-Za-z0-9_.-]', '-', slug)}.private-key.pem").resolve()
    _write_private(key_path, pem if pem.endswith("\n") else pem + "\n")
    kept: list[str] = []
    if env_file.is_file():
        for line in env_file.read_text("utf-8").splitlines():
            key = line.strip().removeprefix("export ").split("=", 1)[0].strip()
            if key not in CREDENTIAL_KEYS:
                kept.append(line)
    kept += [
        f"# written by /setup for the GitHub App {slug!r} on {time.strftime('%Y-%m-%d %H:%M')}",
        f"APP_ID={app_id}",
        f"PRIVATE_KEY_PATH={_quoted(str(key_path))}",
        f"WEBHOOK_SECRET={_quoted(str(secret))}",
    ]
    _write_private(env_file, "\n".join(kept) + "\n")
    return CreatedApp(
        app_id=app_id,
        slug=slug,
        name=str(data.get("name") or slug),
        html_url=str(data.get("html_url") or ""),
        key_path=key_path,
        secret_generated=generated,
    )


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with a file only its owner can read (0600 whatever the umask)."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _quoted(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./:@+-]*", value):
        return value
    # Inside double quotes, .env (python-dotenv) reads \\ and \" as escapes.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _bad_org(org: str) -> str:
    return f"{org!r} is not a GitHub organisation name (letters, digits and '-', up to 39)."


_OPERATOR_ONLY = (
    "<p>Setting up this server is for its operator only. Open the address it printed on "
    "its console when it started (<code>/setup?token=...</code>) in your browser.</p>"
)
_ALREADY_ADMITTED = (
    "<p>This setup token is wrong or was already used by another browser. Restart the "
    "server for a new one (it prints it on its console).</p>"
)


def _form(org: str, name: str, *, error: str = "") -> str:
    problem = f'<p class="error">{html.escape(error)}</p>' if error else ""
    return f"""{problem}
<form method="get" action="/setup">
  <p><label>Organisation (empty for your personal account)
     <input name="org" value="{html.escape(org)}" placeholder="my-org"></label></p>
  <p><label>App name (unique on GitHub)
     <input name="name" value="{html.escape(name)}" size="34"></label></p>
  <p><button type="submit">Update</button></p>
</form>"""


def _create_button(action: str, manifest: Mapping[str, Any], org: str, base: str) -> str:
    owner = f"the organisation <b>{html.escape(org)}</b>" if org else "your personal account"
    host = (urlsplit(base).hostname or "").lower()
    warning = ""
    if host in LOCAL_HOSTS or host.endswith(".local"):
        warning = (
            '<p class="error">GitHub cannot reach <code>' + html.escape(base) + "</code>. "
            "Expose this server (a reverse proxy or a tunnel, see the README) and restart with "
            "<code>--public-url https://YOUR-HOST</code> before creating the app.</p>"
        )
    hook = html.escape(manifest["hook_attributes"]["url"])
    return f"""{warning}
<p>GitHub will send webhooks to <code>{hook}</code>.</p>
<form method="post" action="{html.escape(action)}">
  <input type="hidden" name="manifest" value="{html.escape(json.dumps(manifest))}">
  <button type="submit">Create the app on GitHub for {owner}</button>
</form>
<details><summary>Manifest</summary><pre>{html.escape(json.dumps(manifest, indent=2))}</pre>
</details>"""


def _created_body(created: CreatedApp, env_file: Path) -> str:
    install = f"{created.html_url}/installations/new" if created.html_url else ""
    link = (
        f'<a href="{html.escape(install)}">{html.escape(install)}</a>'
        if install
        else "the app's page on GitHub"
    )
    secret_note = (
        "<p>GitHub returned no webhook secret: one was generated and written to "
        f"<code>{html.escape(str(env_file))}</code>; set the same value in the app's settings "
        "on GitHub (Webhook secret).</p>"
        if created.secret_generated
        else ""
    )
    name = html.escape(created.name)
    return f"""<p>Created the GitHub App <b>{name}</b> (id {created.app_id}).</p>
<p>Wrote <code>APP_ID</code>, <code>PRIVATE_KEY_PATH</code> and <code>WEBHOOK_SECRET</code> to
<code>{html.escape(str(env_file))}</code>; the private key is in
<code>{html.escape(str(created.key_path))}</code> (readable by you only).</p>{secret_note}
<ol><li>Install the app on your organisation or repositories: {link}</li>
<li>Restart the server (<code>python -m github_app serve</code>): it then runs as the app.
</li></ol>"""


def _page(title: str, body: str, status: int = 200) -> Response:
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font:15px/1.5 system-ui,sans-serif;max-width:46em;margin:2em auto;padding:0 1em}}
.error{{color:#b42318}} code{{background:#f3f4f6;padding:0 .2em}}</style></head>
<body><h1>auto-issue-processor: {html.escape(title)}</h1>
{body}
</body></html>"""
    return HTMLResponse(
        document,
        status_code=status,
        headers={"cache-control": "no-store", "referrer-policy": "no-referrer"},
    )
