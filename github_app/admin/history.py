"""The dashboard's memory of the last hour: samples in a fixed-size ring, and marked moments.

The ``/admin`` page draws its charts from this. Memory is bounded from the
start: one ``array('d')`` per series, ``capacity`` slots each (an hour of
2-second samples is 1,800 slots, 14 KiB per series), overwritten oldest
first; the marks (the width controller's changes, with their reasons) are a
``deque`` of the same length at most. Nothing grows with traffic.

Samples are numbered from 0 in the order they were recorded; a reader asks
for the samples from a number on (``window(start=...)``) and gets only what
it has not seen, or everything still held when its number is gone (the ring
moved past it, or the server restarted and numbers began again).

Pure and synchronous: the sampler task records, the status route reads; the
wall clock is injected (samples carry wall time, so the page can say
"3 min ago"; monotonic clock values never leave the server).
"""

from __future__ import annotations

import math
import time
from array import array
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Clock = Callable[[], float]

HOUR = 3600.0
MISSING = math.nan  # a series without a value at a sample (a part that knows nothing yet)


@dataclass(frozen=True, slots=True)
class Mark:
    """A moment worth pointing at on a chart (the width controller changed its mind)."""

    seq: int  # the number of the sample after it (the one recorded next)
    at: float  # wall clock
    label: str  # e.g. "grow 4 -> 8"
    reason: str


class History:
    """A ring of ``capacity`` samples of the named series, and the marks of the same span."""

    def __init__(self, series: Sequence[str], capacity: int, *, clock: Clock = time.time) -> None:
        if capacity < 2:
            raise ValueError("a history needs room for at least two samples")
        if len(set(series)) != len(series) or not series:
            raise ValueError("series names must be given, each once")
        self.series = tuple(series)
        self.capacity = capacity
        self._clock = clock
        self._at = array("d", bytes(8 * capacity))
        self._values = {name: array("d", bytes(8 * capacity)) for name in self.series}
        self._count = 0
        self._marks: deque[Mark] = deque(maxlen=capacity)

    def __len__(self) -> int:
        """Samples held now (at most ``capacity``)."""
        return min(self._count, self.capacity)

    @property
    def next_seq(self) -> int:
        """The number the next sample will get (how many were ever recorded)."""
        return self._count

    @property
    def first_seq(self) -> int:
        """The number of the oldest sample still held."""
        return max(0, self._count - self.capacity)

    def record(self, values: Mapping[str, float | None]) -> int:
        """Keep one sample taken now; series not given are missing. Returns its number."""
        unknown = set(values) - set(self._values)
        if unknown:
            raise ValueError(f"unknown series: {', '.join(sorted(unknown))}")
        slot = self._count % self.capacity
        self._at[slot] = self._clock()
        for name, column in self._values.items():
            value = values.get(name)
            column[slot] = MISSING if value is None else float(value)
        self._count += 1
        return self._count - 1

    def mark(self, label: str, reason: str) -> None:
        """Remember that something happened now (drawn between the samples around it)."""
        self._marks.append(Mark(self._count, self._clock(), label, reason))

    def window(self, *, start: int | None = None, span: float = HOUR) -> dict[str, Any]:
        """Samples and marks of the last ``span`` seconds, from number ``start`` on.

        ``continues`` says whether the answer follows on from ``start``: ``False``
        when ``start`` is not given or no longer held (everything held in the span
        is sent then, and the reader starts over).
        """
        now = self._clock()
        first = self.first_seq
        continues = start is not None and first <= start <= self._count
        since = start if start is not None and continues else 0
        begin = max(since, first)
        horizon = now - span
        while begin < self._count and self._at[begin % self.capacity] < horizon:
            begin += 1
        # The held samples from ``begin`` on: one or two contiguous stretches of the ring.
        head, size = begin % self.capacity, self._count - begin
        stretches = [(head, min(head + size, self.capacity))]
        if head + size > self.capacity:
            stretches.append((0, head + size - self.capacity))
        # A mark goes out with the sample after it, so a reader going on from ``next`` gets
        # each mark once.
        marks = [m for m in self._marks if since <= m.seq < self._count and m.at >= horizon]
        return {
            "now": now,
            "span": span,
            "capacity": self.capacity,
            "first": begin,
            "next": self._count,
            "continues": continues,
            "at": [round(t, 3) for a, b in stretches for t in self._at[a:b]],
            "series": {
                name: [_plain(v) for a, b in stretches for v in column[a:b]]
                for name, column in self._values.items()
            },
            "marks": [
                {"seq": m.seq, "at": round(m.at, 3), "label": m.label, "reason": m.reason}
                for m in marks
            ],
        }


def _plain(value: float) -> float | int | None:
    """A sample value for JSON: ``null`` when missing, whole numbers without ``.0``."""
    if value != value:  # NaN, without a function call: this runs 38,000 times an hour
        return None
    if value.is_integer():
        return int(value)
    return round(value, 4)
