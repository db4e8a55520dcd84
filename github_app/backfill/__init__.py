"""Backfill: jobs that stream an installation's existing issues through the queue at LOW priority.

``job`` (what was asked, the state machine, progress and checkpoint: pure),
``store`` (where jobs and checkpoints are kept), ``lister`` (GitHub's issue
lists, page by page), ``service`` (runs the jobs, owned by the runtime; the
admin API and ``python -m github_app backfill`` drive it). It imports the
queue, the GitHub gateway and the processors' registry; only admin and the
faces import it.
"""
