"""Structured logs: every line about an event carries its context; JSON gives one object a line."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from github_app.logs import CONTEXT_FIELDS, JsonFormatter, TextFormatter
from tests.conftest import make_settings, running_app
from tests.deliveries import INSTALLATION_ID, issue_event, signed

pytestmark = pytest.mark.anyio


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """The root logger also writes JSON lines to a buffer, as ``LOG_FORMAT=json`` does."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def test_json_log_lines_about_an_event_carry_delivery_event_action_installation_repo(
    json_log: io.StringIO,
) -> None:
    delivery = signed(issue_event("opened", title="It crashes", number=7, labels=[]), "issues")
    async with running_app(make_settings(None)) as app:
        assert (await app.post(delivery)).status_code == 202
        await app.settle()
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    assert all(isinstance(entry, dict) and entry["message"] is not None for entry in lines)
    about_event = [entry for entry in lines if entry.get("delivery_id") == delivery.delivery_id]
    would = [entry for entry in about_event if entry["message"].startswith("dry-run: would POST")]
    assert len(would) == 1, lines
    assert {k: would[0][k] for k in CONTEXT_FIELDS} == {
        "delivery_id": delivery.delivery_id,
        "event": "issues",
        "action": "opened",
        "installation": INSTALLATION_ID,
        "repository": "Codertocat/Hello-World",
    }
    assert {"time", "level", "logger"} <= set(would[0])


def test_a_multi_line_message_and_a_traceback_stay_one_json_object_on_one_line() -> None:
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "first\nsecond", None, exc_info=sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "first\nsecond"
    assert "ValueError" in entry["exception"]
    assert "first" in TextFormatter().format(record)
