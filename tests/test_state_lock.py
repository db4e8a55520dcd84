"""One process per STATE_DIR: the lock file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from github_app.queue.state_lock import StateDirBusy, open_state_dir


def test_the_state_dir_is_created_for_its_owner_only(tmp_path: Path) -> None:
    folder = tmp_path / "nested" / "state"
    lock = open_state_dir(folder)
    try:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    finally:
        lock.release()


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    first = open_state_dir(tmp_path)
    try:
        with pytest.raises(StateDirBusy) as raised:
            open_state_dir(tmp_path)
        message = str(raised.value)
        assert f"process {os.getpid()}" in message and str(tmp_path) in message
        assert "\n" not in message
    finally:
        first.release()
    open_state_dir(tmp_path).release()  # free again once the holder lets go
