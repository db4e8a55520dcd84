"""``python -m github_app redeliver``: one round now, progress while it runs, a summary table;
GitHub faked at the HTTP layer with the simulated delivery log."""

from __future__ import annotations

import io
import sqlite3
import time
from pathlib import Path

import pytest
import respx
from redis.asyncio import Redis
from rich.console import Console

from github_app.cli import main, parse_duration, redeliver_once
from github_app.queue.redis_scripts import Keys
from github_app.queue.spool import FILE_NAME, SpoolStore, remember_delivery
from github_app.queue.state_lock import open_state_dir
from github_app.redis_lease import lease
from github_app.redis_link import PREFIX
from tests.conftest import make_settings
from tests.fake_hook_log import FakeHookLog
from tests.redis_server import RedisServer


def console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=160, color_system=None), out


def failed_log(github: respx.MockRouter) -> FakeHookLog:
    hook_log = FakeHookLog(github)
    now = time.time()
    for i in range(130):
        hook_log.log(f"ok-{i}", status_code=202, at=now - 3600 + i)
    hook_log.log("lost-1", status_code=0, at=now - 3000)
    hook_log.log("lost-2", status_code=503, at=now - 2000, event="issue_comment", action="created")
    return hook_log


@pytest.mark.anyio
@pytest.mark.parametrize("terminal", [False, True], ids=["plain", "terminal"])
async def test_requests_the_failed_events_and_prints_the_summary(
    github: respx.MockRouter, private_key_pem: str, terminal: bool
) -> None:
    hook_log = failed_log(github)
    shown, out = console(terminal)
    code = await redeliver_once(make_settings(private_key_pem), None, None, False, console=shown)
    text = out.getvalue()
    assert code == 0
    assert hook_log.requested_guids() == ["lost-1", "lost-2"]
    assert "redelivery requested" in text and "lost-1" in text and "issue_comment.created" in text
    for row in ("deliveries seen (attempts)", "failed events", "already admitted", "requested"):
        assert row in text
    assert "132" in text  # attempts seen
    if not terminal:
        assert "reading the delivery log: 1 page(s), 100 attempt(s)" in text
        assert "requested 2/2" in text


@pytest.mark.anyio
async def test_dry_run_with_an_event_filter_lists_and_requests_nothing(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    hook_log = failed_log(github)
    shown, out = console(False)
    settings = make_settings(private_key_pem)
    code = await redeliver_once(settings, 7200.0, "issues", True, console=shown)
    text = out.getvalue()
    assert code == 0
    assert hook_log.redelivery_requests == []
    assert "would redeliver" in text and "lost-1" in text and "lost-2" not in text
    assert "skipped: other event" in text


@pytest.mark.anyio
async def test_a_failing_log_exits_1_and_says_why(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    import httpx

    hook_log = failed_log(github)
    hook_log.page_faults = [httpx.Response(503, json={"message": "unavailable"})]
    shown, out = console(False)
    code = await redeliver_once(make_settings(private_key_pem), None, None, False, console=shown)
    assert code == 1
    assert "stopped: GitHub answered 503" in out.getvalue()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("30m", 1800.0), ("6h", 21600.0), ("2d", 172800.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "-5m", "0", "infd", "nan"])
def test_a_bad_duration_is_refused_with_a_clear_error(
    text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["redeliver", f"--since={text}"])
    assert exit_.value.code == 2
    assert "duration" in capsys.readouterr().err


def test_without_credentials_it_says_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("APP_ID", "PRIVATE_KEY", "PRIVATE_KEY_PATH"):
        monkeypatch.delenv(name, raising=False)
    code = main(["redeliver", "--env-file", str(tmp_path / "none.env")])
    assert code == 2
    assert "redeliver needs the app's credentials" in capsys.readouterr().err


@pytest.mark.anyio
async def test_with_the_spool_it_skips_what_was_admitted_and_remembers_what_it_asked(
    github: respx.MockRouter, private_key_pem: str, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    settings = make_settings(private_key_pem, STATE_DIR=str(state))
    state.mkdir()
    spool = SpoolStore(state)
    spool.apply([remember_delivery("admitted-one", time.time())])
    spool.close()
    hook_log = failed_log(github)
    hook_log.log("admitted-one", status_code=503, at=time.time() - 100)

    shown, out = console(False)
    assert await redeliver_once(settings, None, None, False, console=shown) == 0
    assert hook_log.requested_guids() == ["lost-1", "lost-2"]
    assert "already admitted" in out.getvalue()

    shown, out = console(False)
    assert await redeliver_once(settings, 7200.0, None, False, console=shown) == 0
    assert hook_log.requested_guids() == ["lost-1", "lost-2"]  # remembered: not this window
    assert "skipped: requested this window" in out.getvalue()


@pytest.mark.anyio
async def test_while_the_app_holds_the_spool_it_reads_it_and_writes_nothing(
    github: respx.MockRouter, private_key_pem: str, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    settings = make_settings(private_key_pem, STATE_DIR=str(state))
    state.mkdir()
    spool = SpoolStore(state)
    spool.apply([remember_delivery("admitted-one", time.time())])
    spool.close()
    hook_log = failed_log(github)
    hook_log.log("admitted-one", status_code=503, at=time.time() - 100)
    lock = open_state_dir(state)  # the running app
    try:
        shown, out = console(False)
        assert await redeliver_once(settings, None, None, False, console=shown) == 0
    finally:
        lock.release()
    assert "its record is read, not written" in out.getvalue()
    assert hook_log.requested_guids() == ["lost-1", "lost-2"]  # admitted-one skipped
    with sqlite3.connect(state / FILE_NAME) as db:
        assert db.execute(
            "SELECT count(*) FROM sqlite_master WHERE name LIKE 'recovery%'"
        ).fetchone() == (0,)


@pytest.mark.anyio
async def test_with_redis_it_uses_the_replicas_record_and_takes_its_turn(
    github: respx.MockRouter, private_key_pem: str, redis_server: RedisServer
) -> None:
    settings = make_settings(private_key_pem, QUEUE_BACKEND="redis", REDIS_URL=redis_server.url)
    client = Redis.from_url(redis_server.url)
    try:
        await client.zadd(Keys(PREFIX).seen, {"admitted-one": time.time()})  # a replica took it
        hook_log = failed_log(github)
        hook_log.log("admitted-one", status_code=503, at=time.time() - 100)

        shown, out = console(False)
        assert await redeliver_once(settings, None, None, False, console=shown) == 0
        assert hook_log.requested_guids() == ["lost-1", "lost-2"]
        assert "already admitted" in out.getvalue()
        assert await client.hexists(f"{PREFIX}recovery:requests", "lost-1")  # theirs too

        async with lease(client, f"{PREFIX}recovery:lock", ttl=30):  # a replica's round
            shown, out = console(False)
            assert await redeliver_once(settings, 7200.0, None, False, console=shown) == 1
        assert "another replica is running a round" in out.getvalue()
        shown, out = console(False)
        assert await redeliver_once(settings, 7200.0, None, False, console=shown) == 0
        assert hook_log.requested_guids() == ["lost-1", "lost-2"]  # remembered: not this window
        assert "skipped: requested this window" in out.getvalue()
    finally:
        await client.aclose()


@pytest.mark.anyio
async def test_with_redis_down_it_says_so_and_exits_1(
    github: respx.MockRouter, private_key_pem: str, redis_server: RedisServer
) -> None:
    settings = make_settings(private_key_pem, QUEUE_BACKEND="redis", REDIS_URL=redis_server.url)
    failed_log(github)
    redis_server.stop()
    shown, out = console(False)
    assert await redeliver_once(settings, None, None, False, console=shown) == 1
    assert "error: recovery's record: Redis does not answer (ConnectionError)" in out.getvalue()
    assert str(redis_server.port) not in out.getvalue()
