"""Benchmarks, run as modules from the repository root: ``python -m benchmarks.NAME``.

Not part of CI; README.md (Development) lists them. ``github_sim`` is the one simulated
GitHub they share.
"""
