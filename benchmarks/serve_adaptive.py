"""Run the real app for ``benchmarks/concurrency.py``: credentials, GitHub = the simulator.

    python -m benchmarks.serve_adaptive --port P --api http://127.0.0.1:S --key-file K
        [--workers-min 1] [--workers-max 128] [--github-concurrency 8] [--write-interval 1]
        [--secondary-limits github|off]

Each option left out is the app's default (the adaptive runs use the defaults).

The app is built exactly as ``serve`` builds it (settings, Runtime, create_app);
the benchmark only listens in: each event's latency and outcome (the runner's
observer, chained) and each controller decision are kept and served as JSON at
``GET /_bench/samples``, so the driver can compute percentiles and plot widths.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import uvicorn

SECRET = "benchmark-webhook-secret"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the app against the simulated GitHub.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api", required=True)
    parser.add_argument("--key-file", required=True)
    # Left out, each of these is the app's default.
    parser.add_argument("--workers-min", type=int)
    parser.add_argument("--workers-max", type=int)
    parser.add_argument("--github-concurrency", type=int)
    parser.add_argument("--write-interval", type=float)
    parser.add_argument("--secondary-limits", choices=["github", "off"])
    args = parser.parse_args(argv)

    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from github_app.config import load_settings
    from github_app.control.controller import Decision
    from github_app.control.feedback import Observation
    from github_app.logs import configure_logging
    from github_app.runtime import Runtime
    from github_app.server import create_app

    settings = load_settings(
        {
            "WEBHOOK_SECRET": SECRET,
            "APP_ID": "1",
            "PRIVATE_KEY_PATH": args.key_file,
            "GITHUB_API_URL": args.api,
            "DRY_RUN": "false",
            "QUEUE_MAX_EVENTS": "100000",
            # Every run starts empty: a spool in the checkout would hand one run's
            # leftovers (events queued at the time cap) to the next.
            "QUEUE_BACKEND": "memory",
            "LOG_LEVEL": "ERROR",  # a failed event logs an error: thousands under overload
            **{
                name: str(value)
                for name, value in (
                    ("WORKERS_MIN", args.workers_min),
                    ("WORKERS_MAX", args.workers_max),
                    ("GITHUB_CONCURRENCY", args.github_concurrency),
                    ("GITHUB_WRITE_INTERVAL", args.write_interval),
                    ("GITHUB_SECONDARY_LIMITS", args.secondary_limits),
                )
                if value is not None
            },
        },
        env_file=None,
    )
    observations: list[tuple[float, float, str]] = []
    decisions: list[tuple[float, int, str, str]] = []

    def record(observation: Observation) -> None:
        observations.append((time.time(), observation.latency, observation.outcome.value))

    def on_decision(decision: Decision) -> None:
        decisions.append((time.time(), decision.width, decision.action, decision.reason))

    # As `serve` does: without it Python's last-resort handler prints every warning
    # (thousands of 403s at the widest fixed widths) whatever LOG_LEVEL says.
    configure_logging(settings.log_level, settings.log_format)
    runtime = Runtime(settings, on_observation=record, on_decision=on_decision)
    start_width = runtime.dispatcher.width  # before the first decision (the plot starts there)

    async def samples(request: Request) -> Response:
        body: dict[str, Any] = {
            "observations": observations,
            "decisions": decisions,
            "start_width": start_width,
            "queued": len(runtime.queue),
            "in_flight": runtime.dispatcher.in_flight,
            "width": runtime.dispatcher.width,
        }
        return JSONResponse(body)

    app = create_app(settings, runtime=runtime)
    app.router.routes.append(Route("/_bench/samples", samples, methods=["GET"]))
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        log_level="error",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
