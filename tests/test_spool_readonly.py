"""STATE_DIR turned read-only under a running ``serve``, as a real disk fault does it.

The kernel refuses ``mount -o remount,ro`` while files are open for writing,
but ext4 mounted with ``errors=remount-ro`` turns itself read-only when it
meets an error, whoever has files open (``emergency_ro`` in /proc/mounts);
``/sys/fs/ext4/DEV/trigger_fs_error`` makes it meet one. STATE_DIR lives on a
small ext4 image mounted through a loop device, so this needs root, loop
devices and e2fsprogs, and is skipped, saying which is missing, without them.

What a 202 guarantees across such a fault depends on SPOOL_SYNC. With
``full`` a 202 is sent after its commit group reached the disk (fsync), so
every acknowledged event survives the fault and the repair. With ``normal``
only what a checkpoint has synced (about once a second while commits come)
is sure to: the newest commits may exist in the page cache only, which the
file system drops when it is unmounted, as on a power loss. Reads still work,
so the running server goes on processing them; a shutdown before they are
done names them for redelivery. A delivery whose commit failed is answered
503; if the fault came between its data reaching the disk and SQLite's commit
returning, it may still be in the spool after the repair and be processed:
GitHub's redelivery of it is then a duplicate (its delivery id is committed
with it), not a second event.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from github_app.errors import SettingsError
from github_app.queue.state_lock import open_state_dir
from tests.deliveries import Delivery
from tests.fake_github import FakeGitHub, fake_github
from tests.serve_process import healthy, poll, refused_start
from tests.test_spool_faults import WELCOME, Server, newcomer_issue, post, start, stopped_at_the_end

TOOLS = ("mkfs.ext4", "e2fsck", "mount", "umount", "losetup", "findmnt")


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "mounting an ext4 image needs root"
    if not Path("/dev/loop-control").exists():
        return "no loop devices (/dev/loop-control)"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"{tool} is not installed (e2fsprogs, util-linux)"
    return None


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@dataclass
class Ext4Volume:
    """An ext4 image on a loop device, mounted with ``errors=remount-ro``."""

    image: Path
    mount_point: Path

    def mount(self) -> str:
        """Mount it; why not, if it failed."""
        options = "loop,errors=remount-ro"
        mounted = _run("mount", "-o", options, str(self.image), str(self.mount_point))
        return "" if mounted.returncode == 0 else mounted.stderr.strip() or "mount failed"

    @property
    def trigger(self) -> Path:
        device = _run("findmnt", "-no", "SOURCE", str(self.mount_point)).stdout.strip()
        return Path("/sys/fs/ext4") / Path(device).name / "trigger_fs_error"

    def options(self) -> list[str]:
        """Its options in /proc/mounts; none once unmounted."""
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if fields[1] == str(self.mount_point):
                return fields[3].split(",")
        return []

    def read_only(self) -> bool:
        """``ro``, or ``emergency_ro`` (newer kernels, after an error: ``rw`` stays listed)."""
        return bool({"ro", "emergency_ro"} & set(self.options()))

    def fail(self) -> None:
        """The kernel meets an error on this file system and turns it read-only."""
        self.trigger.write_text("test\n")
        poll(self.read_only, "the kernel to turn the file system read-only")

    def repair(self) -> None:
        """What an operator does: unmount, check and fix, mount again."""
        unmounted = _run("umount", str(self.mount_point))
        assert unmounted.returncode == 0, unmounted.stderr
        checked = _run("e2fsck", "-fy", str(self.image))
        assert checked.returncode in (0, 1), checked.stdout + checked.stderr  # 1: errors fixed
        assert self.mount() == ""
        assert not self.read_only()

    def remove(self) -> None:
        if self.options() and _run("umount", str(self.mount_point)).returncode != 0:
            _run("umount", "-l", str(self.mount_point))  # busy: detach it anyway
        for line in _run("losetup", "-j", str(self.image)).stdout.splitlines():
            _run("losetup", "-d", line.split(":", 1)[0])  # a lazy unmount leaves it attached


@pytest.fixture
def volume(tmp_path: Path) -> Iterator[Ext4Volume]:
    missing = _missing()
    if missing is not None:
        pytest.skip(missing)
    volume = Ext4Volume(tmp_path / "ext4.img", tmp_path / "volume")
    volume.mount_point.mkdir()
    with volume.image.open("wb") as image:
        image.truncate(32 * 1024 * 1024)
    made = _run("mkfs.ext4", "-q", str(volume.image))
    assert made.returncode == 0, made.stderr
    failed = volume.mount()
    if failed:
        pytest.skip(f"cannot mount an ext4 image on a loop device here: {failed}")
    try:
        if not volume.trigger.exists():
            pytest.skip(f"this kernel has no {volume.trigger}")
        yield volume
    finally:
        volume.remove()


def files_outside(folder: Path, volume: Ext4Volume, log: Path) -> dict[Path, int]:
    """Every file under ``folder`` but the volume (its image and mount) and the log, by size."""
    mine = {volume.image, volume.mount_point, log}
    return {
        path: path.stat().st_size
        for path in folder.rglob("*")
        if path not in mine and volume.mount_point not in path.parents
    }


def serve_through_a_fault(
    folder: Path, volume: Ext4Volume, github: FakeGitHub, private_key: str, sync: str
) -> tuple[Server, list[Delivery]]:
    """``serve`` on STATE_DIR in ``volume``, six deliveries acknowledged (none processed:
    GitHub holds them), the file system failed under it; what must hold until it is stopped
    with SIGTERM (it is, at the end). Returns the server and the acknowledged deliveries."""
    state = volume.mount_point / "state"
    github.holding = True  # two events in flight, the rest queued, until the repair
    server = start(
        folder,
        github,
        private_key,
        STATE_DIR=str(state),
        SPOOL_SYNC=sync,
        WORKERS_MAX="2",
        SHUTDOWN_TIMEOUT="0.2",
    )
    with stopped_at_the_end([server]), httpx.Client(timeout=10) as client:
        acknowledged = [newcomer_issue(n) for n in range(1, 7)]
        for delivery in acknowledged:
            assert post(client, server.webhook_url, delivery) == 202
        poll(lambda: github.held == 2, "two events to be in flight")
        before = files_outside(folder, volume, server.log)

        volume.fail()
        refused = [
            client.post(server.webhook_url, content=d.body, headers=d.headers)
            for d in map(newcomer_issue, range(101, 111))
        ]
        assert [answer.status_code for answer in refused] == [503] * 10
        assert {answer.headers["retry-after"] for answer in refused} == {"30"}
        assert {answer.json()["error"] for answer in refused} == {"spool_unavailable"}
        assert healthy(server.port) and server.process.poll() is None
        ready = client.get(f"http://127.0.0.1:{server.port}/readyz")
        assert ready.status_code == 503
        reason = ready.json()["reason"]
        assert reason.startswith("spool cannot store events: ")
        assert f"STATE_DIR {state} is on a read-only file system" in reason
        assert files_outside(folder, volume, server.log) == before  # nothing went elsewhere

        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(15) == 0
    log = server.log.read_text()
    assert log.count("refused delivery") == 1  # the other nine are counted, not logged
    assert 1 <= log.count("cannot commit") <= 2  # maybe once before the kernel said why
    assert "fsck" in log and "cannot rollback" not in log and "Traceback" not in log
    assert "shutdown: the spool cannot be written" in log
    return server, acknowledged


def test_with_spool_sync_full_no_202_is_lost_to_a_read_only_state_dir_after_the_repair(
    tmp_path: Path, private_key_pem: str, volume: Ext4Volume
) -> None:
    with fake_github() as github:
        server, _ = serve_through_a_fault(tmp_path, volume, github, private_key_pem, "full")
        assert "SPOOL_SYNC=normal" not in server.log.read_text()  # nothing to redeliver
        volume.repair()
        github.holding = False
        github.release.set()
        again = start(
            tmp_path, github, private_key_pem, STATE_DIR=str(volume.mount_point / "state")
        )
        with stopped_at_the_end([again]):
            poll(
                lambda: all(github.comment_count(n, WELCOME) for n in range(1, 7)),
                "every acknowledged delivery to be processed after the repair",
            )
            assert "recovered 6 queued event(s)" in again.log.read_text()
            with github.lock:
                assert sorted(github.comments) == list(range(1, 7))  # none of the 503s
                assert all(len(bodies) == 1 for bodies in github.comments.values())


def test_with_spool_sync_normal_the_shutdown_names_what_a_read_only_state_dir_may_lose(
    tmp_path: Path, private_key_pem: str, volume: Ext4Volume
) -> None:
    """And a start-up before the repair stops with one line saying what to do."""
    state = volume.mount_point / "state"
    with fake_github() as github:
        server, acknowledged = serve_through_a_fault(
            tmp_path, volume, github, private_key_pem, "normal"
        )
    [warning] = [x for x in server.log.read_text().splitlines() if "SPOOL_SYNC=normal" in x]
    assert "redeliver" in warning
    assert all(delivery.delivery_id in warning for delivery in acknowledged)

    line = refused_start(tmp_path, state)  # stops before it listens
    assert line.startswith(f"error: STATE_DIR {state} is on a read-only file system: ")
    assert "fsck" in line
    with pytest.raises(SettingsError, match="is on a read-only file system"):
        open_state_dir(volume.mount_point / "another")  # one not made yet: mkdir fails
