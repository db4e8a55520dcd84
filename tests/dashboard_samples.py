"""A synthetic hour for the dashboard: the browser tests and the dashboard benchmark draw it."""

from __future__ import annotations

import math

from github_app.admin.sampler import SERIES


def synthetic_sample(index: int) -> dict[str, float]:
    """A plausible sample: a burst that builds up and drains over the hour."""
    wave = max(0.0, math.sin(index / 300))
    values = dict.fromkeys(SERIES, 0.0)
    values |= {
        "depth_high": 50 * wave,
        "depth_normal": 2000 * wave,
        "depth_low": 300 * wave,
        "admitted_per_s": 40 * wave,
        "received_per_s": 42 * wave,
        "processed_per_s": 30 + 5 * math.cos(index / 7),
        "latency_p50": 0.04 + 0.01 * wave,
        "latency_p99": 0.4 + 0.3 * wave,
        "width": 8 + (index // 100) % 4 * 4,
        "in_flight": 6 + (index // 100) % 4 * 4,
        "github_ok_per_s": 25 * wave + 3,
        "github_not_modified_per_s": 4,
        "budget_left": 5000 - index,
        "oldest_wait": 120 * wave,
    }
    return values
