"""Payloads are kept zstd-compressed while queued: a burst costs memory in compressed bytes.

zstd's compressor and decompressor objects are reusable but not thread-safe;
one codec per event loop, used from the loop thread only.
"""

from __future__ import annotations

import zstandard


class PayloadCodec:
    """Compress and decompress webhook JSON bodies."""

    def __init__(self, level: int = 3) -> None:
        self._compressor = zstandard.ZstdCompressor(level=level, write_content_size=True)
        self._decompressor = zstandard.ZstdDecompressor()

    def compress(self, raw: bytes) -> bytes:
        return self._compressor.compress(raw)

    def decompress(self, packed: bytes) -> bytes:
        return self._decompressor.decompress(packed)
