"""The queue: admitted events wait here, in priority order, until a worker takes them.

Owns admission, priorities and their rules, ageing, per-issue lanes, TTL,
retries' backoff, the dead letters, the memory of recent deliveries and the
compressed payloads. Pure and synchronous with an injected clock; imports
nothing of ours but the shared base (``envelope``, ``errors``).
"""
