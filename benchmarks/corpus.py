"""A realistic, randomised stream of webhook deliveries built from GitHub's example payloads.

GitHub's examples (the npm package ``@octokit/webhooks-examples``, file
``api.github.com/index.json``) name the same few users, repositories, ids and
SHAs over and over; compressing them as they are flatters any ratio. Here each
delivery comes from a world of organisations, each with its own installation,
repositories and members (a few large orgs send most of the traffic), and every
name, id, node id, number, SHA, timestamp, title and body is drawn at random,
consistently within one delivery (a login in ``sender`` is the same login in
every URL), and one repository's object is the same across its deliveries, as
it is on GitHub.

Get the examples (npm only, nothing else)::

    cd /tmp && npm pack @octokit/webhooks-examples && tar xzf octokit-webhooks-examples-*.tgz

Write training samples (one compact JSON body per line) for
``python -m github_app.queue.compression train``::

    python -m benchmarks.corpus --examples /tmp/package/api.github.com/index.json \\
        --seed 1 --count 20000 --out /tmp/webhooks-train.jsonl
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import random
import re
import string
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# How often each event reaches an issue-automation app of a large org (deliveries per 100).
EVENT_MIX: dict[str, float] = {
    "issues": 30,
    "issue_comment": 25,
    "pull_request": 10,
    "push": 6,
    "check_run": 5,
    "workflow_run": 4,
    "pull_request_review": 3,
    "label": 3,
    "star": 3,
    "watch": 2,
    "create": 2,
    "pull_request_review_comment": 2,
    "release": 1,
    "milestone": 1,
    "installation": 0.5,
    "installation_repositories": 0.3,
    "member": 0.2,
}

HEX40 = re.compile(r"^[0-9a-f]{40}$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")
WORDS_TEXT = (
    "crash error when opening the settings page after upgrade login fails on mobile "
    "docs typo in readme feature request add dark mode support for export to csv slow "
    "build times memory leak in worker timeout while syncing repositories broken link "
    "please add an option to configure retries api returns 500 for large payloads "
    "the dashboard does not refresh unexpected behaviour with unicode file names "
    "regression since last release steps to reproduce expected actual environment "
    "version os browser logs attached stack trace thanks for the great project"
)
WORDS = tuple(WORDS_TEXT.split())


@dataclass(frozen=True)
class Sample:
    event: str
    action: str | None
    installation_id: int
    body: bytes


@dataclass
class Repo:
    name: str
    id: int
    node_id: str


@dataclass
class Org:
    login: str
    id: int
    node_id: str
    installation_id: int
    repos: list[Repo]
    members: list[tuple[str, int]]


def _node_id(rng: random.Random, prefix: str, length: int = 24) -> str:
    raw = prefix.encode() + bytes(rng.getrandbits(8) for _ in range(length))
    return base64.b64encode(raw).decode()[:length].rstrip("=")


def _name(rng: random.Random) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(5, 14)))


def make_world(rng: random.Random, orgs: int) -> list[Org]:
    world = []
    for index in range(orgs):
        repos = [
            Repo(_name(rng) + "-" + _name(rng), rng.randint(10**7, 9 * 10**8), _node_id(rng, "R"))
            for _ in range(rng.randint(1, 25))
        ]
        members = [(_name(rng), rng.randint(10**5, 2 * 10**8)) for _ in range(rng.randint(3, 60))]
        world.append(
            Org(
                login=_name(rng) + f"-org{index}",
                id=rng.randint(10**6, 2 * 10**8),
                node_id=_node_id(rng, "O"),
                installation_id=rng.randint(10**6, 9 * 10**7),
                repos=repos,
                members=members,
            )
        )
    return world


class PayloadFactory:
    """Randomised deliveries; ``seed`` decides everything, so train and test sets differ by seed."""

    def __init__(self, examples_path: Path, seed: int, *, orgs: int = 300) -> None:
        catalogue = json.loads(examples_path.read_text("utf-8"))
        self._examples = {
            entry["name"]: [e for e in entry["examples"] if isinstance(e, dict)]
            for entry in catalogue
            if entry["name"] in EVENT_MIX
        }
        self._events = [name for name in EVENT_MIX if self._examples.get(name)]
        self._weights = [EVENT_MIX[name] for name in self._events]
        self._rng = random.Random(seed)
        self.world = make_world(self._rng, orgs)
        # A few large orgs send most deliveries (Zipf-like), as in a real burst.
        self._org_weights = [1.0 / (rank + 1) for rank in range(len(self.world))]

    def samples(self, count: int) -> Iterator[Sample]:
        for _ in range(count):
            yield self.sample()

    def sample(self) -> Sample:
        rng = self._rng
        event = rng.choices(self._events, self._weights)[0]
        example = copy.deepcopy(rng.choice(self._examples[event]))
        org = rng.choices(self.world, self._org_weights)[0]
        repo = rng.choice(org.repos)
        body = self._randomise(example, org, repo)
        action = example.get("action")
        return Sample(event, action if isinstance(action, str) else None, org.installation_id, body)

    def _randomise(self, payload: dict[str, Any], org: Org, repo: Repo) -> bytes:
        rng = self._rng
        ids: dict[int, int] = {}
        strings: dict[str, str] = {}
        names: dict[str, str] = {}
        old_repo = payload.get("repository") if isinstance(payload.get("repository"), dict) else {}
        owner = old_repo.get("owner") if isinstance(old_repo.get("owner"), dict) else {}
        if old_repo:
            ids[old_repo.get("id", -1)] = repo.id
            strings[old_repo.get("node_id", "")] = repo.node_id
            names[str(old_repo.get("full_name", ""))] = f"{org.login}/{repo.name}"
            names[str(old_repo.get("name", ""))] = repo.name
        if owner:
            ids[owner.get("id", -1)] = org.id
            strings[owner.get("node_id", "")] = org.node_id
            names[str(owner.get("login", ""))] = org.login
        numbers: dict[int, int] = {}

        def walk(value: Any, key: str) -> Any:
            if isinstance(value, dict):
                return {k: walk(v, k) for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v, key) for v in value]
            if isinstance(value, bool) or value is None:
                return value
            if isinstance(value, int):
                if key == "id" or key.endswith("_id"):
                    return ids.setdefault(value, rng.randint(10**6, 2 * 10**9))
                if key == "number":
                    return numbers.setdefault(value, rng.randint(1, 20000))
                return value
            if isinstance(value, str):
                if key == "login":
                    if value not in names:
                        names[value] = rng.choice(org.members)[0]
                    return names[value]
                if key == "node_id" or HEX40.match(value):
                    if value not in strings:
                        strings[value] = (
                            f"{rng.getrandbits(160):040x}"
                            if HEX40.match(value)
                            else _node_id(rng, value[:2], len(value))
                        )
                    return strings[value]
                if TIMESTAMP.match(value):
                    return (
                        f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
                        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:"
                        f"{rng.randint(0, 59):02d}Z"
                    )
                if key == "title":
                    return " ".join(rng.choices(WORDS, k=rng.randint(3, 12))).capitalize()
                if key in ("body", "message") and value:
                    return " ".join(rng.choices(WORDS, k=rng.randint(5, 150)))
            return value

        randomised = walk(payload, "")
        randomised["installation"] = {"id": org.installation_id, "node_id": _node_id(rng, "I")}
        text = json.dumps(randomised, separators=(",", ":"))
        # URLs repeat names, ids and numbers; keep them consistent with the fields.
        for old, new in sorted(names.items(), key=lambda pair: -len(pair[0])):
            if len(old) >= 3:
                text = text.replace(f"/{old}", f"/{new}").replace(f"{old}/", f"{new}/")
        for old_id, new_id in ids.items():
            if isinstance(old_id, int) and old_id >= 1000:
                text = text.replace(f"/{old_id}", f"/{new_id}")
        for old_number, new_number in numbers.items():
            for path in ("issues", "pull", "pulls", "milestones"):
                for end in ('"', "/"):
                    text = text.replace(f"/{path}/{old_number}{end}", f"/{path}/{new_number}{end}")
        return text.encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=Path, required=True, help="webhooks-examples index.json")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--out", type=Path, required=True, help="JSON lines, one body per line")
    args = parser.parse_args(argv)
    factory = PayloadFactory(args.examples, args.seed)
    with args.out.open("wb") as out:
        for sample in factory.samples(args.count):
            out.write(sample.body + b"\n")
    print(f"wrote {args.count} payloads to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
