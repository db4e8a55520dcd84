"""``python -m github_app backfill`` against the real server, GitHub faked with respx."""

from __future__ import annotations

import io
from pathlib import Path

import anyio.to_thread
import httpx
import pytest
import respx

from github_app.backfill import command
from github_app.cli import build_parser, main
from tests.conftest import running_app
from tests.fake_repository import FakeRepository
from tests.test_backfill import ADMIN, AUTH, REPO, settings

pytestmark = pytest.mark.anyio


def env_file(tmp_path: Path, token: str = ADMIN) -> Path:
    path = tmp_path / "admin.env"
    path.write_text(f"ADMIN_TOKEN={token}\n", "utf-8")
    return path


async def run_command(*argv: str) -> tuple[int, str]:
    args = build_parser().parse_args(["backfill", *argv, "--every", "0.02"])
    out = io.StringIO()
    code = await anyio.to_thread.run_sync(lambda: command.run(args, out=out))
    return code, out.getvalue()


async def test_the_command_starts_a_job_follows_it_and_prints_a_summary(
    github: respx.MockRouter, private_key_pem: str, tmp_path: Path
) -> None:
    repo = FakeRepository(REPO, count=120, matching_every=10)
    repo.route(github)
    async with running_app(settings(private_key_pem)) as app:
        code, output = await run_command(
            "--repo", REPO, "--processors", "labeler", "--url", app.url,
            "--env-file", str(env_file(tmp_path)),
        )  # fmt: skip
    assert code == 0, output
    assert "backfill job " in output and f"started: {REPO}" in output
    assert "issues seen:     120" in output
    assert "issues changed: 12" in output
    assert "labels added:    12" in output
    assert "errors:          0" in output
    assert "queued: 0 issues, 0 changed, 0 errors" in output  # not a terminal: plain lines
    assert sorted(repo.labelled) == repo.matching()


async def test_a_dry_run_prints_what_would_change_and_writes_nothing(
    github: respx.MockRouter, private_key_pem: str, tmp_path: Path
) -> None:
    repo = FakeRepository(REPO, count=30, matching_every=10)
    repo.route(github)
    async with running_app(settings(private_key_pem)) as app:
        code, output = await run_command(
            "--repo", REPO, "--dry-run", "--url", app.url, "--env-file", str(env_file(tmp_path))
        )  # fmt: skip
    assert code == 0
    assert "issues would change: 3" in output
    assert "#10 labeler: add label bug" in output
    assert repo.labelled == {}


async def test_a_failed_job_exits_1_with_its_reason_and_a_refusal_exits_2(
    github: respx.MockRouter, private_key_pem: str, tmp_path: Path
) -> None:
    github.get("https://api.github.com/repos/octo-org/missing/installation").mock(
        return_value=httpx.Response(404, json={"message": "Not Found"})
    )
    async with running_app(settings(private_key_pem)) as app:
        failed, output = await run_command(
            "--repo", "octo-org/missing", "--url", app.url, "--env-file", str(env_file(tmp_path))
        )  # fmt: skip
        refused, refusal = await run_command(
            "--repo", REPO, "--processors", "welcome", "--url", app.url,
            "--env-file", str(env_file(tmp_path)),
        )  # fmt: skip
        wrong, unauthorised = await run_command(
            "--repo", REPO, "--url", app.url, "--env-file", str(env_file(tmp_path, "wrong"))
        )  # fmt: skip
        listed = (await app.client.get(f"{app.url}/admin/backfills", headers=AUTH)).json()
    assert failed == 1
    assert "failed: repository octo-org/missing not found" in output
    assert refused == 2 and "'welcome' does not backfill" in refusal
    assert wrong == 2 and "wrong admin token" in unauthorised
    assert listed["count"] == 1


async def test_ctrl_c_detaches_without_cancelling_and_says_how_to_follow_or_cancel(
    github: respx.MockRouter, private_key_pem: str, tmp_path: Path
) -> None:
    repo = FakeRepository(REPO, count=10)
    repo.route(github)

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    args = build_parser().parse_args(
        ["backfill", "--repo", REPO, "--env-file", str(env_file(tmp_path))]
    )
    out = io.StringIO()
    async with running_app(settings(private_key_pem), paused=True) as app:
        args.url = app.url
        code = await anyio.to_thread.run_sync(lambda: command.run(args, out=out, sleep=interrupted))
        jobs = (await app.client.get(f"{app.url}/admin/backfills", headers=AUTH)).json()["jobs"]
    assert code == 130
    job_id = jobs[0]["id"]
    assert jobs[0]["state"] in ("queued", "running")  # not cancelled
    assert f"detached: job {job_id} keeps running" in out.getvalue()
    assert (
        f"curl -X DELETE -H 'Authorization: Bearer $ADMIN_TOKEN' {app.url}/admin/backfills/{job_id}"
        in out.getvalue()
    )


def test_without_an_admin_token_the_command_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    empty = tmp_path / "empty.env"
    empty.write_text("", "utf-8")
    code = main(["backfill", "--repo", REPO, "--env-file", str(empty)])
    assert code == 2
    assert "set ADMIN_TOKEN" in capsys.readouterr().out


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_on_a_terminal_the_command_draws_a_progress_bar_with_the_rate(
    github: respx.MockRouter, private_key_pem: str, tmp_path: Path
) -> None:
    repo = FakeRepository(REPO, count=120, matching_every=10)
    repo.route(github)
    args = build_parser().parse_args(
        ["backfill", "--repo", REPO, "--every", "0.02", "--env-file", str(env_file(tmp_path))]
    )
    out = Terminal()
    async with running_app(settings(private_key_pem)) as app:
        args.url = app.url
        code = await anyio.to_thread.run_sync(lambda: command.run(args, out=out))
    drawn = out.getvalue()
    assert code == 0
    assert "━" in drawn  # rich's bar
    assert "120/120" in drawn and "issues/s" in drawn
    assert "queued:" not in drawn  # no plain lines on a terminal
    assert "issues seen:     120" in drawn
