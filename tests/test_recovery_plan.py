"""The recovery decision, pure: per guid, requested or skipped with its reason, and where the
checkpoint may move."""

from __future__ import annotations

from github_app.github.hook_deliveries import LoggedDelivery
from github_app.recovery.plan import CHECKPOINT_OVERLAP, REDELIVERY_GRACE, Skip, plan_round
from github_app.recovery.store import RequestRecord

NOW = 1_800_000_000.0
WINDOW = 300.0

_ids = iter(range(1, 10_000))


def attempt(
    guid: str, at: float, status_code: int = 503, event: str = "issues", action: str = "opened"
) -> LoggedDelivery:
    return LoggedDelivery(
        id=next(_ids),
        guid=guid,
        delivered_at=at,
        redelivery=False,
        status="x",
        status_code=status_code,
        event=event,
        action=action,
        installation_id=42,
        repository_id=1,
    )


def plan(
    deliveries: list[LoggedDelivery],
    *,
    known: frozenset[str] = frozenset(),
    records: dict[str, RequestRecord] | None = None,
    max_requests: int = 100,
    max_attempts: int = 3,
    event: str | None = None,
):  # type: ignore[no-untyped-def]
    records = records or {}
    return plan_round(
        deliveries,
        knows=known.__contains__,
        record=records.get,
        now=NOW,
        window=WINDOW,
        max_attempts=max_attempts,
        max_requests=max_requests,
        event=event,
    )


def test_requests_each_failed_unadmitted_guid_once_oldest_first_with_its_newest_attempt() -> None:
    b_first = attempt("b", NOW - 500)
    a_only = attempt("a", NOW - 400)
    b_again = attempt("b", NOW - 100, status_code=0)
    result = plan([b_again, a_only, b_first])
    assert [c.guid for c in result.to_request] == ["b", "a"]
    assert result.to_request[0].delivery_id == b_again.id
    assert (result.seen, result.guids, result.failed) == (3, 2, 2)


def test_never_requests_a_guid_with_any_successful_attempt() -> None:
    result = plan([attempt("a", NOW - 50, 202), attempt("a", NOW - 100, 503)])
    assert result.to_request == ()
    assert result.skipped == {Skip.DELIVERED: 1}
    assert result.failed == 0


def test_skips_a_guid_the_queue_admitted() -> None:
    result = plan([attempt("a", NOW - 50, 0)], known=frozenset({"a"}))
    assert result.to_request == ()
    assert result.skipped == {Skip.ADMITTED: 1}


def test_a_guid_requested_within_the_window_waits_and_holds_the_checkpoint() -> None:
    records = {"a": RequestRecord(1, NOW - WINDOW + 1)}
    result = plan([attempt("a", NOW - 600), attempt("z", NOW - 10, 202)], records=records)
    assert result.to_request == ()
    assert result.skipped == {Skip.REQUESTED: 1, Skip.DELIVERED: 1}
    assert result.checkpoint(None) == NOW - 600


def test_after_the_window_a_guid_whose_redelivery_failed_is_requested_again() -> None:
    records = {"a": RequestRecord(1, NOW - WINDOW)}
    result = plan([attempt("a", NOW - 600), attempt("a", NOW - WINDOW + 2)], records=records)
    assert [(c.guid, c.attempts) for c in result.to_request] == [("a", 1)]


def test_with_no_attempt_since_the_request_a_short_window_waits_for_the_grace() -> None:
    records = {"a": RequestRecord(1, NOW - 30)}
    short = plan_round(
        [attempt("a", NOW - 600)],
        knows=lambda guid: False,
        record=records.get,
        now=NOW,
        window=5.0,
        max_attempts=3,
        max_requests=10,
    )
    assert short.to_request == () and short.skipped == {Skip.REQUESTED: 1}
    records = {"a": RequestRecord(1, NOW - REDELIVERY_GRACE)}
    late = plan_round(
        [attempt("a", NOW - 600)],
        knows=lambda guid: False,
        record=records.get,
        now=NOW,
        window=5.0,
        max_attempts=3,
        max_requests=10,
    )
    assert [c.guid for c in late.to_request] == ["a"]  # GitHub lost it: ask again


def test_at_the_attempt_limit_a_guid_is_given_up_once_and_then_skipped() -> None:
    records = {"a": RequestRecord(3, NOW - WINDOW - 1)}
    result = plan([attempt("a", NOW - 100)], records=records)
    assert result.to_request == ()
    assert [c.guid for c in result.give_up] == ["a"]
    records = {"a": RequestRecord(3, NOW, given_up=True)}
    again = plan([attempt("a", NOW - 100)], records=records)
    assert again.give_up == ()
    assert again.skipped == {Skip.GIVEN_UP: 1}
    assert again.checkpoint(None) == NOW - 100 - CHECKPOINT_OVERLAP


def test_the_cap_leaves_the_newest_for_later_and_they_hold_the_checkpoint() -> None:
    deliveries = [attempt(f"g{i}", NOW - 1000 + 100 * i) for i in range(5)]
    result = plan(deliveries, max_requests=2)
    assert [c.guid for c in result.to_request] == ["g0", "g1"]
    assert result.skipped == {Skip.OVER_CAP: 3}
    assert result.checkpoint(None) == NOW - 800  # g2, the oldest left


def test_an_event_filter_skips_other_events() -> None:
    result = plan([attempt("a", NOW - 5, event="star", action="created")], event="issues")
    assert result.to_request == ()
    assert result.skipped == {Skip.OTHER_EVENT: 1}


def test_checkpoint_moves_to_the_newest_attempt_less_the_overlap_and_never_back() -> None:
    result = plan([attempt("a", NOW - 10, 202), attempt("b", NOW - 500)])
    assert result.checkpoint(None) == NOW - 10 - CHECKPOINT_OVERLAP
    assert result.checkpoint(NOW) == NOW
    (b,) = result.to_request
    assert result.checkpoint(None, unrequested=[b]) == NOW - 500  # a request not sent holds


def test_an_empty_log_keeps_the_checkpoint() -> None:
    result = plan([])
    assert result.checkpoint(123.0) == 123.0
    assert result.checkpoint(None) is None
