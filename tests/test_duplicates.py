"""processors.duplicates (and processors.similarity) through the real server and directly."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

import processors
from processors.duplicates import (
    PROCESS_FROM,
    SIMILARITY,
    DuplicatesConfig,
    DuplicatesFacts,
    DuplicatesState,
    Verdict,
    decide,
    in_process_if_large,
    load_similarity,
    render,
)
from processors.issue_api import marker
from processors.similarity import (
    Match,
    SimilarityIndex,
    features,
    features_many,
    features_packed,
    unpack,
)
from tests.conftest import APP_SLUG, make_settings, running_app
from tests.deliveries import issue_event, signed
from tests.processor_helpers import ISSUE_URL, REPO, api_calls, use_config, writes

pytestmark = pytest.mark.anyio

CORPUS: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "data" / "issue_corpus.json").read_text("utf-8")
)
CONFIG = "labeler: false\nduplicates:\n"
CONFIG_GET = ("GET", f"/repos/{REPO}/contents/.github/auto-issue-processor.yml", None)
LIST_GET = ("GET", f"/repos/{REPO}/issues?state=open&per_page=100&page=1&sort=created", None)
CRASH = ("App crashes on startup after update to version 2.0", "Since 2.0 it crashes at startup.")
UNRELATED = ("Translate the UI into Japanese", "It would help users in Japan.")


def corpus_index() -> SimilarityIndex:
    index = SimilarityIndex()
    index.add_many((item["number"], features(item["title"], item["body"])) for item in CORPUS)
    return index


def opened(title: str, body: str | None, number: int = 200, **kwargs: Any) -> dict[str, Any]:
    payload = issue_event(title=title, body=body, number=number, labels=[], **kwargs)
    payload["issue"]["created_at"] = "2026-01-02T03:04:05Z"
    return payload


def fake_github(github: respx.MockRouter, comments: list[str] | None = None) -> respx.Route:
    listing = github.get(ISSUE_URL).mock(
        return_value=httpx.Response(200, json=[*CORPUS, {"number": 99, "pull_request": {}}])
    )
    github.get(url__regex=rf"{ISSUE_URL}/\d+/comments").mock(
        return_value=httpx.Response(200, json=[{"body": b} for b in comments or []])
    )
    github.post(url__regex=rf"{ISSUE_URL}/\d+/comments").mock(
        return_value=httpx.Response(201, json={})
    )
    github.post(url__regex=rf"{ISSUE_URL}/\d+/labels").mock(
        return_value=httpx.Response(200, json=[])
    )
    return listing


async def deliver(private_key: str, *payloads: dict[str, Any]) -> DuplicatesState:
    async with running_app(make_settings(private_key)) as app:
        for payload in payloads:
            assert (await app.post(signed(payload, "issues"))).status_code == 202
            await app.settle()
        assert app.runtime.runner.stats.failed["duplicates"] == 0
        state = app.runtime.runner.states["duplicates"]
    assert isinstance(state, DuplicatesState)
    return state


# --- ranking --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "body", "expected"),
    [
        (*CRASH, 101),
        ("installation docs have a typo", "pip instal is misspelled in the install guide", 102),
        ("Memory usage keeps growing during sync", "Memory leaks while syncing a big folder.", 105),
        ("Email notifications duplicated", "I get each notification email twice.", 111),
        ("Add a dark theme", "Please add dark mode.", 103),
        ("Uploading big files fails", "Upload of a 4 GB file ends with 413.", 115),
    ],
)
def test_the_true_duplicate_ranks_first_and_clears_the_default_threshold(
    title: str, body: str, expected: int
) -> None:
    matches = corpus_index().lookup(features(title, body), k=3)
    assert matches[0].number == expected
    assert matches[0].score >= 0.3
    assert all(m.score < 0.3 for m in matches[1:])


def test_an_unrelated_issue_stays_below_the_default_threshold() -> None:
    matches = corpus_index().lookup(features(*UNRELATED), k=3)
    assert all(m.score < 0.1 for m in matches)


def test_index_follows_additions_edits_and_removals_before_and_after_compaction() -> None:
    index = corpus_index()
    crash = features(*CRASH)
    index.remove(101)
    assert 101 not in [m.number for m in index.lookup(crash)]
    index.add(300, features("Crash at startup in version 2.0", None))
    assert index.lookup(crash)[0].number == 300
    index.add(300, features("Rename the export button", None))  # edited
    assert 300 not in [m.number for m in index.lookup(crash)]
    index.compact()
    assert index.lookup(crash, exclude=108)[0].number != 108
    assert index.lookup(features("Crash on launch since upgrading to 2.0", None)) != []
    assert len(index) == len(CORPUS)


def test_an_identical_text_scores_one_and_the_excluded_number_never_appears() -> None:
    index = corpus_index()
    first = CORPUS[0]
    same = features(first["title"], first["body"])
    assert index.lookup(same)[0] == Match(101, 1.0)
    assert 101 not in [m.number for m in index.lookup(same, exclude=101)]


# --- through the server ---------------------------------------------------------------------


async def test_likely_duplicate_gets_a_comment_with_links_and_the_label(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    fake_github(github)
    state = await deliver(private_key_pem, opened(*CRASH))
    calls = api_calls(github)
    assert calls[:3] == [
        CONFIG_GET,
        LIST_GET,
        (
            "GET",
            f"/repos/{REPO}/issues/200/comments?per_page=100&since=2026-01-02T03%3A04%3A05Z",
            None,
        ),
    ]
    assert calls[3] == (
        "POST",
        f"/repos/{REPO}/issues/200/labels",
        {"labels": ["possible-duplicate"]},
    )
    method, path, body = calls[4]
    assert (method, path) == ("POST", f"/repos/{REPO}/issues/200/comments")
    assert body["body"].startswith("This issue may duplicate:\n\n- #101 (")
    assert "#108" not in body["body"]  # below the threshold
    assert body["body"].endswith(marker("duplicates"))
    assert len(calls) == 5
    assert state.builds == 1
    assert state.pages_listed == 1


async def test_index_is_built_once_and_kept_current_from_events(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    listing = fake_github(github)
    closed = issue_event("closed", number=101, title=CORPUS[0]["title"], labels=[])
    await deliver(
        private_key_pem,
        opened(*UNRELATED, number=200),  # builds the index; nothing similar
        closed,  # the crash report is closed: out of the index
        opened(*CRASH, number=201),  # so nothing to point at
        opened("The UI should be translated to Japanese", None, number=202),  # like #200
    )
    assert listing.call_count == 1
    comments = [call for call in writes(github) if call[1].endswith("/comments")]
    assert [path for _, path, _ in comments] == [f"/repos/{REPO}/issues/202/comments"]
    assert "- #200 (" in comments[0][2]["body"]


async def test_no_comment_below_the_threshold(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    fake_github(github)
    await deliver(private_key_pem, opened(*UNRELATED))
    assert api_calls(github) == [CONFIG_GET, LIST_GET]


async def test_a_higher_threshold_in_the_config_is_respected(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, "labeler: false\nduplicates:\n  threshold: 0.95\n")
    fake_github(github)
    await deliver(private_key_pem, opened(*CRASH))
    assert writes(github) == []


async def test_redelivery_finds_its_marker_and_writes_nothing(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    fake_github(github, comments=[render([Match(101, 0.5)])])
    payload = opened(*CRASH)
    await deliver(private_key_pem, payload, payload)
    assert writes(github) == []


async def test_issue_opened_by_the_app_is_ignored(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    fake_github(github)
    await deliver(private_key_pem, opened(*CRASH, sender=f"{APP_SLUG}[bot]"))
    assert api_calls(github) == []


async def test_invalid_duplicates_section_leaves_it_off_and_lists_the_error(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, "labeler: false\nduplicates:\n  threshold: 2\n  max_candidates: 10\n")
    fake_github(github)
    async with running_app(make_settings(private_key_pem)) as app:
        assert (await app.post(signed(opened(*CRASH), "issues"))).status_code == 202
        await app.settle()
        errors = app.runtime.configs.errors[REPO]
    assert any(e.startswith("duplicates.threshold:") for e in errors)
    assert any(e.startswith("duplicates.max_candidates:") for e in errors)
    # Defaults: duplicates off (no listing); the labeler (on by default) labels the crash.
    assert api_calls(github) == [
        CONFIG_GET,
        ("POST", f"/repos/{REPO}/issues/200/labels", {"labels": ["bug"]}),
    ]


async def test_tokenising_in_a_worker_process_gives_the_same_vectors() -> None:
    texts = [(item["title"], item["body"]) for item in CORPUS]
    packed = await in_process_if_large(features_packed, texts * (PROCESS_FROM // len(texts) + 1))
    vectors = unpack(packed)[: len(texts)]
    for (ids, weights), (want_ids, want_weights) in zip(vectors, features_many(texts), strict=True):
        assert ids.tolist() == want_ids.tolist()
        assert weights.tolist() == want_weights.tolist()


# --- the pure decision, no HTTP ---------------------------------------------------------------


def duplicate_facts(**changes: Any) -> DuplicatesFacts:
    base = DuplicatesFacts("opened", 9, "Crash", None, (), "User", None, False)
    return replace(base, **changes)


MATCHES = [Match(3, 0.8), Match(4, 0.31), Match(5, 0.1)]


def test_decide_reports_matches_at_or_above_the_threshold() -> None:
    verdict = decide(DuplicatesConfig(), duplicate_facts(), MATCHES)
    assert verdict == Verdict([Match(3, 0.8), Match(4, 0.31)], comment=True)
    high = decide(DuplicatesConfig(threshold=0.5), duplicate_facts(), MATCHES)
    assert high.candidates == [Match(3, 0.8)]
    assert decide(DuplicatesConfig(), duplicate_facts(), [Match(5, 0.1)]) == Verdict([], False)


def test_decide_does_not_comment_on_a_bots_issue_or_one_already_labelled() -> None:
    assert decide(DuplicatesConfig(), duplicate_facts(author_type="Bot"), MATCHES).comment is False
    labelled = duplicate_facts(labels=("Possible-Duplicate",))
    assert decide(DuplicatesConfig(), labelled, MATCHES).comment is False


def test_facts_come_from_the_payload() -> None:
    payload = issue_event("edited", number=4, title="T", body="B", labels=["bug"])
    facts = DuplicatesFacts.from_payload(payload)
    assert (facts.action, facts.number, facts.title, facts.body) == ("edited", 4, "T", "B")
    assert (facts.labels, facts.author_type, facts.is_pull_request) == (("bug",), "User", False)


async def test_a_repository_without_open_issues_gets_an_empty_index_not_a_failure(
    github: respx.MockRouter, private_key_pem: str
) -> None:
    use_config(github, CONFIG)
    fake_github(github).mock(return_value=httpx.Response(200, json=[]))
    state = await deliver(private_key_pem, opened(*UNRELATED, number=1))  # no failure counted
    index = state.current(REPO)
    assert index is not None and len(index) == 1  # the new issue itself
    assert writes(github) == []


def test_unpacking_no_documents_gives_no_vectors() -> None:
    assert unpack(features_packed([])) == []


async def test_the_similarity_module_and_numpy_are_imported_on_first_need(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A start does not import them (test_cli checks a real start); the first event that
    # needs them imports them in a worker thread, and the next ones find them there.
    monkeypatch.delitem(sys.modules, SIMILARITY)
    monkeypatch.delattr(processors, "similarity")
    await load_similarity()
    loaded = sys.modules[SIMILARITY]
    assert loaded.SimilarityIndex is not SimilarityIndex  # imported afresh
    await load_similarity()
    assert sys.modules[SIMILARITY] is loaded
