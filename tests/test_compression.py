"""The payload codec: the shipped dictionary, dictionary ids in frames, replacement, retraining."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import zstandard

from github_app.queue.compression import CompressionError, PayloadCodec, main, packaged_dictionaries
from tests.deliveries import FIXTURES


def fixture_bodies() -> list[bytes]:
    return [
        json.dumps(json.loads(path.read_text("utf-8")), separators=(",", ":")).encode()
        for path in sorted(FIXTURES.glob("*.json"))
    ]


def test_the_package_ships_a_current_dictionary_and_frames_carry_its_id() -> None:
    dictionaries, current = packaged_dictionaries()
    assert current in dictionaries
    assert 16 * 1024 <= len(dictionaries[current]) <= 64 * 1024
    codec = PayloadCodec()
    assert codec.dictionary_id == current
    for body in fixture_bodies():
        frame = codec.compress(body)
        assert zstandard.get_frame_parameters(frame).dict_id == current
        assert codec.decompress(frame) == body


def test_the_dictionary_beats_plain_zstd_on_real_payloads() -> None:
    bodies = fixture_bodies()
    with_dict = sum(len(PayloadCodec().compress(b)) for b in bodies)
    plain = sum(len(PayloadCodec(dictionaries={}).compress(b)) for b in bodies)
    assert with_dict < 0.8 * plain


def test_a_new_dictionary_replaces_the_old_while_old_frames_are_still_readable() -> None:
    samples = [
        b'{"n":%d,"k":"value-%d","tail":"%s"}' % (i, i * 7, b"x" * (i % 50)) for i in range(400)
    ]
    old = zstandard.train_dictionary(1024, samples[:200]).as_bytes()
    new = zstandard.train_dictionary(1024, samples[200:], dict_id=4242).as_bytes()
    old_id = zstandard.ZstdCompressionDict(old).dict_id()
    before = PayloadCodec(dictionaries={old_id: old}, current=old_id)
    queued = before.compress(samples[0])
    after = PayloadCodec(dictionaries={old_id: old, 4242: new}, current=4242)
    fresh = after.compress(samples[1])
    assert zstandard.get_frame_parameters(fresh).dict_id == 4242
    assert after.decompress(queued) == samples[0]
    assert after.decompress(fresh) == samples[1]


def test_a_frame_whose_dictionary_is_not_loaded_is_a_clear_error() -> None:
    frame = PayloadCodec().compress(b'{"action":"opened"}')
    with pytest.raises(CompressionError, match=r"needs zstd dictionary \d+, which is not loaded"):
        PayloadCodec(dictionaries={}).decompress(frame)
    with pytest.raises(CompressionError, match="not a zstd frame"):
        PayloadCodec().decompress(b"not zstd at all")


def test_naming_a_dictionary_that_is_not_loaded_is_refused() -> None:
    with pytest.raises(CompressionError, match="dictionary 7 is not loaded"):
        PayloadCodec(dictionaries={}, current=7)


def test_train_command_writes_a_dictionary_and_can_make_it_current(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = tmp_path / "samples.jsonl"
    lines = [
        json.dumps({"action": "opened", "number": i, "title": f"issue {i} " + "word " * (i % 30)})
        for i in range(300)
    ]
    samples.write_text("\n".join(lines) + "\n", "utf-8")
    assert (
        main(["train", str(samples), "--size", "2048", "--out", str(tmp_path), "--make-current"])
        == 0
    )
    [written] = list(tmp_path.glob("webhooks-*.zdict"))
    dict_id = int((tmp_path / "CURRENT").read_text().strip())
    assert written.name == f"webhooks-{dict_id}.zdict"
    assert f"dictionary {dict_id}" in capsys.readouterr().out
    codec = PayloadCodec(dictionaries={dict_id: written.read_bytes()}, current=dict_id)
    assert codec.decompress(codec.compress(lines[5].encode())) == lines[5].encode()


def test_train_command_refuses_too_few_samples_and_missing_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    samples = tmp_path / "few.jsonl"
    samples.write_text('{"a":1}\n' * 5, "utf-8")
    assert main(["train", str(samples), "--out", str(tmp_path)]) == 2
    assert "need at least 100 samples" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.zdict"))
