"""A repository's issues as GitHub lists them, for respx: pages, Link headers, labels added.

Issues are copies of GitHub's example issue (tests/fixtures/issues.opened.json)
with their number, title, state and labels changed; every ``pr_every``-th item
is a pull request (GitHub's issue list includes them, with a ``pull_request`` key).
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import respx

from tests.conftest import API
from tests.deliveries import INSTALLATION_ID, fixture


@dataclass
class FakeRepository:
    full_name: str
    count: int
    matching_every: int = 10  # every n-th issue's title says "crash" (the labeler's bug rule)
    pr_every: int = 0
    installation: int = INSTALLATION_ID
    labelled: dict[int, list[str]] = field(default_factory=dict)
    write_order: list[int] = field(default_factory=list)  # issue numbers, as labelled
    reads: Counter[int] = field(default_factory=Counter)  # page -> times listed
    fail_page: dict[int, int] = field(default_factory=dict)  # page -> 502 answers first
    on_page: Callable[[int], None] | None = None

    def issue(self, number: int) -> dict[str, Any]:
        issue = copy.deepcopy(_example())
        owner = self.full_name.split("/")[0]
        issue.update(
            number=number,
            id=1000 + number,
            title=f"The app crashes on #{number}"
            if self.matching_every and number % self.matching_every == 0
            else f"Question number {number}",
            body="",
            state="open",
            labels=[{"name": name} for name in self.labelled.get(number, ())],
            url=f"{API}/repos/{self.full_name}/issues/{number}",
        )
        issue["user"]["login"] = owner
        if self.pr_every and number % self.pr_every == 0:
            issue["pull_request"] = {"url": f"{API}/repos/{self.full_name}/pulls/{number}"}
        return issue

    def route(self, router: respx.MockRouter) -> None:
        base = f"{API}/repos/{self.full_name}"
        router.get(f"{base}/installation").mock(
            return_value=httpx.Response(200, json={"id": self.installation})
        )
        router.get(base).mock(
            return_value=httpx.Response(
                200, json={"full_name": self.full_name, "open_issues_count": self.count}
            )
        )
        router.get(f"{base}/issues").mock(side_effect=self.page)
        router.post(url__regex=rf"{base}/issues/\d+/labels").mock(side_effect=self.add_labels)
        router.get(f"{base}/contents/.github/auto-issue-processor.yml").mock(
            return_value=httpx.Response(404, json={"message": "Not Found"})
        )
        owner = self.full_name.split("/")[0]
        router.get(f"{API}/repos/{owner}/.github/contents/.github/auto-issue-processor.yml").mock(
            return_value=httpx.Response(404, json={"message": "Not Found"})
        )

    def page(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        assert params["per_page"] == "100"
        assert params["sort"] == "created" and params["direction"] == "asc"
        number = int(params.get("page", "1"))
        self.reads[number] += 1
        if self.on_page is not None:
            self.on_page(number)
        if self.fail_page.get(number, 0) > 0:
            self.fail_page[number] -= 1
            return httpx.Response(502, json={"message": "Server Error"})
        first = (number - 1) * 100 + 1
        items = [self.issue(n) for n in range(first, min(self.count, first + 99) + 1)]
        headers = {}
        if first + 100 <= self.count:
            following = request.url.copy_set_param("page", str(number + 1))
            headers["link"] = f'<{following}>; rel="next"'
        return httpx.Response(200, json=items, headers=headers)

    def add_labels(self, request: httpx.Request) -> httpx.Response:
        number = int(request.url.path.split("/")[-2])
        labels = json.loads(request.content)["labels"]
        self.labelled.setdefault(number, []).extend(labels)
        self.write_order.append(number)
        return httpx.Response(200, json=[{"name": label} for label in labels])

    def matching(self) -> list[int]:
        return [
            n
            for n in range(1, self.count + 1)
            if n % self.matching_every == 0 and not (self.pr_every and n % self.pr_every == 0)
        ]


def _example() -> dict[str, Any]:
    issue: dict[str, Any] = fixture("issues.opened")["issue"]
    return issue
