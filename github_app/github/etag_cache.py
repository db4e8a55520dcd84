"""Conditional GETs: ETag and body per installation and URL, bounded by bytes.

A cached answer is revalidated with ``If-None-Match``; GitHub answers 304,
which does not count against the primary budget, and the cached body is
served. Bodies are kept zstd-compressed and the cache is an LRU bounded by
the bytes it holds (keys included), so 10,000 distinct URLs cannot grow it
past its bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import zstandard
from cachetools import LRUCache

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
MAX_ENTRY_BYTES = 1024 * 1024  # a larger body is not worth a slot
KEPT_HEADERS = ("content-type", "content-encoding", "etag", "last-modified", "link")

CacheKey = tuple[int | None, str, str]  # installation, URL, Accept


@dataclass(frozen=True, slots=True)
class CachedResponse:
    etag: str
    status_code: int
    headers: tuple[tuple[str, str], ...]
    body: bytes  # zstd-compressed raw body (still in its content-encoding)
    size: int


def _size(entry: CachedResponse) -> int:
    return entry.size


class ETagCache:
    """An LRU of validated GET answers, bounded by bytes."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, level: int = 3) -> None:
        self._entries: LRUCache[CacheKey, CachedResponse] = LRUCache(
            maxsize=max_bytes, getsizeof=_size
        )
        self._compressor = zstandard.ZstdCompressor(level=level)
        self._decompressor = zstandard.ZstdDecompressor()
        self.max_bytes = max_bytes

    @property
    def size(self) -> int:
        return int(self._entries.currsize)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> CachedResponse | None:
        return self._entries.get(key)

    def body(self, entry: CachedResponse) -> bytes:
        return self._decompressor.decompress(entry.body)

    def put(
        self, key: CacheKey, etag: str, status_code: int, headers: dict[str, str], raw: bytes
    ) -> None:
        if len(raw) > MAX_ENTRY_BYTES:
            self._entries.pop(key, None)
            return
        kept = tuple((name, headers[name]) for name in KEPT_HEADERS if name in headers)
        body = self._compressor.compress(raw)
        size = len(body) + len(key[1]) + len(key[2]) + sum(len(n) + len(v) for n, v in kept) + 96
        if size > self.max_bytes:
            return
        self._entries[key] = CachedResponse(etag, status_code, kept, body, size)

    def discard(self, key: CacheKey) -> None:
        self._entries.pop(key, None)

    def forget_installation(self, installation_id: int) -> None:
        for key in [k for k in self._entries if k[0] == installation_id]:
            del self._entries[key]
