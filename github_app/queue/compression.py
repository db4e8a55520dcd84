"""Payloads are kept zstd-compressed while queued, with a dictionary trained on webhook payloads.

Webhook bodies are 5-20 KB of JSON that repeat the same keys and URL shapes in
every delivery; a dictionary gives zstd that shared part up front, so each
frame holds mostly what is particular to the event (about 13x instead of 7x on
a randomised mix, see benchmarks/queue_burst.py). The dictionary ships with the
package (``github_app/queue/dictionaries/``); ``CURRENT`` names the one new frames
use, and every ``*.zdict`` there is loaded for reading. Each frame carries its
dictionary id, so a new dictionary can replace an old one while events
compressed with the old one are still queued: ship both, point ``CURRENT`` at
the new one.

Retrain (samples: one JSON body per line, e.g. from ``benchmarks/corpus.py``
or captured deliveries)::

    python -m github_app.queue.compression train SAMPLES.jsonl [--size 32768] [--make-current]

zstd's compressor and decompressor objects are reusable but not thread-safe;
one codec per event loop, used from the loop thread only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import zstandard

DICTIONARY_DIR = "dictionaries"
CURRENT_FILE = "CURRENT"
DEFAULT_LEVEL = 3
DEFAULT_DICT_SIZE = 32 * 1024  # measured best (16-64 KB); far above 1/100 of the samples is worse


class CompressionError(ValueError):
    """A queued frame cannot be read (its dictionary is not loaded, or it is corrupt)."""


def packaged_dictionaries() -> tuple[dict[int, bytes], int | None]:
    """The dictionaries shipped in the package, by id, and the id ``CURRENT`` names."""
    folder = resources.files("github_app.queue").joinpath(DICTIONARY_DIR)
    found: dict[int, bytes] = {}
    current: int | None = None
    if not folder.is_dir():
        return found, current
    for entry in folder.iterdir():
        if entry.name.endswith(".zdict"):
            data = entry.read_bytes()
            found[zstandard.ZstdCompressionDict(data).dict_id()] = data
    marker = folder.joinpath(CURRENT_FILE)
    if marker.is_file():
        current = int(marker.read_text("utf-8").strip())
        if current not in found:
            raise CompressionError(
                f"{DICTIONARY_DIR}/{CURRENT_FILE} names dictionary {current}, which is not shipped"
            )
    return found, current


class PayloadCodec:
    """Compress with the current dictionary; decompress with whichever one a frame names."""

    def __init__(
        self,
        level: int = DEFAULT_LEVEL,
        *,
        dictionaries: Mapping[int, bytes] | None = None,
        current: int | None = None,
    ) -> None:
        if dictionaries is None:
            dictionaries, packaged_current = packaged_dictionaries()
            current = packaged_current if current is None else current
        self._dicts = {
            dict_id: zstandard.ZstdCompressionDict(data) for dict_id, data in dictionaries.items()
        }
        if current is not None and current not in self._dicts:
            raise CompressionError(f"dictionary {current} is not loaded")
        self.dictionary_id = current or 0
        if current:
            chosen = self._dicts[current]
            chosen.precompute_compress(level=level)
            self._compressor = zstandard.ZstdCompressor(
                level=level, dict_data=chosen, write_content_size=True, write_dict_id=True
            )
        else:
            self._compressor = zstandard.ZstdCompressor(level=level, write_content_size=True)
        self._decompressors: dict[int, zstandard.ZstdDecompressor] = {
            0: zstandard.ZstdDecompressor()
        }
        for dict_id, data in self._dicts.items():
            self._decompressors[dict_id] = zstandard.ZstdDecompressor(dict_data=data)

    def compress(self, raw: bytes) -> bytes:
        # zstandard returns a bytes object that keeps its worst-case output buffer (about the
        # input's size); copying the frame out makes a queued event cost its compressed size.
        return bytes(memoryview(self._compressor.compress(raw)))

    def decompress(self, packed: bytes) -> bytes:
        try:
            dict_id = zstandard.get_frame_parameters(packed).dict_id
        except zstandard.ZstdError as exc:
            raise CompressionError(f"not a zstd frame: {exc}") from None
        decompressor = self._decompressors.get(dict_id)
        if decompressor is None:
            raise CompressionError(
                f"frame needs zstd dictionary {dict_id}, which is not loaded "
                "(keep old dictionaries shipped until their events have drained)"
            )
        try:
            return decompressor.decompress(packed)
        except zstandard.ZstdError as exc:
            raise CompressionError(f"corrupt frame: {exc}") from None


def train(
    samples: list[bytes | bytearray | memoryview],
    size: int = DEFAULT_DICT_SIZE,
    level: int = DEFAULT_LEVEL,
) -> bytes:
    """A dictionary of ``size`` bytes trained on ``samples`` (webhook JSON bodies)."""
    if len(samples) < 100:
        raise ValueError(f"need at least 100 samples to train a dictionary, got {len(samples)}")
    return zstandard.train_dictionary(size, samples, level=level).as_bytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m github_app.queue.compression")
    commands = parser.add_subparsers(dest="command", required=True)
    trainer = commands.add_parser("train", help="train a dictionary on JSON-lines samples")
    trainer.add_argument("samples", type=Path, help="one webhook JSON body per line")
    trainer.add_argument("--size", type=int, default=DEFAULT_DICT_SIZE, help="dictionary bytes")
    trainer.add_argument("--level", type=int, default=DEFAULT_LEVEL)
    trainer.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / DICTIONARY_DIR,
        help="folder to write webhooks-<id>.zdict into (default: the package's)",
    )
    trainer.add_argument(
        "--make-current", action="store_true", help="point CURRENT at the new dictionary"
    )
    args = parser.parse_args(argv)
    try:
        samples = [line.rstrip(b"\r\n") for line in args.samples.read_bytes().splitlines()]
    except OSError as exc:
        print(f"cannot read {args.samples}: {exc.strerror}", file=sys.stderr)
        return 2
    samples = [s for s in samples if s]
    buffers: list[bytes | bytearray | memoryview] = list(samples)
    try:
        data = train(buffers, args.size, args.level)
    except (ValueError, zstandard.ZstdError) as exc:
        print(f"cannot train: {exc}", file=sys.stderr)
        return 2
    dict_id = zstandard.ZstdCompressionDict(data).dict_id()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"webhooks-{dict_id}.zdict"
    path.write_bytes(data)
    if args.make_current:
        (args.out / CURRENT_FILE).write_text(f"{dict_id}\n", "utf-8")
    total = sum(len(s) for s in samples)
    print(f"dictionary {dict_id}: {len(data)} bytes from {len(samples)} samples ({total} bytes)")
    print(f"wrote {path}" + (" (now current)" if args.make_current else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
