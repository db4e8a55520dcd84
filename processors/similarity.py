"""Text similarity for short issue texts: TF-IDF over words, word pairs and character trigrams.

Issue titles are short and vary in word form ("crash", "crashes", "crashing")
and spelling, so the title contributes its words, its word pairs and the
character trigrams of its words; the body (template comments, code blocks
and links removed, first 1,500 characters) contributes its words at half the
weight. Weights are sublinear term frequencies times inverse document
frequency; similarity is the cosine of the two vectors (0 to 1).

Features are hashed (CRC-32, stable across processes) into 2**20 buckets, so
the index keeps no vocabulary. The index is an inverted file in numpy
arrays, rebuilt ("compacted") after every ``compact_every`` changes; changes
since the last compaction are scored separately. numpy is used because a
lookup over 10,000 issues is a few vectorised passes over about two million
postings (milliseconds), where Python dictionaries would take hundreds of
milliseconds and several times the memory.

Not thread-safe: callers serialise changes and lookups on one index.
"""

from __future__ import annotations

import itertools
import math
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

BUCKETS = 1 << 20
BODY_CHARS = 1500
TITLE_WEIGHT = 2.0
BODY_WEIGHT = 1.0

_STOP = """a an and are as at be but by can could did do does for from had has have how i if in
    into is it its me my no not of on or our so some than that the their then there these
    this those to too up us was we were what when where which while who why will with would
    you your also just any been being get got via vs"""
STOP_WORDS = frozenset(_STOP.split())
WORD = re.compile(r"[a-z0-9]+")
NOISE = re.compile(r"<!--.*?-->|```.*?(?:```|$)|~~~.*?(?:~~~|$)|https?://\S+", re.DOTALL)

Vector = tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]


def _stem(word: str) -> str:
    """A light suffix stripper: "crashes", "crashed", "crashing" -> "crash"."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            word = word[: -len(suffix)]
            break
    return word[:-1] if word.endswith("e") and len(word) > 3 else word


def _words(text: str) -> list[str]:
    return [_stem(w) for w in WORD.findall(text.lower()) if w not in STOP_WORDS]


def features(title: str, body: str | None) -> Vector:
    """The hashed, weighted (sublinear tf) features of an issue; ids sorted and unique."""
    counts: dict[str, float] = {}
    title_words = _words(title)
    for word in title_words:
        counts["w" + word] = counts.get("w" + word, 0.0) + TITLE_WEIGHT
        padded = f" {word} "
        for i in range(len(padded) - 2):
            gram = "c" + padded[i : i + 3]
            counts[gram] = counts.get(gram, 0.0) + 1.0
    for first, second in itertools.pairwise(title_words):
        key = f"b{first} {second}"
        counts[key] = counts.get(key, 0.0) + TITLE_WEIGHT
    if body:
        for word in _words(NOISE.sub(" ", body[: BODY_CHARS * 2])[:BODY_CHARS]):
            counts["w" + word] = counts.get("w" + word, 0.0) + BODY_WEIGHT
    merged: dict[int, float] = {}
    for key, count in counts.items():
        bucket = zlib.crc32(key.encode()) & (BUCKETS - 1)
        merged[bucket] = merged.get(bucket, 0.0) + count
    ids = np.fromiter(sorted(merged), dtype=np.int32, count=len(merged))
    weights = np.fromiter(
        (1.0 + math.log(merged[int(i)]) for i in ids), dtype=np.float32, count=len(ids)
    )
    return ids, weights


def features_many(texts: Sequence[tuple[str, str | None]]) -> list[Vector]:
    """``features`` for a batch: the unit of work handed to a worker thread or process."""
    return [features(title, body) for title, body in texts]


Packed = tuple[npt.NDArray[np.int32], npt.NDArray[np.float32], npt.NDArray[np.int64]]


def features_packed(texts: Sequence[tuple[str, str | None]]) -> Packed:
    """``features_many`` as three flat arrays (ids, weights, lengths).

    The form to return from a worker process: unpickling three arrays costs
    microseconds on the event loop, unpickling 10,000 small ones hundreds of ms.
    """
    vectors = features_many(texts)
    lengths = np.fromiter((len(v[0]) for v in vectors), dtype=np.int64, count=len(vectors))
    if not vectors:
        return np.zeros(0, np.int32), np.zeros(0, np.float32), lengths
    ids = np.concatenate([v[0] for v in vectors])
    weights = np.concatenate([v[1] for v in vectors])
    return ids, weights, lengths


def unpack(packed: Packed) -> list[Vector]:
    ids, weights, lengths = packed
    if len(lengths) == 0:
        return []  # np.split of nothing gives one empty piece, not none
    cuts = np.cumsum(lengths)[:-1]
    return list(zip(np.split(ids, cuts), np.split(weights, cuts), strict=True))


@dataclass(frozen=True)
class Match:
    number: int
    score: float


class SimilarityIndex:
    """Documents (issue number -> feature vector) and cosine lookups over them."""

    def __init__(self, compact_every: int = 64) -> None:
        self.compact_every = compact_every
        self._vectors: dict[int, Vector] = {}
        self._df = np.zeros(BUCKETS, dtype=np.int32)
        self._pending: set[int] = set()  # added or changed since the last compaction
        self._removed: set[int] = set()  # removed since the last compaction
        self._numbers = np.zeros(0, dtype=np.int64)  # row -> issue number
        self._row_of: dict[int, int] = {}
        self._feat = np.zeros(0, dtype=np.int32)  # sorted unique feature ids
        self._ptr = np.zeros(1, dtype=np.int64)  # postings of _feat[i]: _ptr[i]:_ptr[i+1]
        self._post_row = np.zeros(0, dtype=np.int32)
        self._post_val = np.zeros(0, dtype=np.float32)
        self._norms = np.zeros(0, dtype=np.float32)

    def __len__(self) -> int:
        return len(self._vectors)

    def __contains__(self, number: object) -> bool:
        return number in self._vectors

    @property
    def needs_compaction(self) -> bool:
        return len(self._pending) + len(self._removed) >= self.compact_every

    def add(self, number: int, vector: Vector) -> None:
        """Add an issue, or replace its text."""
        self.remove(number)
        self._vectors[number] = vector
        np.add.at(self._df, vector[0], 1)
        self._pending.add(number)
        self._removed.discard(number)

    def remove(self, number: int) -> None:
        vector = self._vectors.pop(number, None)
        if vector is None:
            return
        np.subtract.at(self._df, vector[0], 1)
        self._pending.discard(number)
        if number in self._row_of:
            self._removed.add(number)

    def add_many(self, items: Iterable[tuple[int, Vector]]) -> None:
        for number, vector in items:
            self.add(number, vector)
        self.compact()

    def add_packed(self, numbers: Sequence[int], packed: Packed) -> None:
        self.add_many(zip(numbers, unpack(packed), strict=True))

    def compact(self) -> None:
        """Rebuild the inverted file from every current vector (CPU: run it off the loop)."""
        numbers = list(self._vectors)
        vectors = [self._vectors[n] for n in numbers]
        lengths = np.fromiter((len(v[0]) for v in vectors), dtype=np.int64, count=len(vectors))
        if vectors:
            all_ids = np.concatenate([v[0] for v in vectors])
            all_vals = np.concatenate([v[1] for v in vectors])
        else:
            all_ids, all_vals = np.zeros(0, np.int32), np.zeros(0, np.float32)
        all_rows = np.repeat(np.arange(len(vectors), dtype=np.int32), lengths)
        idf = self._idf(all_ids)
        self._norms = np.sqrt(
            np.bincount(all_rows, weights=(all_vals * idf) ** 2, minlength=len(vectors))
        ).astype(np.float32)
        order = np.argsort(all_ids, kind="stable")
        sorted_ids = all_ids[order]
        self._feat, starts = np.unique(sorted_ids, return_index=True)
        self._ptr = np.append(starts, len(sorted_ids)).astype(np.int64)
        self._post_row = all_rows[order]
        self._post_val = all_vals[order]
        self._numbers = np.asarray(numbers, dtype=np.int64)
        self._row_of = {n: i for i, n in enumerate(numbers)}
        self._pending.clear()
        self._removed.clear()

    def _idf(self, ids: npt.NDArray[np.int32]) -> npt.NDArray[np.float32]:
        df = self._df[ids].astype(np.float32)
        total = float(len(self._vectors))
        idf: npt.NDArray[np.float32] = (np.log((total + 1.0) / (df + 1.0)) + 1.0).astype(np.float32)
        return idf

    def lookup(self, vector: Vector, k: int = 3, exclude: int | None = None) -> list[Match]:
        """The ``k`` most similar issues (cosine, highest first), never ``exclude``."""
        if self.needs_compaction:
            self.compact()
        q_ids, q_w = vector
        if not len(q_ids) or not self._vectors:
            return []
        q_idf = self._idf(q_ids)
        q_vals = q_w * q_idf
        q_norm = float(np.sqrt(np.dot(q_vals, q_vals)))
        if q_norm == 0.0:
            return []
        coef = q_vals * q_idf  # query weight x idf (the document's idf)
        scores: dict[int, float] = {}
        compacted = self._score_compacted(q_ids, coef, q_norm)
        if compacted is not None:
            top = np.argsort(-compacted)[: k + len(self._pending) + len(self._removed) + 1]
            for row in top:
                number = int(self._numbers[row])
                value = float(compacted[row])
                if value > 0.0 and number not in self._pending and number not in self._removed:
                    scores[number] = value
        for number in self._pending:
            scores[number] = self._score_one(self._vectors[number], q_ids, coef, q_norm)
        scores.pop(exclude, None)  # type: ignore[arg-type]
        ranked = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        return [Match(number, round(score, 4)) for number, score in ranked[:k] if score > 0.0]

    def _score_compacted(
        self, q_ids: npt.NDArray[np.int32], coef: npt.NDArray[np.float32], q_norm: float
    ) -> npt.NDArray[np.float64] | None:
        if not len(self._numbers) or not len(self._feat):
            return None
        pos = np.searchsorted(self._feat, q_ids)
        pos_clipped = np.minimum(pos, len(self._feat) - 1)
        hit = self._feat[pos_clipped] == q_ids
        rows, vals = [], []
        for p, c in zip(pos_clipped[hit].tolist(), coef[hit].tolist(), strict=True):
            start, end = self._ptr[p], self._ptr[p + 1]
            rows.append(self._post_row[start:end])
            vals.append(self._post_val[start:end] * c)
        if not rows:
            return None
        dots = np.bincount(
            np.concatenate(rows), weights=np.concatenate(vals), minlength=len(self._numbers)
        )
        norms = np.maximum(self._norms, 1e-9) * q_norm
        result: npt.NDArray[np.float64] = dots / norms
        return result

    def _score_one(
        self,
        vector: Vector,
        q_ids: npt.NDArray[np.int32],
        coef: npt.NDArray[np.float32],
        q_norm: float,
    ) -> float:
        ids, weights = vector
        common, in_doc, in_query = np.intersect1d(ids, q_ids, return_indices=True)
        if not len(common):
            return 0.0
        idf = self._idf(ids)
        norm = float(np.sqrt(np.dot(weights * idf, weights * idf)))
        dot = float(np.dot(weights[in_doc], coef[in_query]))
        return dot / (max(norm, 1e-9) * q_norm)

    def nbytes(self) -> int:
        """Bytes held in numpy arrays (the vectors, the postings, document frequencies)."""
        arrays: list[npt.NDArray[Any]] = [self._df, self._numbers, self._feat, self._ptr]
        arrays += [self._post_row, self._post_val, self._norms]
        total = sum(a.nbytes for a in arrays)
        return total + sum(v[0].nbytes + v[1].nbytes for v in self._vectors.values())
