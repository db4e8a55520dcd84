"""Imports point one way: no import cycle, and no import up the layers of the design.

Read from the source with ``ast``, so every import counts: those under
``TYPE_CHECKING`` and those inside functions too. The layers, bottom up
(README's "How an event travels" and each subpackage's docstring say the same):

- base modules, every module at the top of ``github_app`` but config and the
  faces (errors, envelope, processor, event_models, logs, help records and
  texts, redis_link: the one Redis client of a replica, which queue, github,
  recovery and backfill share), import only each other;
- ``queue`` and ``control`` import the base;
- ``config`` (the settings) imports the base and the queue: the queue's and
  the retry policy's defaults are the settings' defaults;
- ``github`` imports the base, config, and the control feedback
  (``control.feedback``: how a request's outcome reaches the controller);
- ``dispatch`` imports queue, control, github (and ``processors``, to load the
  built-ins); ``intake`` imports queue and dispatch; ``backfill`` imports queue,
  github and dispatch (the registry); ``recovery`` imports queue and github;
  ``admin`` reads them all;
- ``processors`` import the base only;
- the faces serve and wire it all: http_guard (uvicorn's protocol with
  deadlines), runtime, server, cli, then ``__main__``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("github_app", "processors")
FACES = (
    "github_app.http_guard",
    "github_app.runtime",
    "github_app.server",
    "github_app.cli",
    "github_app.__main__",
)
SUBPACKAGES = ("queue", "control", "github", "dispatch", "intake", "backfill", "recovery", "admin")
ALL = frozenset({"base", "config", "processors", *SUBPACKAGES, *FACES})
ALLOWED: Mapping[str, frozenset[str]] = {
    "base": frozenset({"base"}),
    "processors": frozenset({"base", "processors"}),
    "queue": frozenset({"base", "queue"}),
    "control": frozenset({"base", "control"}),
    "config": frozenset({"base", "queue"}),
    # the package github_app.control runs first (it imports nothing)
    "github": frozenset(
        {"base", "config", "github", "github_app.control", "github_app.control.feedback"}
    ),
    "dispatch": frozenset(
        {"base", "config", "queue", "control", "github", "dispatch", "processors"}
    ),
    "intake": frozenset({"base", "config", "queue", "dispatch", "intake"}),
    "backfill": frozenset({"base", "config", "queue", "github", "dispatch", "backfill"}),
    "recovery": frozenset({"base", "config", "queue", "github", "recovery"}),
    "admin": frozenset(
        {
            "base",
            "config",
            "queue",
            "control",
            "github",
            "dispatch",
            "intake",
            "backfill",
            "recovery",
            "admin",
        }
    ),
    # each face may import everything below it, never a face after it
    **{face: ALL - set(FACES[index + 1 :]) for index, face in enumerate(FACES)},
}


def modules() -> dict[str, Path]:
    """Every module of the packages by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """Our modules ``name`` imports, anywhere in it, with the packages that importing runs."""
    known = set(known)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    # Importing a.b.c runs the packages a and a.b first, unless they are the importer's own
    # (those are already running when it is imported).
    own = {".".join(package[:end]) for end in range(1, len(package) + 1)}
    found = set(targets)
    for target in targets:
        parts = target.split(".")
        found.update({".".join(parts[:end]) for end in range(1, len(parts))} - own)
    return {target for target in found if target in known and target != name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, found) for name, path in found.items()}


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def layer(name: str) -> str:
    if name == "github_app.config":
        return "config"
    if name in FACES:
        return name
    parts = name.split(".")
    if parts[0] == "processors":
        return "processors"
    if len(parts) >= 2 and parts[1] in SUBPACKAGES:
        return parts[1]
    if parts[0] == "github_app" and len(parts) <= 2:
        return "base"  # the package itself or a module at its top
    raise AssertionError(f"{name} belongs to no layer: add it to tests/test_layering.py")


def upward_imports(graph: Mapping[str, Iterable[str]]) -> list[str]:
    wrong = []
    for source, targets in sorted(graph.items()):
        allowed = ALLOWED[layer(source)]
        for target in sorted(targets):
            if layer(target) not in allowed and target not in allowed:
                wrong.append(f"{source} ({layer(source)}) imports {target} ({layer(target)})")
    return wrong


def test_the_package_has_no_import_cycle_not_even_under_type_checking() -> None:
    assert cycles(import_graph()) == []


def test_every_import_points_down_the_layers() -> None:
    assert upward_imports(import_graph()) == []


def test_the_graph_sees_type_checking_and_function_level_imports() -> None:
    graph = import_graph()
    assert "github_app.admin.status" in graph["github_app.runtime"]
    assert "processors" in graph["github_app.dispatch.registry"]  # imported inside load()
    assert "github_app.queue" in graph["github_app.runtime"]  # the package runs first


def test_the_checks_report_a_cycle_and_an_upward_import() -> None:
    graph = {
        "github_app.queue.memory": {"github_app.admin.status"},
        "github_app.admin.status": {"github_app.queue.memory"},
    }
    assert cycles(graph) == [["github_app.admin.status", "github_app.queue.memory"]]
    assert upward_imports(graph) == [
        "github_app.queue.memory (queue) imports github_app.admin.status (admin)"
    ]
