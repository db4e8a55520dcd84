"""Run the real app for ``benchmarks/ingest.py``: intake only, dispatcher paused.

    python -m benchmarks.serve_app --port 8000 [--secret S]

The queue is made large enough (2,000,000 events, 8 GiB) that a benchmark run never
fills it, and its consumer stays idle (``paused=True``), so what is measured is the
webhook path alone: verify, dedupe, classify, compress, enqueue, answer 202.
No credentials are given: the app runs in dry-run mode and makes no outbound calls.
"""

from __future__ import annotations

import argparse

DEFAULT_SECRET = "benchmark-webhook-secret"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the app, dispatcher paused.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", default=DEFAULT_SECRET)
    parser.add_argument("--queue-max-events", default="2000000", help="to test a full queue")
    args = parser.parse_args(argv)
    import uvicorn

    from github_app.config import load_settings
    from github_app.server import create_app

    settings = load_settings(
        {
            "WEBHOOK_SECRET": args.secret,
            "QUEUE_MAX_EVENTS": args.queue_max_events,
            "QUEUE_MAX_BYTES": str(8 * 2**30),
            "LOG_LEVEL": "WARNING",
        },
        env_file=None,
    )
    app = create_app(settings, paused=True)
    import gc

    gc.collect()  # as `python -m github_app serve` does before it listens
    gc.freeze()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )


if __name__ == "__main__":
    main()
