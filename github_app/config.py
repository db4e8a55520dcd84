"""Settings from the environment and a ``.env`` file, with Probot's names, declared once.

Each setting is one field of ``Settings``: its type, default, bounds and help
text. pydantic-settings reads the environment and ``.env``; pydantic checks
the values; the README's settings table is generated from the same fields
(``python -m github_app settings-table``). To add a setting, add a field.

Everything an operator can get wrong is checked here, once, at start-up, and
reported as a one-line ``SettingsError`` naming the setting, what is wrong
with the value and where it came from: a delivery must never be the first
thing to discover that the private key is unreadable.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Self, get_args, get_origin

from dotenv.parser import parse_stream
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from github_app.errors import SettingsError
from github_app.generated_text import replace_between
from github_app.queue.dead_letters import DEFAULT_DEAD_LETTER_CAPACITY
from github_app.queue.memory import DEFAULT_AGEING, DEFAULT_TTL
from github_app.queue.priority import Priority
from github_app.queue.retry import RetryPolicy

DEFAULT_WEBHOOK_PATH = "/api/github/webhooks"
DEFAULT_API_URL = "https://api.github.com"
COMMAND_LINE = "the command line"
ENVIRONMENT = "the environment"


@dataclass(frozen=True)
class Expect:
    """What a setting accepts, in words: its error message and its README row say it."""

    words: str


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("not an http(s) URL")
    return value.rstrip("/")


def _content_rules(value: str) -> str:
    for rule in filter(None, (part.strip() for part in value.split(","))):
        if not re.fullmatch(r"[A-Za-z]+ +/\S*", rule):
            raise ValueError(f"{rule!r} is not 'METHOD /path'")
    return value


def _route(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("does not start with '/'")
    return value


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


def _lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


AppId = Annotated[int, Field(ge=1), Expect("the app's numeric id")]
HttpUrl = Annotated[str, AfterValidator(_http_url), Expect("an http(s) URL")]
Route = Annotated[str, AfterValidator(_route), Expect("a path starting with '/'")]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False), Expect("a positive number of seconds")]
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)
]
LogFormat = Annotated[Literal["text", "json"], BeforeValidator(_lower)]


def shown(default: str) -> dict[str, Any]:
    """The default as the README shows it, where the value alone would mislead.

    ``{default}`` in it stands for the field's default value.
    """
    return {"shown_default": default}


class Settings(BaseSettings):
    """What the process runs with. Secrets are ``SecretStr``: no log, repr or status shows them.

    Precedence, highest first: ``serve`` options, the environment, ``.env``, the defaults here.
    An empty value counts as unset.
    """

    model_config = SettingsConfigDict(
        frozen=True,
        extra="ignore",
        case_sensitive=False,
        str_strip_whitespace=True,
        hide_input_in_errors=True,
    )

    app_id: AppId | None = Field(
        None, description="the GitHub App's id, from its settings page (set with a key, or neither)"
    )
    private_key: SecretStr | None = Field(
        None, description="the PEM key itself (`\\n` escapes allowed)"
    )
    private_key_path: Path | None = Field(None, description="or a path to the PEM file")
    webhook_secret: SecretStr = Field(
        SecretStr(""),
        description="the app's webhook secret; required with credentials",
        json_schema_extra=shown("generated in dry run"),
    )
    webhook_path: Route = Field(
        DEFAULT_WEBHOOK_PATH, description="the webhook route (`--webhook-path`)"
    )
    github_api_url: HttpUrl = Field(
        DEFAULT_API_URL,
        description="API base; `https://HOST/api/v3` for GitHub Enterprise Server "
        "(`--github-api-url`)",
    )
    host: str = Field(
        "0.0.0.0",  # noqa: S104 - a webhook receiver must be reachable; Probot does the same
        description="listen address (`--host`)",
        json_schema_extra=shown(
            "{default} (127.0.0.1 while there are no app credentials, unless `--host` is given)"
        ),
    )
    public_url: HttpUrl | None = Field(
        None,
        description="where GitHub reaches this server; used by `/setup` for the webhook and "
        "callback URLs (`--public-url`)",
        json_schema_extra=shown("the request's address"),
    )
    port: int = Field(3000, ge=0, le=65535, description="listen port (`--port`)")
    dry_run: bool = Field(
        True,
        description="log writes instead of making them; reads still go to GitHub when "
        "credentials are set; always on without credentials (`--dry-run`)",
        json_schema_extra=shown("on without credentials"),
    )
    log_level: LogLevel = Field("INFO", description="log threshold (`--log-level`)")
    log_format: LogFormat = Field(
        "text", description="`json` writes one object per line (`--log-format`)"
    )
    queue_max_events: int = Field(10_000, ge=1, description="queue bound in events")
    queue_max_bytes: int = Field(
        256 * 1024 * 1024, ge=1024, description="queue bound in compressed payload bytes"
    )
    workers_min: int = Field(
        1, ge=1, description="fewest events processed at once (`--workers N` sets both)"
    )
    workers_max: int = Field(
        64,
        ge=1,
        description="most events processed at once; the width controller looks for GitHub's "
        "knee below it (an app on many organisations needs room: each installation's "
        "requests stay under GITHUB_CONCURRENCY anyway); equal to WORKERS_MIN gives a "
        "fixed width",
        json_schema_extra=shown("{default}, or WORKERS_MIN if higher"),
    )
    github_concurrency: int = Field(
        8,
        ge=1,
        le=100,
        description="requests on the wire at once per installation "
        "(GitHub refuses beyond about 100)",
    )
    github_write_interval: float = Field(
        1.0,
        ge=0,
        le=60,
        allow_inf_nan=False,
        description="seconds from GitHub's answer to one write of an installation to its "
        "next write, as GitHub asks; installations do not wait for each other",
    )
    github_secondary_limits: Annotated[Literal["github", "off"], BeforeValidator(_lower)] = Field(
        "github",
        description="`github`: keep github.com's documented secondary limits ahead of time, per "
        "installation (80 content-generating requests a minute, 500 an hour, 900 points a "
        "minute); `off` for a GitHub Enterprise Server whose administrator left them off (one "
        "write at a time, GITHUB_WRITE_INTERVAL apart, still holds)",
    )
    github_content_creating: Annotated[str, AfterValidator(_content_rules)] = Field(
        "",
        description="more requests GitHub counts as content-generating (80 a minute, 500 an "
        "hour), comma-separated `METHOD /path` with `{name}` for a path segment, e.g. "
        "`POST /repos/{owner}/{repo}/issues/{number}/labels`; creating issues and comments "
        "always count",
    )
    shutdown_timeout: float = Field(
        25.0,
        ge=0,
        allow_inf_nan=False,
        description="seconds in-flight events get to finish on SIGTERM",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="enables `/admin` and `/admin/*`, which then need "
        "`Authorization: Bearer $ADMIN_TOKEN`; unset, they answer 404",
    )
    queue_ttl_critical: Seconds = Field(
        DEFAULT_TTL[Priority.CRITICAL],
        description="seconds a CRITICAL event may wait; older when it reaches the front, "
        "it is dead-lettered as `expired`",
    )
    queue_ttl_high: Seconds = Field(
        DEFAULT_TTL[Priority.HIGH], description="the same for HIGH events"
    )
    queue_ttl_normal: Seconds = Field(
        DEFAULT_TTL[Priority.NORMAL], description="the same for NORMAL events"
    )
    queue_ttl_low: Seconds = Field(DEFAULT_TTL[Priority.LOW], description="the same for LOW events")
    queue_ageing: Seconds = Field(
        DEFAULT_AGEING,
        description="seconds a ready event may wait before its level is served ahead of "
        "higher ones (no starvation)",
    )
    retry_attempts: int = Field(
        RetryPolicy.attempts,
        ge=1,
        description="tries per event before it is dead-lettered as `exhausted`",
    )
    retry_base: Seconds = Field(
        RetryPolicy.base,
        description="backoff after the n-th failed try: `RETRY_BASE * 2^(n-1)` s, capped, "
        "jittered between half and all of it, at least GitHub's `retry-after`",
    )
    retry_max: Seconds = Field(
        RetryPolicy.cap,
        description="the backoff's cap, in seconds",
        json_schema_extra=shown("{default}, or RETRY_BASE if higher"),
    )
    http_header_timeout: Seconds = Field(
        5.0,
        description="seconds a connection gets to send a request's line and headers (from "
        "connecting, or from the previous answer); a slower one is closed",
    )
    http_body_timeout: Seconds = Field(
        10.0,
        description="seconds a request gets to send its body after its headers (GitHub "
        "gives up on a delivery after 10); a slower one is closed",
    )
    http_max_connections: int = Field(
        1000, ge=1, description="open connections at most; a new one beyond is closed at once"
    )
    webhook_max_reading_bytes: int = Field(
        64 * 1024 * 1024,
        ge=25 * 1024 * 1024,
        description="bytes of webhook bodies being read at once, before their signature is "
        "checked; a delivery that would go beyond is answered 503 with `Retry-After`",
    )
    dead_letter_max: int = Field(
        DEFAULT_DEAD_LETTER_CAPACITY,
        ge=1,
        description="dead-letter entries kept; beyond that the oldest is dropped with a "
        "counter and a log line",
    )
    queue_backend: Annotated[Literal["sqlite", "memory", "redis"], BeforeValidator(_lower)] = Field(
        "sqlite",
        description="`sqlite`: admitted events are committed to a spool in STATE_DIR before "
        "the 202 and survive kill -9, restarts and deploys; `memory`: kept in this process "
        "only, lost if it dies; `redis`: kept in the Redis at REDIS_URL and shared by every "
        "replica of the app (scale-out)",
    )
    redis_url: SecretStr | None = Field(
        None,
        description="the Redis that replicas share when QUEUE_BACKEND is `redis`, e.g. "
        "`redis://:password@redis:6379/0` or `rediss://` for TLS; never logged (it may hold a "
        "password)",
    )
    redis_claim_idle: Seconds = Field(
        60.0,
        description="seconds an event may stay taken by a replica that stopped answering "
        "before another replica claims it (one attempt counted)",
    )
    state_dir: Path = Field(
        Path(".auto-issue-processor"),
        description="folder of the spool and its lock (created mode 0700); one process per folder",
    )
    spool_sync: Annotated[Literal["normal", "full"], BeforeValidator(_lower)] = Field(
        "normal",
        description="`normal`: a committed event survives a crash of the process; `full`: "
        "also a power loss or OS crash (an fsync per commit group, slower)",
    )
    recovery_interval: float = Field(
        300.0,
        ge=0,
        allow_inf_nan=False,
        description="seconds between rounds of recovery, which reads GitHub's delivery log "
        "and asks for redelivery of what was never admitted (also at start-up); `0` turns it "
        "off; off in dry run",
    )
    recovery_lookback: Seconds = Field(
        3 * 24 * 3600.0,
        description="seconds of the delivery log the first round reads (later rounds read "
        "back to where the last one ended); never beyond what GitHub keeps: 3 days, "
        "7 on GitHub Enterprise Server",
    )
    recovery_max_attempts: int = Field(
        3,
        ge=1,
        description="redeliveries requested per event, at most one per RECOVERY_INTERVAL, "
        "before recovery gives up on it (logged)",
    )

    _webhook_secret_generated: bool = PrivateAttr(False)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what ``load_settings`` passes: it layers the sources itself, so that an invalid
        value can say where it came from, and a test can pass its own environment."""
        return (init_settings,)

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if not (isinstance(v, str) and not v.strip())}
        return data

    @model_validator(mode="after")
    def _resolve(self) -> Self:
        """The checks and defaults that depend on more than one setting."""
        given = self.model_fields_set
        _set(self, "private_key", _private_key(self.private_key, self.private_key_path))
        if (self.app_id is None) != (self.private_key is None):
            missing = "PRIVATE_KEY or PRIVATE_KEY_PATH" if self.private_key is None else "APP_ID"
            raise SettingsError(f"half-configured app: {missing} is not set (set both or neither)")
        if self.has_credentials and not self.webhook_secret.get_secret_value():
            raise SettingsError("half-configured app: WEBHOOK_SECRET is not set (the app's secret)")
        if not self.webhook_secret.get_secret_value():
            _set(self, "webhook_secret", SecretStr(secrets.token_hex(20)))
            self._webhook_secret_generated = True
        if not self.has_credentials or "dry_run" not in given:
            _set(self, "dry_run", not self.has_credentials)
        if "workers_max" not in given:
            _set(self, "workers_max", max(self.workers_max, self.workers_min))
        if "retry_max" not in given:
            _set(self, "retry_max", max(self.retry_max, self.retry_base))
        if self.retry_base > self.retry_max:
            raise SettingsError(
                f"RETRY_BASE ({self.retry_base:g}) is above RETRY_MAX ({self.retry_max:g})"
            )
        if self.queue_backend == "redis" and self.redis_url is None:
            raise SettingsError("QUEUE_BACKEND is redis but REDIS_URL is not set")
        if self.workers_min > self.workers_max:
            raise SettingsError(
                f"WORKERS_MIN ({self.workers_min}) is above WORKERS_MAX ({self.workers_max})"
            )
        return self

    @property
    def has_credentials(self) -> bool:
        """True when the app can authenticate to GitHub (APP_ID and a private key)."""
        return self.app_id is not None and self.private_key is not None

    @property
    def webhook_secret_generated(self) -> bool:
        """True when no WEBHOOK_SECRET was set and this run made one up (dry run only)."""
        return self._webhook_secret_generated


def _set(settings: Settings, name: str, value: object) -> None:
    """Settle a derived value while validating (the model is frozen for everyone else)."""
    object.__setattr__(settings, name, value)


def _private_key(inline: SecretStr | None, path: Path | None) -> SecretStr | None:
    """The PEM text from PRIVATE_KEY (``\\n`` escapes allowed) or PRIVATE_KEY_PATH."""
    if inline is not None:
        if path is not None:
            raise SettingsError("set PRIVATE_KEY or PRIVATE_KEY_PATH, not both")
        key = inline.get_secret_value().strip().replace("\\n", "\n")
        source = "PRIVATE_KEY"
    elif path is not None:
        try:
            key = path.expanduser().read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SettingsError(f"PRIVATE_KEY_PATH: no such file: {path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not a text file"
            raise SettingsError(f"PRIVATE_KEY_PATH: cannot read {path}: {reason}") from None
        source = f"PRIVATE_KEY_PATH ({path})"
    else:
        return None
    if "-----BEGIN" not in key or "PRIVATE KEY-----" not in key:
        raise SettingsError(f"{source} is not a PEM private key (expected '-----BEGIN ... KEY')")
    return SecretStr(key)


# --- where the values come from ---------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``.env`` file as python-dotenv does, but refuse what it would skip silently.

    ``KEY=value``, ``export KEY=value``, quotes, ``#`` comments; a quoted value
    may span several lines (how a PEM key is pasted) and ``\\n`` inside double
    quotes is a newline. No ``$VAR`` expansion: a secret is taken as written.
    A malformed line is a one-line ``SettingsError`` with its line number.
    """
    try:
        with path.open(encoding="utf-8") as stream:
            bindings = list(parse_stream(stream))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not a text file"
        raise SettingsError(f"cannot read {path}: {reason}") from None
    values: dict[str, str] = {}
    for binding in bindings:
        text = binding.original.string
        # A binding starts with the blank lines before it: count from its first character.
        line = binding.original.line + text[: len(text) - len(text.lstrip())].count("\n")
        if binding.error:
            raise SettingsError(f"{path}:{line}: {_malformed(text)}")
        if binding.key is None:
            continue  # a comment or blank lines
        if binding.value is None or not binding.key.replace("_", "").isalnum():
            raise SettingsError(f"{path}:{line}: expected KEY=value")
        values[binding.key] = binding.value
    return values


_QUOTED = re.compile(
    r"""\s*(?:export\s+)?([^=#\s]+)\s*=\s*(?:"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')"""
)
_OPENS_QUOTE = re.compile(r"""\s*(?:export\s+)?([^=#\s]+)\s*=\s*["']""")


def _malformed(text: str) -> str:
    """Why python-dotenv could not read the binding ``text``, in the words of our old parser."""
    opens = _OPENS_QUOTE.match(text)
    if opens is None:
        return "expected KEY=value"
    if _QUOTED.match(text) is None:
        return f"unterminated quoted value for {opens.group(1)}"
    return "unexpected text after the quoted value"


class _EnvironSource(EnvSettingsSource):
    """The environment: ``os.environ``, or the mapping a test or benchmark passes instead."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in self._environ.items()}


class _EnvFileSource(DotEnvSettingsSource):
    """``.env``, read by ``read_env_file`` so a malformed line stops start-up."""

    def _read_env_file(self, file_path: Path) -> Mapping[str, str | None]:
        return {key.lower(): value for key, value in read_env_file(file_path).items()}


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: Path | str | None = ".env",
    overrides: Mapping[str, str | None] | None = None,
) -> Settings:
    """Build ``Settings`` from (highest first) overrides, the environment, then ``.env``.

    ``overrides`` are command-line options by setting name (``PORT``); ``None`` values are
    ignored. A missing ``.env`` is no error; ``env_file=None`` reads none.
    """
    layers: list[tuple[str, Mapping[str, Any]]] = [
        (COMMAND_LINE, {k.lower(): v for k, v in (overrides or {}).items() if v is not None}),
        (ENVIRONMENT, _EnvironSource(Settings, os.environ if environ is None else environ)()),
    ]
    if env_file is not None and Path(env_file).is_file():
        layers.append((str(env_file), _EnvFileSource(Settings, env_file=Path(env_file))()))
    merged: dict[str, Any] = {}
    for _, values in reversed(layers):
        merged.update(values)
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise SettingsError(_one_line(exc.errors()[0], layers)) from None


# --- what is wrong, in one line ---------------------------------------------------------------


def _one_line(error: ErrorDetails, layers: list[tuple[str, Mapping[str, Any]]]) -> str:
    """``NAME must be WHAT, not 'VALUE' (from WHERE)``; a secret's value is never repeated."""
    name = str(error["loc"][0]) if error["loc"] else ""
    field = Settings.model_fields.get(name)
    if field is None:
        return str(error["msg"])
    message = f"{name.upper()} must be {_problem(error, field)}"
    if not _is_secret(field):
        message += f", not {error['input']!r}"
    where = next((origin for origin, values in layers if name in values), None)
    return f"{message} (from {where})" if where else message


def _problem(error: ErrorDetails, field: FieldInfo) -> str:
    kind = error["type"]
    expect = _expect(field)
    if kind == "literal_error":
        return "one of " + ", ".join(_choices(field))
    if kind.startswith("bool"):
        return "true or false"
    if expect is not None:
        return expect.words
    if kind.startswith(("greater", "less", "finite")):
        return _bounds(field)
    if kind.startswith("int"):
        return "a whole number"
    if kind.startswith("float"):
        return "a number"
    return str(error.get("ctx", {}).get("error", error["msg"]))


def _expect(field: FieldInfo) -> Expect | None:
    """The field's ``Expect``, also when it is optional (``HttpUrl | None``)."""
    nested = [getattr(arg, "__metadata__", ()) for arg in get_args(field.annotation)]
    return next((m for m in (*field.metadata, *sum(nested, ())) if isinstance(m, Expect)), None)


def _bounds(field: FieldInfo) -> str:
    """``between 0 and 65535``, ``>= 1``, or "" for a number without bounds."""
    ge, le, gt = (_constraint(field, bound) for bound in ("ge", "le", "gt"))
    if ge is not None and le is not None:
        return f"between {ge:g} and {le:g}"
    if gt is not None:
        return f"> {gt:g}"
    return f">= {ge:g}" if ge is not None else ""


def _constraint(field: FieldInfo, bound: str) -> float | None:
    """The field's ``ge``, ``le`` or ``gt`` (pydantic keeps them as annotated-types metadata)."""
    values = [getattr(item, bound) for item in field.metadata if hasattr(item, bound)]
    return float(values[0]) if values else None


def _choices(field: FieldInfo) -> list[str]:
    kinds = (field.annotation, *get_args(field.annotation))
    literal = next(kind for kind in kinds if get_origin(kind) is Literal)
    return [str(choice) for choice in get_args(literal)]


def _is_secret(field: FieldInfo) -> bool:
    return SecretStr in (field.annotation, *get_args(field.annotation))


# --- the README's table -----------------------------------------------------------------------

TABLE_START = (
    "<!-- settings-table: generated by `python -m github_app settings-table`; do not edit -->"
)
TABLE_END = "<!-- /settings-table -->"


def settings_table() -> str:
    """The README's settings table: one row per field of ``Settings``, in declaration order."""
    rows = ["| setting | default | accepts | meaning |", "| --- | --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        meaning = field.description or ""
        rows.append(
            f"| `{name.upper()}` | {_shown_default(field)} | {_accepts(field)} | {meaning} |"
        )
    return "\n".join(rows) + "\n"


def with_settings_table(document: str) -> str:
    """``document`` (the README) with the text between the table's markers regenerated."""
    return replace_between(document, TABLE_START, TABLE_END, settings_table())


def _shown_default(field: FieldInfo) -> str:
    value = field.default
    if value is None:
        plain = "—"
    elif isinstance(value, bool):
        plain = "on" if value else "off"
    else:
        plain = f"`{value:g}`" if isinstance(value, float) else f"`{value}`"
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "shown_default" in extra:
        return str(extra["shown_default"]).format(default=plain)
    return plain


def _accepts(field: FieldInfo) -> str:
    expect = _expect(field)
    if expect is not None:
        return expect.words
    kinds = (field.annotation, *get_args(field.annotation))
    if any(get_origin(kind) is Literal for kind in kinds):
        return ", ".join(f"`{choice}`" for choice in _choices(field)) + " (any case)"
    if bool in kinds:
        return "true or false"
    if SecretStr in kinds:
        return "text, kept secret"
    if Path in kinds:
        return "a file path"
    number = "a whole number" if int in kinds else "a number" if float in kinds else ""
    if number:
        bounds = _bounds(field)
        return f"{number} {bounds}" if bounds else number
    return "text"
