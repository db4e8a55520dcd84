"""``/metrics`` through the real server, parsed with prometheus-client's own parser."""

from __future__ import annotations

import httpx
import pytest
import respx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from github_app.runtime import INITIAL_WIDTH
from tests.conftest import make_settings, running_app
from tests.deliveries import issue_event, signed

pytestmark = pytest.mark.anyio

PREFIX = "auto_issue_processor"
BOUNDED_LABELS = {"priority", "event", "processor", "outcome", "reason", "le"}


def samples(text: str) -> list[Sample]:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def value(found: list[Sample], name: str, **labels: str) -> float | None:
    for sample in found:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


async def test_metrics_parse_and_counters_move_after_a_delivery() -> None:
    async with running_app(make_settings(None)) as app:
        before_answer = await app.client.get(app.url + "/metrics")
        assert before_answer.status_code == 200
        assert before_answer.headers["content-type"].startswith("text/plain")
        before = samples(before_answer.text)
        delivery = signed(issue_event("opened", title="It crashes"), "issues")
        assert (await app.post(delivery)).status_code == 202
        await app.settle()
        text = (await app.client.get(app.url + "/metrics")).text
        after = samples(text)

    labels = {"priority": "HIGH", "event": "issues", "processor": "labeler"}
    assert value(before, f"{PREFIX}_processing_seconds_count", **labels) is None
    assert value(after, f"{PREFIX}_processing_seconds_count", **labels) == 1
    assert value(after, f"{PREFIX}_processing_seconds_bucket", **labels, le="+Inf") == 1
    assert value(after, f"{PREFIX}_processor_runs_total", **labels, outcome="ok") == 1
    assert value(after, f"{PREFIX}_events_processed_total", outcome="ok", priority="HIGH") == 1
    assert value(after, f"{PREFIX}_event_seconds_count", priority="HIGH") == 1
    assert value(before, f"{PREFIX}_deliveries_total", outcome="queued") == 0
    assert value(after, f"{PREFIX}_deliveries_total", outcome="queued") == 1
    assert value(after, f"{PREFIX}_events_admitted_total") == 1
    names = [family.name for family in text_string_to_metric_families(text)]
    assert len(names) == len(set(names))  # one family per name
    assert value(after, f"{PREFIX}_queue_depth", priority="NORMAL") == 0
    assert (
        value(after, f"{PREFIX}_dispatcher_width") == INITIAL_WIDTH
    )  # the controller starts there
    assert value(after, f"{PREFIX}_ready") == 1
    assert (value(after, f"{PREFIX}_process_rss_bytes") or 0) > 1_000_000

    # Bounded label sets: never a delivery id, an issue or a repository.
    assert {name for sample in after for name in sample.labels} <= BOUNDED_LABELS
    assert delivery.delivery_id not in text
    assert "Hello-World" not in text


async def test_queue_gauges_show_waiting_events_per_priority() -> None:
    async with running_app(make_settings(None), paused=True) as app:
        for number in (1, 2):
            await app.post(signed(issue_event("edited", number=number), "issues"))
        await app.post(signed(issue_event("opened", number=3), "issues"))
        found = samples((await app.client.get(app.url + "/metrics")).text)
        app.runtime.dispatcher.resume()
        await app.settle()
    assert value(found, f"{PREFIX}_queue_depth", priority="NORMAL") == 2
    assert value(found, f"{PREFIX}_queue_depth", priority="HIGH") == 1
    assert (value(found, f"{PREFIX}_queue_bytes", priority="NORMAL") or 0) > 0


async def test_dead_letters_and_the_ones_dropped_when_full_are_counted(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    github.routes["token"].mock(side_effect=None, return_value=httpx.Response(404))
    settings = make_settings(private_key_pem, DEAD_LETTER_MAX="1")
    async with running_app(settings) as app:
        for number in (1, 2):
            assert (await app.post(signed(issue_event(number=number), "issues"))).status_code == 202
        await app.settle()
        found = samples((await app.client.get(app.url + "/metrics")).text)
    assert value(found, f"{PREFIX}_dead_letters") == 1
    assert value(found, f"{PREFIX}_dead_letters_removed_total", outcome="dropped") == 1
    assert value(found, f"{PREFIX}_dead_letters_removed_total", outcome="purged") == 0


async def test_processing_buckets_sum_the_histogram_over_its_label_sets() -> None:
    async with running_app(make_settings(None)) as app:
        bounds, empty = app.runtime.metrics.processing_buckets()
        assert set(empty) == {0.0} and len(empty) == len(bounds) + 1
        for number in (1, 2, 3):
            delivery = signed(issue_event("opened", number=number), "issues")
            assert (await app.post(delivery)).status_code == 202
        await app.settle()
        _, counts = app.runtime.metrics.processing_buckets()
        runs = app.runtime.runner.stats
    calls = sum(runs.ok.values()) + sum(runs.failed.values())
    assert calls >= 3
    assert counts[-1] == calls  # the +Inf bucket counts every processor call
    assert list(counts) == sorted(counts)  # cumulative
