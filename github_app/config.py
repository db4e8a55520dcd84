"""Settings from the environment and a ``.env`` file, with Probot's names.

Everything an operator can get wrong is checked here, once, at start-up, and
reported as a one-line ``SettingsError``: a delivery must never be the first
thing to discover that the private key is unreadable.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from github_app.errors import SettingsError

DEFAULT_WEBHOOK_PATH = "/api/github/webhooks"
DEFAULT_API_URL = "https://api.github.com"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class Settings:
    """What the process runs with. Secrets are kept out of ``repr`` so they never reach a log."""

    app_id: int | None = None
    private_key: str | None = field(default=None, repr=False)
    webhook_secret: str = field(default="", repr=False)
    webhook_secret_generated: bool = False
    webhook_path: str = DEFAULT_WEBHOOK_PATH
    github_api_url: str = DEFAULT_API_URL
    host: str = "0.0.0.0"  # noqa: S104 - a webhook receiver must be reachable; Probot does the same
    port: int = 3000
    admin_token: str | None = field(default=None, repr=False)
    public_url: str | None = None
    dry_run: bool = True
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    queue_max_events: int = 10_000
    queue_max_bytes: int = 256 * 1024 * 1024
    workers_min: int = 1
    workers_max: int = 8
    shutdown_timeout: float = 25.0
    github_concurrency: int = 8
    github_write_interval: float = 1.0
    queue_ttl_critical: float = 24 * 3600.0
    queue_ttl_high: float = 2 * 3600.0
    queue_ttl_normal: float = 2 * 3600.0
    queue_ttl_low: float = 1800.0
    queue_ageing: float = 60.0
    retry_attempts: int = 5
    retry_base: float = 2.0
    retry_max: float = 300.0
    dead_letter_max: int = 10_000

    @property
    def has_credentials(self) -> bool:
        """True when the app can authenticate to GitHub (APP_ID and a private key)."""
        return self.app_id is not None and self.private_key is not None


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a ``.env`` file: ``KEY=value``, ``export KEY=value``, quotes, ``#`` comments.

    A double-quoted value may span several lines, which is how a PEM private
    key is usually pasted; ``\\n`` inside double quotes is a newline.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror}") from exc
    values: dict[str, str] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            raise SettingsError(f"{path}:{index}: expected KEY=value")
        value = value.strip()
        if value[:1] in ('"', "'"):
            quote = value[0]
            body = value[1:]
            close = _closing_quote(body, quote)
            while close < 0 and quote == '"' and index < len(lines):
                body += "\n" + lines[index]
                index += 1
                close = _closing_quote(body, quote)
            if close < 0:
                raise SettingsError(f"{path}:{index}: unterminated quoted value for {key}")
            rest = body[close + 1 :].strip()
            if rest and not rest.startswith("#"):
                raise SettingsError(f"{path}:{index}: unexpected text after the quoted value")
            value = body[:close]
            if quote == '"':
                value = value.replace("\\n", "\n").replace('\\"', '"')
        else:
            value = value.split(" #", 1)[0].strip()
        values[key] = value
    return values


def _closing_quote(body: str, quote: str) -> int:
    """Index of the quote that ends ``body`` (a backslash escapes one inside double quotes)."""
    position = 0
    while True:
        position = body.find(quote, position)
        if position < 0 or quote == "'" or body[position - 1 : position] != "\\":
            return position
        position += 1


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: Path | str | None = ".env",
    overrides: Mapping[str, str | None] | None = None,
) -> Settings:
    """Build ``Settings`` from (lowest first) the ``.env`` file, the environment, then overrides.

    ``overrides`` are command-line options; ``None`` values are ignored.
    """
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        merged.update(read_env_file(Path(env_file)))
    merged.update(os.environ if environ is None else environ)
    for key, value in (overrides or {}).items():
        if value is not None:
            merged[key] = value
    return _settings_from(merged)


def _settings_from(env: Mapping[str, str]) -> Settings:
    def get(name: str) -> str | None:
        value = env.get(name)
        return value.strip() if value is not None and value.strip() else None

    app_id = _parse_app_id(get("APP_ID"))
    private_key = _load_private_key(env.get("PRIVATE_KEY"), get("PRIVATE_KEY_PATH"))
    secret = env.get("WEBHOOK_SECRET") or ""
    if (app_id is None) != (private_key is None):
        missing = "PRIVATE_KEY or PRIVATE_KEY_PATH" if private_key is None else "APP_ID"
        raise SettingsError(f"half-configured app: {missing} is not set (set both or neither)")
    has_credentials = app_id is not None
    if has_credentials and not secret:
        raise SettingsError("half-configured app: WEBHOOK_SECRET is not set (the app's secret)")
    generated = not secret
    if generated:
        secret = secrets.token_hex(20)
    dry_run = _parse_bool("DRY_RUN", get("DRY_RUN"), default=not has_credentials)
    if not has_credentials:
        dry_run = True
    workers_min = _parse_int("WORKERS_MIN", get("WORKERS_MIN"), 1, minimum=1)
    workers_max = _parse_int("WORKERS_MAX", get("WORKERS_MAX"), max(8, workers_min), minimum=1)
    retry_base = _parse_float("RETRY_BASE", get("RETRY_BASE"), Settings.retry_base)
    retry_max = _parse_float("RETRY_MAX", get("RETRY_MAX"), max(Settings.retry_max, retry_base))
    if retry_base > retry_max:
        raise SettingsError(f"RETRY_BASE ({retry_base:g}) is above RETRY_MAX ({retry_max:g})")
    if workers_min > workers_max:
        raise SettingsError(f"WORKERS_MIN ({workers_min}) is above WORKERS_MAX ({workers_max})")
    log_level = (get("LOG_LEVEL") or "INFO").upper()
    if log_level not in LOG_LEVELS:
        raise SettingsError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {log_level!r}")
    log_format = (get("LOG_FORMAT") or "text").lower()
    if log_format not in ("text", "json"):
        raise SettingsError(f"LOG_FORMAT must be 'text' or 'json', not {log_format!r}")
    webhook_path = get("WEBHOOK_PATH") or DEFAULT_WEBHOOK_PATH
    if not webhook_path.startswith("/"):
        raise SettingsError(f"WEBHOOK_PATH must start with '/', not {webhook_path!r}")
    public_url = get("PUBLIC_URL")
    if public_url is not None:
        public_url = public_url.rstrip("/")
        if not public_url.startswith(("http://", "https://")):
            raise SettingsError(f"PUBLIC_URL must be an http(s) URL, not {public_url!r}")
    api_url = (get("GITHUB_API_URL") or DEFAULT_API_URL).rstrip("/")
    if not api_url.startswith(("http://", "https://")):
        raise SettingsError(f"GITHUB_API_URL must be an http(s) URL, not {api_url!r}")
    return Settings(
        app_id=app_id,
        private_key=private_key,
        webhook_secret=secret,
        webhook_secret_generated=generated,
        webhook_path=webhook_path,
        github_api_url=api_url,
        host=get("HOST") or Settings.host,
        port=_parse_int("PORT", get("PORT"), 3000, minimum=0, maximum=65535),
        admin_token=get("ADMIN_TOKEN"),
        public_url=public_url,
        dry_run=dry_run,
        log_level=log_level,
        log_format="json" if log_format == "json" else "text",
        queue_max_events=_parse_int("QUEUE_MAX_EVENTS", get("QUEUE_MAX_EVENTS"), 10_000, minimum=1),
        queue_max_bytes=_parse_int(
            "QUEUE_MAX_BYTES", get("QUEUE_MAX_BYTES"), Settings.queue_max_bytes, minimum=1024
        ),
        workers_min=workers_min,
        workers_max=workers_max,
        shutdown_timeout=float(
            _parse_int("SHUTDOWN_TIMEOUT", get("SHUTDOWN_TIMEOUT"), 25, minimum=0)
        ),
        github_concurrency=_parse_int(
            "GITHUB_CONCURRENCY", get("GITHUB_CONCURRENCY"), 8, minimum=1, maximum=100
        ),
        github_write_interval=_parse_bounded_float(
            "GITHUB_WRITE_INTERVAL", get("GITHUB_WRITE_INTERVAL"), 1.0, minimum=0.0, maximum=60.0
        ),
        queue_ttl_critical=_parse_float(
            "QUEUE_TTL_CRITICAL", get("QUEUE_TTL_CRITICAL"), Settings.queue_ttl_critical
        ),
        queue_ttl_high=_parse_float(
            "QUEUE_TTL_HIGH", get("QUEUE_TTL_HIGH"), Settings.queue_ttl_high
        ),
        queue_ttl_normal=_parse_float(
            "QUEUE_TTL_NORMAL", get("QUEUE_TTL_NORMAL"), Settings.queue_ttl_normal
        ),
        queue_ttl_low=_parse_float("QUEUE_TTL_LOW", get("QUEUE_TTL_LOW"), Settings.queue_ttl_low),
        queue_ageing=_parse_float("QUEUE_AGEING", get("QUEUE_AGEING"), Settings.queue_ageing),
        retry_attempts=_parse_int(
            "RETRY_ATTEMPTS", get("RETRY_ATTEMPTS"), Settings.retry_attempts, minimum=1
        ),
        retry_base=retry_base,
        retry_max=retry_max,
        dead_letter_max=_parse_int(
            "DEAD_LETTER_MAX", get("DEAD_LETTER_MAX"), Settings.dead_letter_max, minimum=1
        ),
    )


def _parse_app_id(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit():
        raise SettingsError(f"APP_ID must be the app's numeric id, not {value!r}")
    return int(value)


def _load_private_key(inline: str | None, path: str | None) -> str | None:
    """Return the PEM text from PRIVATE_KEY (``\\n`` escapes allowed) or PRIVATE_KEY_PATH."""
    if inline and inline.strip():
        if path:
            raise SettingsError("set PRIVATE_KEY or PRIVATE_KEY_PATH, not both")
        key = inline.strip().replace("\\n", "\n")
        source = "PRIVATE_KEY"
    elif path:
        try:
            key = Path(path).expanduser().read_text(encoding="utf-8")
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
    return key


def _parse_bool(name: str, value: str | None, *, default: bool) -> bool:
    if value is None:
        return default
    lowered = value.lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise SettingsError(f"{name} must be true or false, not {value!r}")


def _parse_bounded_float(
    name: str, value: str | None, default: float, *, minimum: float, maximum: float
) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {value!r}") from None
    if not minimum <= number <= maximum:
        raise SettingsError(f"{name} must be between {minimum:g} and {maximum:g}, not {value}")
    return number


def _parse_int(
    name: str, value: str | None, default: int, *, minimum: int, maximum: int | None = None
) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {value!r}") from None
    if number < minimum or (maximum is not None and number > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise SettingsError(f"{name} must be {bound}, not {number}")
    return number


def _parse_float(name: str, value: str | None, default: float) -> float:
    """A positive number of seconds."""
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, not {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise SettingsError(f"{name} must be a positive number of seconds, not {value}")
    return number
