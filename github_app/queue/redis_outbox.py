"""Writes to the shared queue that need no answer, sent in order and never dropped.

The queue's settles (``done``, ``retry``, ``dead_letter``...) are synchronous
for the dispatcher; what they change in Redis is written here and sent by one
task, in the order it was written, as pipelines of the idempotent scripts in
``redis_scripts``. While Redis does not answer the writes wait and are sent
again once it does (a settle is late, never lost); a process killed before a
write was sent leaves its event pending in Redis, where another replica claims
it after ``REDIS_CLAIM_IDLE``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
from anyio.abc import TaskStatus
from redis.exceptions import RedisError, ResponseError

from github_app.redis_link import RedisLink

log = logging.getLogger(__name__)

BATCH = 500  # writes per pipeline
RETRY_FIRST = 0.05
RETRY_MAX = 1.0


@dataclass(frozen=True, slots=True)
class Write:
    """One script run: ``EVAL script len(keys) *keys *args``."""

    script: str
    keys: tuple[str, ...]
    args: tuple[str | bytes | int | float, ...]
    what: str  # for the log when Redis refuses it


class Outbox:
    """Ordered writes, sent by ``run`` in pipelines, retried until Redis takes them."""

    def __init__(self, link: RedisLink) -> None:
        self._link = link
        self._writes: list[Write] = []
        self._wakeup = anyio.Event()
        self._sent = anyio.Event()
        self.written = 0
        self.sent = 0
        self.failed_sends = 0

    def __len__(self) -> int:
        return len(self._writes)

    def write(self, script: str, keys: Sequence[str], args: Sequence[object], what: str) -> None:
        self._writes.append(Write(script, tuple(keys), tuple(args), what))  # type: ignore[arg-type]
        self.written += 1
        self._wakeup.set()

    async def flush(self) -> None:
        """Until every write made before the call was sent (waits as long as Redis is away)."""
        target = self.written
        while self.sent < target:
            self._sent = anyio.Event() if self._sent.is_set() else self._sent
            await self._sent.wait()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        delay = RETRY_FIRST
        while True:
            if not self._writes:
                self._wakeup = anyio.Event()
                await self._wakeup.wait()
            batch = self._writes[:BATCH]
            try:
                await self._send(batch)
            except (RedisError, OSError) as exc:
                self.failed_sends += 1
                self._link.failed(exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)
                continue
            delay = RETRY_FIRST
            self._link.answered()
            del self._writes[: len(batch)]
            self.sent += len(batch)
            self._sent.set()

    async def _send(self, batch: list[Write]) -> None:
        # Shielded: a write sent must have its outcome known, or it would be sent twice.
        with anyio.CancelScope(shield=True):
            pipe = self._link.client.pipeline(transaction=False)
            for write in batch:
                pipe.eval(write.script, len(write.keys), *write.keys, *write.args)
            answers = await pipe.execute(raise_on_error=False)
        for write, answer in zip(batch, answers, strict=True):
            if isinstance(answer, ResponseError):  # a bug, not an outage: sending again won't help
                log.error("Redis refused %s: %s", write.what, answer)
            elif isinstance(answer, Exception):
                raise answer
