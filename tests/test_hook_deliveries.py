"""The delivery log read as values: GitHub's documented entry shape, the Link cursor, and
every way an entry can be wrong named in the error."""

from __future__ import annotations

from typing import Any

import pytest

from github_app.github.hook_deliveries import (
    MalformedDelivery,
    next_cursor,
    parse_delivery,
    parse_page,
    parse_time,
)

# GitHub's example entry for GET /app/hook/deliveries (REST docs, apps/webhooks)
EXAMPLE: dict[str, Any] = {
    "id": 12345678,
    "guid": "0b989ba4-242f-11e5-81e1-c7b6966d2516",
    "delivered_at": "2019-06-03T00:57:16Z",
    "redelivery": False,
    "duration": 0.27,
    "status": "OK",
    "status_code": 200,
    "event": "issues",
    "action": "opened",
    "installation_id": 123,
    "repository_id": 456,
    "throttled_at": "2019-06-03T00:57:16Z",
}
LINK = '<https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_12077215967>; rel="next"'


def test_reads_githubs_example_entry() -> None:
    delivery = parse_delivery(EXAMPLE)
    assert delivery.id == 12345678
    assert delivery.guid == "0b989ba4-242f-11e5-81e1-c7b6966d2516"
    assert delivery.delivered_at == parse_time("2019-06-03T00:57:16Z") == 1559523436.0
    assert (delivery.event, delivery.action, delivery.ok) == ("issues", "opened", True)
    assert (delivery.installation_id, delivery.repository_id) == (123, 456)


@pytest.mark.parametrize(("status_code", "ok"), [(202, True), (503, False), (0, False)])
def test_an_attempt_is_ok_only_with_a_2xx(status_code: int, ok: bool) -> None:
    assert parse_delivery({**EXAMPLE, "status_code": status_code}).ok is ok


def test_null_action_installation_and_repository_are_none() -> None:
    entry = {**EXAMPLE, "action": None, "installation_id": None, "repository_id": None}
    delivery = parse_delivery(entry)
    assert (delivery.action, delivery.installation_id, delivery.repository_id) == (None,) * 3


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"guid": None}, "guid"),
        ({"guid": "  "}, "guid"),
        ({"id": "12"}, "id"),
        ({"id": True}, "id"),
        ({"delivered_at": "yesterday"}, "delivered_at"),
        ({"delivered_at": 5}, "delivered_at"),
        ({"status_code": "500"}, "status_code"),
        ({"event": None}, "event"),
        ({"installation_id": "42"}, "installation_id"),
    ],
)
def test_a_malformed_entry_names_its_field(change: dict[str, Any], named: str) -> None:
    with pytest.raises(MalformedDelivery, match=named):
        parse_delivery({**EXAMPLE, **change})


def test_a_page_that_is_not_a_list_of_objects_is_malformed() -> None:
    with pytest.raises(MalformedDelivery, match="not a list"):
        parse_page({"message": "oops"}, None)
    with pytest.raises(MalformedDelivery, match="not an object"):
        parse_page([EXAMPLE, "x"], None)


def test_the_next_cursor_comes_from_the_link_header() -> None:
    page = parse_page([EXAMPLE], LINK)
    assert page.next_cursor == "v1_12077215967"
    assert len(page.deliveries) == 1
    prev_only = LINK.replace('rel="next"', 'rel="prev"')
    assert next_cursor(prev_only) is None
    assert next_cursor(None) is None
    assert next_cursor('<https://api.github.com/app/hook/deliveries>; rel="next"') is None
