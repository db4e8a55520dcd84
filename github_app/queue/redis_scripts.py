"""The shared queue's layout in Redis and the Lua scripts that change it atomically.

Keys (``aip:`` first, so one Redis can serve other things too):

- ``q:<LEVEL>``: one stream per priority level; an entry names an event
  (``s`` its arrival number, ``d`` its delivery id). Consumer group
  ``replicas``, one consumer per replica: an entry read by a replica is
  pending for it until settled (XACK + XDEL) or claimed by another.
- ``ev:<seq>``: a hash per admitted event, the one record of it: routing
  fields, compressed payload, priority, size, admission time, attempts,
  not-before and last error (so a claim by another replica keeps them), and
  once given up the dead letter's reason and time.
- ``seq``: arrival numbers, shared (per-issue order across levels).
- ``seen``: delivery ids admitted in the redelivery window, scored by when.
- ``held``: events and compressed bytes admitted and not finished (``n``,
  ``b``): the admission bounds, counted over all replicas.
- ``dead`` (seq by time given up), ``dead:ids`` (delivery id -> seq),
  ``dead:v`` (bumped on every change: replicas refresh their view of it).
- ``ok:<delivery>``: the processors that succeeded on a delivery.
- ``lane:<repo>#<number>``: the arrival numbers of an issue's events not
  finished yet, in order: a replica works on an issue only from the front
  of its lane, so one issue's events run in arrival order across replicas.
- ``lease:<repo>#<number>``: the replica working on that issue now.

Every script is idempotent where a retried write could repeat it (a settle
acknowledges the stream entry first and changes nothing when that was done).
Scripts build the event and lease keys they touch from the prefix: the
backend targets one Redis (or a primary with replicas), not Redis Cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from github_app.envelope import Envelope, IssueKey
from github_app.queue.priority import Priority

GROUP = "replicas"


@dataclass(frozen=True)
class Keys:
    prefix: str

    def stream(self, priority: Priority) -> str:
        return f"{self.prefix}q:{priority.name}"

    def event(self, seq: int) -> str:
        return f"{self.prefix}ev:{seq}"

    def succeeded(self, delivery_id: str) -> str:
        return f"{self.prefix}ok:{delivery_id}"

    def lease(self, key: IssueKey) -> str:
        return f"{self.prefix}lease:{key[0]}#{key[1]}"

    def lane(self, key: IssueKey | None) -> str:
        """The issue's lane, or ``""`` for an event about no issue (scripts skip it)."""
        return "" if key is None else f"{self.prefix}lane:{key[0]}#{key[1]}"

    @property
    def seq(self) -> str:
        return self.prefix + "seq"

    @property
    def seen(self) -> str:
        return self.prefix + "seen"

    @property
    def held(self) -> str:
        return self.prefix + "held"

    @property
    def dead(self) -> str:
        return self.prefix + "dead"

    @property
    def dead_ids(self) -> str:
        return self.prefix + "dead:ids"

    @property
    def dead_version(self) -> str:
        return self.prefix + "dead:v"


# --- the event record -------------------------------------------------------------------------

_ENVELOPE_FIELDS = (
    ("d", "delivery_id"),
    ("e", "event"),
    ("a", "action"),
    ("i", "installation_id"),
    ("r", "repository"),
    ("n", "issue_number"),
    ("sl", "sender_login"),
    ("st", "sender_type"),
    ("t", "received_at"),
    ("z", "raw_size"),
)


def event_fields(envelope: Envelope, priority: Priority, admitted_at: float) -> list[str | bytes]:
    """The hash fields of a newly admitted event (absent fields are ``None``)."""
    fields: list[str | bytes] = []
    for name, attribute in _ENVELOPE_FIELDS:
        value = getattr(envelope, attribute)
        if value is not None:
            fields += [name, str(value)]
    fields += ["p", envelope.payload, "pr", str(int(priority)), "sz", str(len(envelope.payload))]
    fields += ["at", repr(admitted_at), "att", "0", "nb", "0"]
    return fields


@dataclass(frozen=True)
class EventRecord:
    """An ``ev:<seq>`` hash read back."""

    seq: int
    envelope: Envelope
    priority: Priority
    size: int
    admitted_at: float
    attempts: int
    not_before: float  # wall clock; 0 when none
    last_error: str | None
    dead_reason: str | None
    dead_at: float


def _text(raw: dict[bytes, bytes], name: str) -> str | None:
    value = raw.get(name.encode())
    return None if value is None else value.decode()


def _int(raw: dict[bytes, bytes], name: str) -> int | None:
    value = raw.get(name.encode())
    return None if value is None else int(value)


def read_record(seq: int, raw: dict[bytes, bytes], *, with_payload: bool = True) -> EventRecord:
    envelope = Envelope(
        delivery_id=_text(raw, "d") or "",
        event=_text(raw, "e") or "",
        action=_text(raw, "a"),
        installation_id=_int(raw, "i"),
        repository=_text(raw, "r"),
        issue_number=_int(raw, "n"),
        sender_login=_text(raw, "sl"),
        sender_type=_text(raw, "st"),
        received_at=float(raw.get(b"t", b"0")),
        payload=raw.get(b"p", b"") if with_payload else b"",
        raw_size=int(raw.get(b"z", b"0")),
    )
    return EventRecord(
        seq=seq,
        envelope=envelope,
        priority=Priority(int(raw.get(b"pr", b"2"))),
        size=int(raw.get(b"sz", b"0")),
        admitted_at=float(raw.get(b"at", b"0")),
        attempts=int(raw.get(b"att", b"0")),
        not_before=float(raw.get(b"nb", b"0")),
        last_error=_text(raw, "le"),
        dead_reason=_text(raw, "dr"),
        dead_at=float(raw.get(b"da", b"0")),
    )


INDEX_FIELDS = tuple(
    [name for name, _ in _ENVELOPE_FIELDS] + ["pr", "sz", "at", "att", "nb", "le", "dr", "da"]
)


def read_index(seq: int, values: list[bytes | None]) -> EventRecord:
    """A record from ``HMGET ev:<seq> *INDEX_FIELDS`` (no payload: the dead letters' view)."""
    raw = {
        name.encode(): value
        for name, value in zip(INDEX_FIELDS, values, strict=True)
        if value is not None
    }
    return read_record(seq, raw, with_payload=False)


# --- scripts ----------------------------------------------------------------------------------

# KEYS: seen, seq, held, stream, dead, dead_ids, dead_version
# ARGV: delivery, now, window, event limit, byte limit, size, prefix, lane ('' for none),
#       fields...
# -> {'ok', seq} | {'duplicate'} | {'events'} | {'bytes'}
ADMIT = """
local d = ARGV[1]
local now = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[3]))
if redis.call('ZSCORE', KEYS[1], d) then return {'duplicate'} end
local size = tonumber(ARGV[6])
local held = redis.call('HMGET', KEYS[3], 'n', 'b')
if tonumber(held[1] or '0') + 1 > tonumber(ARGV[4]) then return {'events'} end
if tonumber(held[2] or '0') + size > tonumber(ARGV[5]) then return {'bytes'} end
local seq = redis.call('INCR', KEYS[2])
redis.call('HSET', ARGV[7] .. 'ev:' .. seq, unpack(ARGV, 9))
if ARGV[8] ~= '' then redis.call('ZADD', ARGV[8], seq, seq) end
redis.call('XADD', KEYS[4], '*', 's', seq, 'd', d)
redis.call('ZADD', KEYS[1], now, d)
redis.call('HINCRBY', KEYS[3], 'n', 1)
redis.call('HINCRBY', KEYS[3], 'b', size)
local old = redis.call('HGET', KEYS[6], d)
if old then
  redis.call('HDEL', KEYS[6], d)
  redis.call('ZREM', KEYS[5], old)
  redis.call('DEL', ARGV[7] .. 'ev:' .. old)
  redis.call('INCR', KEYS[7])
end
return {'ok', seq}
"""

# KEYS: stream, held, event   ARGV: entry id, size, lane ('' for none), seq
FINISH = """
if redis.call('XACK', KEYS[1], 'replicas', ARGV[1]) == 1 then
  redis.call('XDEL', KEYS[1], ARGV[1])
  if ARGV[3] ~= '' then redis.call('ZREM', ARGV[3], ARGV[4]) end
  redis.call('DEL', KEYS[3])
  redis.call('HINCRBY', KEYS[2], 'n', -1)
  redis.call('HINCRBY', KEYS[2], 'b', -tonumber(ARGV[2]))
end
"""

# KEYS: stream, held, event, dead, dead_ids, dead_version
# ARGV: entry id, size, reason, at, attempts, last error ('' for none), seq, delivery,
#       capacity, prefix, lane ('' for none)
DEAD = """
if redis.call('XACK', KEYS[1], 'replicas', ARGV[1]) == 1 then
  redis.call('XDEL', KEYS[1], ARGV[1])
  if ARGV[11] ~= '' then redis.call('ZREM', ARGV[11], ARGV[7]) end
  redis.call('HINCRBY', KEYS[2], 'n', -1)
  redis.call('HINCRBY', KEYS[2], 'b', -tonumber(ARGV[2]))
  redis.call('HSET', KEYS[3], 'dr', ARGV[3], 'da', ARGV[4], 'att', ARGV[5])
  if ARGV[6] ~= '' then redis.call('HSET', KEYS[3], 'le', ARGV[6]) end
  redis.call('ZADD', KEYS[4], ARGV[4], ARGV[7])
  redis.call('HSET', KEYS[5], ARGV[8], ARGV[7])
  while redis.call('ZCARD', KEYS[4]) > tonumber(ARGV[9]) do
    local oldest = redis.call('ZPOPMIN', KEYS[4])[1]
    local key = ARGV[10] .. 'ev:' .. oldest
    local d = redis.call('HGET', key, 'd')
    if d and redis.call('HGET', KEYS[5], d) == oldest then redis.call('HDEL', KEYS[5], d) end
    redis.call('DEL', key)
  end
  redis.call('INCR', KEYS[6])
end
"""

# KEYS: event   ARGV: attempts, not before, last error ('' for none)
ATTEMPTS = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'att', ARGV[1], 'nb', ARGV[2])
  if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'le', ARGV[3]) end
end
"""

# KEYS: dead, dead_ids, event, dead_version   ARGV: seq, delivery
DROP_DEAD = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('DEL', KEYS[3])
  if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[2], ARGV[2]) end
  redis.call('INCR', KEYS[4])
end
"""

# KEYS: dead, dead_ids, seq, held, seen, stream, dead_version
# ARGV: old seq, delivery, event limit, byte limit, now, prefix
# -> 1 re-driven, 0 not a dead letter (any more), -1 no room
REDRIVE = """
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
local old = ARGV[6] .. 'ev:' .. ARGV[1]
local size = tonumber(redis.call('HGET', old, 'sz') or '0')
local held = redis.call('HMGET', KEYS[4], 'n', 'b')
if tonumber(held[1] or '0') + 1 > tonumber(ARGV[3])
   or tonumber(held[2] or '0') + size > tonumber(ARGV[4]) then
  redis.call('INCR', KEYS[7])
  return -1
end
redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then redis.call('HDEL', KEYS[2], ARGV[2]) end
local seq = redis.call('INCR', KEYS[3])
local new = ARGV[6] .. 'ev:' .. seq
redis.call('RENAME', old, new)
redis.call('HDEL', new, 'dr', 'da', 'le')
redis.call('HSET', new, 'att', 0, 'nb', 0, 'at', ARGV[5])
redis.call('XADD', KEYS[6], '*', 's', seq, 'd', ARGV[2])
local repository, number = redis.call('HGET', new, 'r'), redis.call('HGET', new, 'n')
if repository and number then
  redis.call('ZADD', ARGV[6] .. 'lane:' .. repository .. '#' .. number, seq, seq)
end
redis.call('ZADD', KEYS[5], ARGV[5], ARGV[2])
redis.call('HINCRBY', KEYS[4], 'n', 1)
redis.call('HINCRBY', KEYS[4], 'b', size)
redis.call('INCR', KEYS[7])
return 1
"""

# KEYS: stream   ARGV: entry id, seq, delivery -> the entry goes back for any replica to read
GIVE_BACK = """
if redis.call('XACK', KEYS[1], 'replicas', ARGV[1]) == 1 then
  redis.call('XDEL', KEYS[1], ARGV[1])
  redis.call('XADD', KEYS[1], '*', 's', ARGV[2], 'd', ARGV[3])
end
"""

# KEYS: stream   ARGV: consumer, entry ids... -> the ids no longer pending for this consumer
TOUCH = """
local lost = {}
for i = 2, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], 'replicas', ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[1] then
    redis.call('XCLAIM', KEYS[1], 'replicas', ARGV[1], 0, ARGV[i], 'JUSTID')
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
"""

# KEYS: lease, lane   ARGV: replica, milliseconds, prefix, seqs this replica holds of the issue
# -> {1 or 0, the lane}: 1 when the lease is this replica's now. It is taken only when the
# front of the lane is one of this replica's events: an earlier event of the issue, wherever
# it waits, goes first. Lane entries whose event is gone (Redis lost data) are dropped.
LEASE = """
local lane
while true do
  lane = redis.call('ZRANGE', KEYS[2], 0, -1)
  if not lane[1] or redis.call('EXISTS', ARGV[3] .. 'ev:' .. lane[1]) == 1 then break end
  redis.call('ZREM', KEYS[2], lane[1])
end
local ours = {}
for i = 4, #ARGV do ours[ARGV[i]] = true end
if not lane[1] or not ours[lane[1]] then return {0, lane} end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {0, lane} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {1, lane}
"""

# KEYS: lease   ARGV: replica, milliseconds -> 1 renewed (or taken again, if it timed out
# and nobody took it), 0 held by another
RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

# KEYS: lease   ARGV: replica
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
"""
