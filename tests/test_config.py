"""Unit tests for github_app.config: .env parsing, precedence and every start-up check."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from github_app.config import DEFAULT_WEBHOOK_PATH, Settings, load_settings, read_env_file
from github_app.errors import SettingsError
from github_app.queue.dead_letters import DeadLetterQueue
from github_app.queue.memory import DEFAULT_AGEING, DEFAULT_TTL
from github_app.queue.priority import Priority
from github_app.queue.retry import RetryPolicy


@pytest.fixture(scope="module")
def pem_key() -> str:
    """A real RSA private key in PEM form, as GitHub hands it out."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.TraditionalOpenSSL,
        encryption_algorithm=serialization.NoEncryption(),
    ).decode("ascii")


@pytest.fixture
def credentials(pem_key: str) -> dict[str, str]:
    return {"APP_ID": "12345", "PRIVATE_KEY": pem_key, "WEBHOOK_SECRET": "s3cret-value"}


def settings_from(
    environ: Mapping[str, str],
    env_file: Path | None = None,
    overrides: Mapping[str, str | None] | None = None,
) -> Settings:
    """Load with no ``.env`` unless one is given, so a stray file in the cwd cannot interfere."""
    return load_settings(environ=environ, env_file=env_file, overrides=overrides)


def settings_error(environ: Mapping[str, str]) -> str:
    """The message of the SettingsError these settings raise, checked to be one line."""
    with pytest.raises(SettingsError) as info:
        settings_from(environ)
    message = str(info.value)
    assert "\n" not in message
    assert message
    return message


# --- defaults -------------------------------------------------------------------------------


def test_empty_environment_starts_in_dry_run_without_credentials() -> None:
    settings = settings_from({})
    assert settings.dry_run is True
    assert settings.app_id is None
    assert settings.private_key is None
    assert settings.has_credentials is False


def test_empty_environment_generates_a_long_random_webhook_secret() -> None:
    first = settings_from({})
    second = settings_from({})
    assert first.webhook_secret_generated is True
    assert len(first.webhook_secret.get_secret_value()) >= 32
    assert first.webhook_secret.get_secret_value() != second.webhook_secret.get_secret_value()


def test_empty_environment_uses_port_3000_and_the_probot_webhook_path() -> None:
    settings = settings_from({})
    assert settings.port == 3000
    assert settings.webhook_path == DEFAULT_WEBHOOK_PATH == "/api/github/webhooks"
    assert settings.github_api_url == "https://api.github.com"
    assert settings.log_level == "INFO"
    assert settings.log_format == "text"


def test_missing_env_file_is_not_an_error(tmp_path: Path) -> None:
    settings = settings_from({}, env_file=tmp_path / "does-not-exist.env")
    assert settings.port == 3000


def test_full_credentials_turn_dry_run_off_by_default(credentials: dict[str, str]) -> None:
    settings = settings_from(credentials)
    assert settings.app_id == 12345
    assert settings.has_credentials is True
    assert settings.dry_run is False
    assert settings.webhook_secret.get_secret_value() == "s3cret-value"
    assert settings.webhook_secret_generated is False


def test_dry_run_true_with_credentials_is_respected(credentials: dict[str, str]) -> None:
    assert settings_from({**credentials, "DRY_RUN": "yes"}).dry_run is True


def test_dry_run_false_without_credentials_still_runs_dry() -> None:
    assert settings_from({"DRY_RUN": "false"}).dry_run is True


# --- .env parsing ---------------------------------------------------------------------------


def test_env_file_accepts_export_prefix_comments_and_blank_lines(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "# a comment line\n\nexport PORT=4001\nHOST=127.0.0.1   # trailing comment\n"
        "   # indented comment\nLOG_LEVEL=debug\n",
        encoding="utf-8",
    )
    assert read_env_file(env) == {"PORT": "4001", "HOST": "127.0.0.1", "LOG_LEVEL": "debug"}


def test_env_file_strips_single_and_double_quotes(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "SINGLE='value with # hash and \\n kept literally'\nDOUBLE=\"double quoted\"\n",
        encoding="utf-8",
    )
    values = read_env_file(env)
    assert values["SINGLE"] == "value with # hash and \\n kept literally"
    assert values["DOUBLE"] == "double quoted"


def test_env_file_turns_backslash_n_inside_double_quotes_into_newlines(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('GREETING="line one\\nline two"\n', encoding="utf-8")
    assert read_env_file(env)["GREETING"] == "line one\nline two"


def test_env_file_reads_a_multi_line_double_quoted_pem_key(tmp_path: Path, pem_key: str) -> None:
    env = tmp_path / ".env"
    env.write_text(
        f'APP_ID=777\nPRIVATE_KEY="{pem_key.strip()}"\nWEBHOOK_SECRET=hush\nPORT=4002\n',
        encoding="utf-8",
    )
    assert read_env_file(env)["PRIVATE_KEY"] == pem_key.strip()
    settings = settings_from({}, env_file=env)
    assert settings.app_id == 777
    assert settings.port == 4002
    assert settings.private_key is not None
    # The key survived the round trip intact: cryptography can load it.
    pem = settings.private_key.get_secret_value()
    loaded = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)


def test_env_file_unterminated_double_quote_is_a_one_line_error(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('PRIVATE_KEY="-----BEGIN\nno end quote\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="unterminated") as info:
        read_env_file(env)
    assert "\n" not in str(info.value)


def test_env_file_line_without_equals_sign_is_an_error_with_its_line_number(
    tmp_path: Path,
) -> None:
    env = tmp_path / ".env"
    env.write_text("PORT=1\nnot a setting\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=":2:") as info:
        read_env_file(env)
    assert "\n" not in str(info.value)


def test_env_file_allows_a_comment_after_a_double_quoted_value(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('HOST="127.0.0.1" # local only\nWEBHOOK_PATH="/hooks"\n', encoding="utf-8")
    assert read_env_file(env) == {"HOST": "127.0.0.1", "WEBHOOK_PATH": "/hooks"}


def test_env_file_allows_a_comment_after_a_single_quoted_value(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("HOST='127.0.0.1' # local only\n", encoding="utf-8")
    assert read_env_file(env) == {"HOST": "127.0.0.1"}


# --- precedence -----------------------------------------------------------------------------


def test_environment_overrides_env_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("PORT=5000\nHOST=10.0.0.1\n", encoding="utf-8")
    settings = settings_from({"PORT": "4000"}, env_file=env)
    assert settings.port == 4000
    assert settings.host == "10.0.0.1"


def test_overrides_beat_environment_and_env_file_and_none_is_ignored(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("PORT=5000\nHOST=10.0.0.1\nLOG_LEVEL=ERROR\n", encoding="utf-8")
    settings = settings_from(
        {"PORT": "4000", "LOG_LEVEL": "WARNING"},
        env_file=env,
        overrides={"PORT": "6000", "HOST": None, "LOG_LEVEL": None},
    )
    assert settings.port == 6000
    assert settings.host == "10.0.0.1"
    assert settings.log_level == "WARNING"


# --- credentials ----------------------------------------------------------------------------


def test_non_numeric_app_id_is_an_error_naming_app_id(credentials: dict[str, str]) -> None:
    message = settings_error({**credentials, "APP_ID": "my-app"})
    assert "APP_ID" in message
    assert "my-app" in message


def test_app_id_without_private_key_is_half_configured() -> None:
    message = settings_error({"APP_ID": "12345", "WEBHOOK_SECRET": "x"})
    assert "half-configured" in message
    assert "PRIVATE_KEY" in message


def test_private_key_without_app_id_is_half_configured(pem_key: str) -> None:
    message = settings_error({"PRIVATE_KEY": pem_key, "WEBHOOK_SECRET": "x"})
    assert "half-configured" in message
    assert "APP_ID" in message


def test_credentials_without_webhook_secret_are_an_error(credentials: dict[str, str]) -> None:
    del credentials["WEBHOOK_SECRET"]
    message = settings_error(credentials)
    assert "WEBHOOK_SECRET" in message


def test_private_key_path_is_read_from_a_file(tmp_path: Path, pem_key: str) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(pem_key, encoding="utf-8")
    settings = settings_from(
        {"APP_ID": "1", "PRIVATE_KEY_PATH": str(key_file), "WEBHOOK_SECRET": "x"}
    )
    assert settings.private_key is not None
    assert settings.private_key.get_secret_value() == pem_key


def test_private_key_path_to_a_missing_file_is_an_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "key.pem"
    message = settings_error(
        {"APP_ID": "1", "PRIVATE_KEY_PATH": str(missing), "WEBHOOK_SECRET": "x"}
    )
    assert str(missing) in message
    assert "PRIVATE_KEY_PATH" in message


def test_private_key_path_to_an_unreadable_directory_is_an_error_naming_the_path(
    tmp_path: Path,
) -> None:
    message = settings_error(
        {"APP_ID": "1", "PRIVATE_KEY_PATH": str(tmp_path), "WEBHOOK_SECRET": "x"}
    )
    assert str(tmp_path) in message
    assert "cannot read" in message


def test_private_key_that_is_not_pem_is_an_error(credentials: dict[str, str]) -> None:
    message = settings_error({**credentials, "PRIVATE_KEY": "ssh-rsa AAAAB3NzaC1yc2E"})
    assert "PEM" in message
    assert "ssh-rsa" not in message


def test_private_key_file_that_is_not_pem_is_an_error_naming_the_path(tmp_path: Path) -> None:
    key_file = tmp_path / "not-a-key.txt"
    key_file.write_text("hello\n", encoding="utf-8")
    message = settings_error(
        {"APP_ID": "1", "PRIVATE_KEY_PATH": str(key_file), "WEBHOOK_SECRET": "x"}
    )
    assert "PEM" in message
    assert str(key_file) in message


def test_private_key_with_literal_backslash_n_sequences_is_converted_to_newlines(
    credentials: dict[str, str], pem_key: str
) -> None:
    one_line = pem_key.strip().replace("\n", "\\n")
    assert "\n" not in one_line
    settings = settings_from({**credentials, "PRIVATE_KEY": one_line})
    assert settings.private_key is not None
    assert settings.private_key.get_secret_value() == pem_key.strip()
    pem = settings.private_key.get_secret_value()
    loaded = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)


def test_private_key_and_private_key_path_together_are_an_error(
    credentials: dict[str, str], tmp_path: Path
) -> None:
    message = settings_error({**credentials, "PRIVATE_KEY_PATH": str(tmp_path / "k.pem")})
    assert "PRIVATE_KEY" in message
    assert "PRIVATE_KEY_PATH" in message


# --- numbers and words ----------------------------------------------------------------------


def test_workers_min_above_workers_max_is_an_error() -> None:
    message = settings_error({"WORKERS_MIN": "9", "WORKERS_MAX": "4"})
    assert "WORKERS_MIN" in message
    assert "WORKERS_MAX" in message


def test_equal_workers_min_and_max_give_a_fixed_width() -> None:
    settings = settings_from({"WORKERS_MIN": "4", "WORKERS_MAX": "4"})
    assert (settings.workers_min, settings.workers_max) == (4, 4)


def test_workers_max_defaults_to_at_least_workers_min() -> None:
    settings = settings_from({"WORKERS_MIN": "200"})
    assert settings.workers_max == 200


@pytest.mark.parametrize("port", ["http", "3000.5", "-1", "65536"])
def test_bad_port_is_an_error_naming_port(port: str) -> None:
    message = settings_error({"PORT": port})
    assert "PORT" in message


def test_log_level_is_case_insensitive_and_a_bad_one_is_an_error() -> None:
    assert settings_from({"LOG_LEVEL": "debug"}).log_level == "DEBUG"
    message = settings_error({"LOG_LEVEL": "verbose"})
    assert "LOG_LEVEL" in message
    assert "VERBOSE" in message


def test_log_format_json_is_accepted_and_a_bad_one_is_an_error() -> None:
    assert settings_from({"LOG_FORMAT": "JSON"}).log_format == "json"
    message = settings_error({"LOG_FORMAT": "xml"})
    assert "LOG_FORMAT" in message


def test_bad_dry_run_value_is_an_error_naming_dry_run() -> None:
    message = settings_error({"DRY_RUN": "maybe"})
    assert "DRY_RUN" in message
    assert "maybe" in message


def test_webhook_path_without_leading_slash_is_an_error() -> None:
    message = settings_error({"WEBHOOK_PATH": "api/github/webhooks"})
    assert "WEBHOOK_PATH" in message


def test_github_api_url_must_be_http_and_loses_its_trailing_slash() -> None:
    assert (
        settings_from({"GITHUB_API_URL": "https://ghe.example.com/api/v3/"}).github_api_url
        == "https://ghe.example.com/api/v3"
    )
    message = settings_error({"GITHUB_API_URL": "ghe.example.com"})
    assert "GITHUB_API_URL" in message


def test_queue_bounds_are_read_and_checked() -> None:
    settings = settings_from({"QUEUE_MAX_EVENTS": "50", "QUEUE_MAX_BYTES": "2048"})
    assert (settings.queue_max_events, settings.queue_max_bytes) == (50, 2048)
    assert "QUEUE_MAX_EVENTS" in settings_error({"QUEUE_MAX_EVENTS": "0"})
    assert "QUEUE_MAX_BYTES" in settings_error({"QUEUE_MAX_BYTES": "lots"})


# --- secrets stay out of repr ---------------------------------------------------------------


def test_repr_never_shows_private_key_webhook_secret_or_admin_token(
    credentials: dict[str, str], pem_key: str
) -> None:
    settings = settings_from({**credentials, "ADMIN_TOKEN": "admin-token-value"})
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "admin-token-value"
    body_line = pem_key.strip().splitlines()[1]
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "12345" in text  # the app id is not a secret, and shows fields really render
        assert "s3cret-value" not in text
        assert "admin-token-value" not in text
        assert "PRIVATE KEY" not in text
        assert body_line not in text


def test_repr_never_shows_a_generated_webhook_secret() -> None:
    settings = settings_from({})
    assert settings.webhook_secret.get_secret_value() not in repr(settings)


def test_queue_ttl_ageing_retry_and_dead_letter_settings_have_defaults_and_can_be_set() -> None:
    defaults = load_settings({}, env_file=None)
    assert (defaults.queue_ttl_low, defaults.queue_ageing, defaults.retry_attempts) == (
        1800.0,
        60.0,
        5,
    )
    custom = load_settings(
        {
            "QUEUE_TTL_CRITICAL": "7200",
            "QUEUE_TTL_HIGH": "600",
            "QUEUE_TTL_NORMAL": "300",
            "QUEUE_TTL_LOW": "60.5",
            "QUEUE_AGEING": "15",
            "RETRY_ATTEMPTS": "3",
            "RETRY_BASE": "0.5",
            "RETRY_MAX": "30",
            "DEAD_LETTER_MAX": "50",
        },
        env_file=None,
    )
    assert (custom.queue_ttl_critical, custom.queue_ttl_high, custom.queue_ttl_normal) == (
        7200.0,
        600.0,
        300.0,
    )
    assert (custom.queue_ttl_low, custom.queue_ageing) == (60.5, 15.0)
    assert (custom.retry_attempts, custom.retry_base, custom.retry_max) == (3, 0.5, 30.0)
    assert custom.dead_letter_max == 50


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("QUEUE_TTL_LOW", "soon", "QUEUE_TTL_LOW must be a positive number of seconds"),
        ("QUEUE_AGEING", "0", "QUEUE_AGEING must be a positive number"),
        ("QUEUE_TTL_HIGH", "-5", "QUEUE_TTL_HIGH must be a positive number"),
        ("RETRY_ATTEMPTS", "0", "RETRY_ATTEMPTS must be >= 1"),
        ("RETRY_BASE", "nan", "RETRY_BASE must be a positive number"),
        ("DEAD_LETTER_MAX", "0", "DEAD_LETTER_MAX must be >= 1"),
    ],
)
def test_bad_queue_and_retry_settings_are_one_line_errors(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings({name: value}, env_file=None)


def test_retry_base_above_retry_max_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"RETRY_BASE \(60\) is above RETRY_MAX \(10\)"):
        load_settings({"RETRY_BASE": "60", "RETRY_MAX": "10"}, env_file=None)


# --- bad values: one line naming the setting, the problem, the value and where it came from ----


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("PORT", "3000.5", "PORT must be a whole number, not '3000.5'"),
        ("GITHUB_CONCURRENCY", "many", "GITHUB_CONCURRENCY must be a whole number, not 'many'"),
        ("GITHUB_WRITE_INTERVAL", "soon", "GITHUB_WRITE_INTERVAL must be a number, not 'soon'"),
        ("DRY_RUN", "perhaps", "DRY_RUN must be true or false, not 'perhaps'"),
    ],
)
def test_a_value_of_the_wrong_type_names_setting_problem_value_and_origin(
    name: str, value: str, problem: str
) -> None:
    assert settings_error({name: value}) == f"{problem} (from the environment)"


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("PORT", "65536", "PORT must be between 0 and 65535"),
        ("GITHUB_CONCURRENCY", "101", "GITHUB_CONCURRENCY must be between 1 and 100"),
        ("GITHUB_WRITE_INTERVAL", "61", "GITHUB_WRITE_INTERVAL must be between 0 and 60"),
        ("SHUTDOWN_TIMEOUT", "-1", "SHUTDOWN_TIMEOUT must be >= 0"),
        ("QUEUE_MAX_BYTES", "1023", "QUEUE_MAX_BYTES must be >= 1024"),
        ("QUEUE_TTL_NORMAL", "inf", "QUEUE_TTL_NORMAL must be a positive number of seconds"),
        ("APP_ID", "0", "APP_ID must be the app's numeric id"),
    ],
)
def test_a_value_out_of_bounds_is_a_one_line_error_with_the_bounds(
    name: str, value: str, problem: str
) -> None:
    assert settings_error({name: value}) == f"{problem}, not {value!r} (from the environment)"


def test_an_unknown_choice_lists_the_choices() -> None:
    assert settings_error({"LOG_FORMAT": "xml"}) == (
        "LOG_FORMAT must be one of text, json, not 'xml' (from the environment)"
    )
    assert "DEBUG, INFO, WARNING, ERROR, CRITICAL" in settings_error({"LOG_LEVEL": "loud"})


def test_an_error_says_whether_the_value_came_from_env_file_or_command_line(
    tmp_path: Path,
) -> None:
    env = tmp_path / ".env"
    env.write_text("PORT=70000\n", encoding="utf-8")
    with pytest.raises(SettingsError) as from_file:
        settings_from({}, env_file=env)
    assert str(from_file.value) == f"PORT must be between 0 and 65535, not '70000' (from {env})"
    with pytest.raises(SettingsError) as from_options:
        settings_from({"PORT": "1"}, env_file=env, overrides={"PORT": "-5"})
    assert str(from_options.value).endswith("not '-5' (from the command line)")


def test_an_invalid_secret_is_named_but_never_repeated(credentials: dict[str, str]) -> None:
    secret_like = "-----BEGIN nothing useful KEY----- sekrit-material"
    message = settings_error({**credentials, "PRIVATE_KEY": secret_like})
    assert "PRIVATE_KEY" in message
    assert "sekrit-material" not in message


def test_a_private_key_path_to_a_binary_file_is_an_error_naming_the_path(tmp_path: Path) -> None:
    key_file = tmp_path / "key.der"
    key_file.write_bytes(b"\x30\x82\xff\xfe\x00binary")
    message = settings_error(
        {"APP_ID": "1", "PRIVATE_KEY_PATH": str(key_file), "WEBHOOK_SECRET": "x"}
    )
    assert message == f"PRIVATE_KEY_PATH: cannot read {key_file}: not a text file"


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("PORT=1\nHOST\n", 2, "expected KEY=value"),
        ("PORT=1\n\nnot a setting\n", 3, "expected KEY=value"),
        ('HOST="127.0.0.1" junk\n', 1, "unexpected text after the quoted value"),
        ("# key\nPRIVATE_KEY='-----BEGIN\n", 2, "unterminated quoted value for PRIVATE_KEY"),
        ("BAD-KEY=1\n", 1, "expected KEY=value"),
    ],
)
def test_a_malformed_env_file_line_stops_loading_with_its_line_number(
    tmp_path: Path, text: str, line: int, problem: str
) -> None:
    env = tmp_path / ".env"
    env.write_text(text, encoding="utf-8")
    with pytest.raises(SettingsError) as info:
        settings_from({}, env_file=env)
    assert str(info.value) == f"{env}:{line}: {problem}"


def test_env_file_values_are_taken_as_written_without_variable_expansion(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text('WEBHOOK_SECRET="a$HOME${USER}b"\nHOST=$HOSTNAME\n', encoding="utf-8")
    settings = settings_from({}, env_file=env)
    assert settings.webhook_secret.get_secret_value() == "a$HOME${USER}b"
    assert settings.host == "$HOSTNAME"


def test_an_empty_value_counts_as_unset_and_an_empty_variable_still_hides_env_file(
    tmp_path: Path,
) -> None:
    env = tmp_path / ".env"
    env.write_text("PORT=5000\nLOG_LEVEL=\n", encoding="utf-8")
    assert settings_from({}, env_file=env).log_level == "INFO"
    assert settings_from({"PORT": "  "}, env_file=env).port == 3000


def test_the_process_environment_is_read_unless_an_environment_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PORT", "4444")
    assert load_settings(env_file=None).port == 4444
    assert load_settings({}, env_file=None).port == 3000


def test_a_setting_named_in_lower_case_is_still_read() -> None:
    assert settings_from({"port": "4001"}).port == 4001


def test_a_derived_value_cannot_be_set_from_the_environment() -> None:
    settings = settings_from({"WEBHOOK_SECRET_GENERATED": "false"})
    assert settings.webhook_secret_generated is True


def test_queue_and_retry_defaults_are_the_queue_modules_own() -> None:
    settings = settings_from({})
    policy = RetryPolicy()
    assert (settings.retry_attempts, settings.retry_base, settings.retry_max) == (
        policy.attempts,
        policy.base,
        policy.cap,
    )
    assert settings.queue_ageing == DEFAULT_AGEING
    assert [
        settings.queue_ttl_critical,
        settings.queue_ttl_high,
        settings.queue_ttl_normal,
        settings.queue_ttl_low,
    ] == [DEFAULT_TTL[level] for level in Priority]
    assert settings.dead_letter_max == DeadLetterQueue().stats().capacity


def test_settings_are_frozen() -> None:
    settings = settings_from({})
    with pytest.raises(ValidationError):
        settings.port = 1  # type: ignore[misc]


def test_redis_backend_needs_a_redis_url() -> None:
    message = settings_error({"QUEUE_BACKEND": "redis"})
    assert "REDIS_URL" in message


def test_redis_url_is_a_secret_and_never_shown() -> None:
    settings = load_settings(
        environ={"QUEUE_BACKEND": "redis", "REDIS_URL": "redis://:hunter2@redis:6379/0"},
        env_file=None,
    )
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == "redis://:hunter2@redis:6379/0"
    assert "hunter2" not in repr(settings)
