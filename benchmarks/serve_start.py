"""The CPU a ``serve`` start costs, up to uvicorn's "running on" line, for one or more checkouts.

    python -m benchmarks.serve_start [--runs 5] [CHECKOUT ...]

Each run starts ``python -m github_app serve --port 0`` in dry-run mode (no app
credentials, a fresh STATE_DIR), waits for the line saying it listens, reads the
process's user and system CPU time from ``/proc`` (all its threads), then stops it.
Several checkouts (default: this one) are measured side by side, runs interleaved,
so a noisy machine weighs on all of them alike; the report is the median per checkout
and each one's ratio to the first. ``python`` is this interpreter; a checkout's own
code is imported because ``-m`` puts the working directory first on ``sys.path``.
Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

LISTENING = re.compile(rb"Uvicorn running on http://")
SETTINGS = ("APP_ID", "PRIVATE_KEY", "PRIVATE_KEY_PATH", "WEBHOOK_SECRET", "PORT", "HOST")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (every thread), from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # after the command's closing parenthesis: state is field 0, utime 11, stime 12
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_cpu(checkout: Path) -> float:
    """One dry-run start of ``serve`` in ``checkout``: its CPU seconds when it listens."""
    with tempfile.TemporaryDirectory() as state_dir:
        env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
        env.update(STATE_DIR=state_dir, LOG_LEVEL="INFO")
        command = [sys.executable, "-m", "github_app", "serve", "--host", "127.0.0.1"]
        process = subprocess.Popen(
            [*command, "--port", "0"],
            cwd=checkout,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert process.stderr is not None
        try:
            for line in process.stderr:
                if LISTENING.search(line):
                    return cpu_seconds(process.pid)
            raise RuntimeError(f"serve in {checkout} ended before it listened")
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("checkouts", nargs="*", type=Path, default=[Path.cwd()])
    args = parser.parse_args(argv)
    samples: dict[Path, list[float]] = {checkout: [] for checkout in args.checkouts}
    for _ in range(args.runs):
        for checkout in args.checkouts:
            samples[checkout].append(start_cpu(checkout))
    first = statistics.median(samples[args.checkouts[0]])
    for checkout, values in samples.items():
        median = statistics.median(values)
        runs = " ".join(f"{v:.2f}" for v in values)
        print(f"{checkout}: median {median:.2f} s CPU to listening ({runs}), {median / first:.2f}x")


if __name__ == "__main__":
    main()
