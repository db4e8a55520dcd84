"""Dispatch: the task group that drains the queue and runs each event through the processors.

Owns the dispatcher (width, gate, retries), the runner (one event through
every subscribed processor), the processor registry, per-repository config
and the app's handling of installation lifecycle events. Imports the queue,
the GitHub client layer, control's feedback and the shared base.
"""
