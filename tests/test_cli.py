"""The commands as a user runs them: ``serve`` in a real process, ``send`` against it, SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serve_process import clean_env, poll, start_serve


def run_cli(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m github_app ARGS`` to completion, in ``cwd``, with a clean environment."""
    return subprocess.run(
        [sys.executable, "-m", "github_app", *args],
        cwd=cwd,
        env=clean_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def dry_run_server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path, Path]]:
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as stdout:
        process, port = start_serve(tmp_path, clean_env(), err, stdout=stdout)
    try:
        yield process, port, out, err
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def test_serve_without_credentials_is_a_dry_run_that_logs_the_labelers_would_be_call(
    dry_run_server: tuple[subprocess.Popen[bytes], int, Path, Path], tmp_path: Path
) -> None:
    _process, port, out, err = dry_run_server
    first_line = out.read_text().splitlines()[0]
    assert "DRY RUN" in first_line
    match = re.search(r"generated for this run\): ([0-9a-f]{40})", first_line)
    assert match, first_line
    sent = run_cli(tmp_path, "send", "--port", str(port), "--secret", match[1])
    assert sent.returncode == 0, sent.stderr
    assert "-> 202" in sent.stdout
    poll(
        lambda: (
            "dry-run: would POST /repos/Codertocat/Hello-World/issues/1/labels" in err.read_text()
        ),
        "the dry-run line in the log",
    )
    line = next(x for x in err.read_text().splitlines() if "would POST" in x)
    assert '{"labels":["documentation"]}' in line
    assert "delivery_id=" in line

    wrong = run_cli(tmp_path, "send", "--port", str(port), "--secret", "nope")
    assert wrong.returncode == 1
    assert "401" in wrong.stdout


def test_sigterm_stops_gracefully_and_reports_what_remains(
    dry_run_server: tuple[subprocess.Popen[bytes], int, Path, Path],
) -> None:
    process, _port, _out, err = dry_run_server
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    log = err.read_text()
    assert "received SIGTERM" in log
    assert "0 queued event(s) stay in the spool" in log
    assert "Traceback" not in log


def test_a_configured_secret_is_never_printed(tmp_path: Path) -> None:
    out = tmp_path / "stdout.txt"
    with out.open("wb") as stdout:
        process, _port = start_serve(
            tmp_path,
            clean_env(WEBHOOK_SECRET="s3cr3t-value-never-shown"),
            tmp_path / "stderr.txt",
            stdout=stdout,
        )
    process.send_signal(signal.SIGINT)
    process.wait(timeout=20)
    text = out.read_text()
    assert "DRY RUN" in text.splitlines()[0]
    assert "from WEBHOOK_SECRET" in text
    assert "s3cr3t-value-never-shown" not in text
    assert "s3cr3t-value-never-shown" not in (tmp_path / "stderr.txt").read_text()


STARTED_RUNTIME = """
import json
import sys
import anyio
from github_app.config import load_settings
from github_app.runtime import Runtime

async def start_and_stop() -> None:
    async with Runtime(load_settings(env_file=None)).running():
        pass

anyio.run(start_and_stop)
print(json.dumps(sorted(sys.modules)))
"""


def test_a_start_imports_neither_numpy_nor_githubkits_webhook_models(tmp_path: Path) -> None:
    # Each costs a start CPU it does not need: numpy only when a repository enables duplicates,
    # the webhook models (about 0.5 s for issues) only for a processor that reads ctx.event.
    result = subprocess.run(
        [sys.executable, "-c", STARTED_RUNTIME],
        env=clean_env(STATE_DIR=str(tmp_path / "state")),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    imported = json.loads(result.stdout)
    assert "github_app.runtime" in imported
    assert "numpy" not in imported
    # one module per event (``...webhooks.issues``); the namespace that names them is small
    events = [name for name in imported if re.search(r"\.webhooks\.[a-z]", name)]
    assert events == [], events


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"APP_ID": "abc"}, "APP_ID must be the app's numeric id"),
        ({"APP_ID": "1"}, "half-configured app"),
        ({"APP_ID": "1", "PRIVATE_KEY_PATH": "/nonexistent/key.pem"}, "no such file"),
        (
            {
                "APP_ID": "1",
                "WEBHOOK_SECRET": "x",
                "PRIVATE_KEY": (
                    "-----BEGIN RSA PRIVATE KEY-----\\nbroken\\n-----END RSA PRIVATE KEY-----"
                ),
            },
            "private key cannot be loaded",
        ),
    ],
)
def test_bad_settings_stop_start_up_with_one_clear_line_and_no_traceback(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result = run_cli(tmp_path, "serve", "--port", "0", env=env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1, result.stderr
    assert message in errors[0]


def test_dot_env_file_in_the_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("APP_ID=notanumber\n")
    result = run_cli(tmp_path, "serve")
    assert result.returncode == 2
    assert "APP_ID must be the app's numeric id, not 'notanumber'" in result.stderr


def test_serve_without_credentials_listens_on_loopback_and_prints_a_one_time_setup_link(
    tmp_path: Path,
) -> None:
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("wb") as stdout:
        process, port = start_serve(
            tmp_path,
            clean_env(HOST="0.0.0.0"),  # noqa: S104
            err,
            stdout=stdout,
            host=None,  # no --host
        )
    try:
        poll(lambda: "setup?token=" in out.read_text(), "the setup link")
        text = out.read_text()
        link = re.search(r"open (http://\S+/setup\?token=\S+) in your browser", text)
        assert link, text
        first = httpx.get(link[1], timeout=5)
        second = httpx.get(link[1], timeout=5)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=20)
    # the port the kernel gave (--port 0), as it says where it listens
    assert f"webhooks at http://127.0.0.1:{port}/" in text.splitlines()[0]
    assert f"Uvicorn running on http://127.0.0.1:{port} " in err.read_text()
    assert first.status_code == 303 and "httponly" in first.headers["set-cookie"].lower()
    assert second.status_code == 403
    assert "token=" not in err.read_text()  # on the console, never in the log
