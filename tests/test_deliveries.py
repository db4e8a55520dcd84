"""Unit tests for github_app.queue.deliveries.RecentDeliveries."""

from __future__ import annotations

import pytest

from github_app.queue.deliveries import RecentDeliveries


def test_remembered_delivery_is_contained_and_unknown_one_is_not() -> None:
    recent = RecentDeliveries(capacity=10)
    recent.remember("a")
    assert "a" in recent
    assert "b" not in recent
    assert len(recent) == 1


def test_remembering_the_same_id_twice_keeps_one_entry() -> None:
    recent = RecentDeliveries(capacity=10)
    recent.remember("a")
    recent.remember("a")
    assert len(recent) == 1


def test_forget_removes_a_delivery_so_a_redelivery_is_accepted_again() -> None:
    recent = RecentDeliveries(capacity=10)
    recent.remember("a")
    recent.remember("b")
    recent.forget("a")
    assert "a" not in recent
    assert "b" in recent
    assert len(recent) == 1


def test_forgetting_an_unknown_delivery_is_harmless() -> None:
    recent = RecentDeliveries(capacity=10)
    recent.remember("a")
    recent.forget("never-seen")
    assert "a" in recent
    assert len(recent) == 1


def test_beyond_capacity_the_oldest_delivery_is_forgotten() -> None:
    recent = RecentDeliveries(capacity=3)
    for delivery in ("a", "b", "c", "d"):
        recent.remember(delivery)
    assert len(recent) == 3
    assert "a" not in recent
    assert all(d in recent for d in ("b", "c", "d"))
    recent.remember("e")
    assert "b" not in recent
    assert len(recent) == 3


def test_remembering_again_refreshes_so_the_next_oldest_is_evicted_instead() -> None:
    recent = RecentDeliveries(capacity=3)
    recent.remember("a")
    recent.remember("b")
    recent.remember("c")
    recent.remember("a")  # a is now the newest
    recent.remember("d")
    assert "a" in recent
    assert "b" not in recent
    assert "c" in recent
    assert "d" in recent


def test_capacity_of_one_keeps_only_the_latest() -> None:
    recent = RecentDeliveries(capacity=1)
    recent.remember("a")
    recent.remember("b")
    assert "a" not in recent
    assert "b" in recent


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        RecentDeliveries(capacity=0)


def test_non_string_membership_check_is_simply_false() -> None:
    recent = RecentDeliveries(capacity=2)
    recent.remember("1")
    assert 1 not in recent


def test_a_large_memory_forgets_its_oldest_ids_a_batch_at_a_time() -> None:
    recent = RecentDeliveries(capacity=64 * 100)  # batches of 100
    for n in range(6400):
        recent.remember(str(n))
    recent.remember("0")  # remembered again: now the newest
    recent.forget("5")
    assert len(recent) == 6399
    recent.remember("new")
    recent.remember("newer")
    assert len(recent) == 6301  # 6,401 > capacity: the oldest 100 are forgotten at once
    assert all(str(n) not in recent for n in range(1, 102))
    assert all(str(n) in recent for n in range(102, 6400))
    assert "0" in recent and "new" in recent and "newer" in recent
    for n in range(6400, 20_000):
        recent.remember(str(n))
    assert 6301 <= len(recent) <= 6400
    assert "19999" in recent and "14000" in recent and "6400" not in recent
