"""The worker command is the composition root; the modules it wires import no cycle.

The import graph is read from the source (every import statement, including those
inside functions and under TYPE_CHECKING, which can hide a cycle from a plain import).
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
from pathlib import Path

import lethe
import policy
from lethe.agents.assign import AGENT_NAME, LOCATIONS_TABLE
from lethe.agents.enforce import AGENT_NAME as ENFORCE_AGENT
from lethe.agents.replays import TABLE as REPLAY_MARKS_TABLE
from lethe.commands.worker import build_worker_app
from lethe.faust_store import LOCATIONS as FAUST_LOCATIONS
from lethe.faust_store import ROWS, SUBJECTS
from lethe.policy_file import load_policy
from lethe.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def project_modules() -> dict[str, Path]:
    """Every module of `lethe` (with `lethe.agents` and `lethe.topics`) and `policy`."""
    found: dict[str, Path] = {}
    for package in (lethe, policy):
        found[package.__name__] = Path(str(package.__file__))
        for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            spec = importlib.util.find_spec(info.name)
            assert spec is not None and spec.origin is not None, info.name
            found[info.name] = Path(spec.origin)
    return found


def imported_names(source: Path, module: str, is_package: bool) -> set[str]:
    """The dotted names `source` imports anywhere: `from a import b` gives `a` and `a.b`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                anchor = parts if is_package else parts[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package importing its own submodule via
    `from package import submodule` is no edge to itself)."""
    modules = project_modules()
    return {
        name: (imported_names(path, name, path.name == "__init__.py") & modules.keys()) - {name}
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycle_among_lethe_agents_topics_and_policy() -> None:
    graph = import_graph()
    assert {"lethe.app", "lethe.agents", "lethe.agents.assign", "lethe.topics"} <= set(graph)
    assert cycles(graph) == []


def test_only_the_worker_command_imports_the_agents() -> None:
    graph = import_graph()
    importers = {
        name
        for name, targets in graph.items()
        if "lethe.agents" in targets and not name.startswith("lethe.agents")
    }
    assert importers == {"lethe.commands.worker"}
    assert not {"lethe.app", "lethe.commands.worker"} & graph["lethe.agents.assign"]


def test_nothing_imports_the_bare_agents_or_topics_names() -> None:
    """`agents` and `topics` are importable from a checkout, but the wheel has only lethe.*."""
    sources = [*ROOT.glob("lethe/**/*.py"), *ROOT.glob("policy/**/*.py")]
    sources += [*ROOT.glob("agents/**/*.py"), *ROOT.glob("topics/**/*.py")]
    sources += [*ROOT.glob("tests/**/*.py"), *ROOT.glob("bench/**/*.py")]
    bare = {
        str(source.relative_to(ROOT)): sorted(
            name
            for name in imported_names(source, "", False)
            if name.split(".")[0] in {"agents", "topics"}
        )
        for source in sources
    }
    assert {file: names for file, names in bare.items() if names} == {}


def test_the_worker_app_assigns_the_change_topics_to_its_own_subject_events(
    tmp_path: Path,
) -> None:
    names = ["hosting.public.customers", "hosting.public.orders"]
    settings = Settings(data_dir=tmp_path, internal_partitions=5)
    policy = load_policy(ROOT / "config" / "policy.yaml")
    app = build_worker_app(settings, "lethe-unit-wiring", policy, names, 3)
    agent = app.agents[AGENT_NAME]
    assert agent.channel is app.change_topic
    assert list(app.change_topic.topics) == names
    assert list(app.subject_events.topics) == ["lethe-unit-wiring-subject-events"]
    assert app.subject_events.partitions == 5
    locations = app.tables[LOCATIONS_TABLE]
    assert locations.partitions == 3, "co-partitioned with the change topics"
    assert (locations.key_serializer, locations.value_serializer) == ("raw", "raw")
    assert locations.changelog_topic.get_topic_name() == "lethe-unit-wiring-locations-changelog"
    marks = app.tables[REPLAY_MARKS_TABLE]
    assert marks.partitions == 3, "co-partitioned with the change topics"


def test_the_worker_app_enforces_from_its_subject_events_with_state_partitioned_like_them(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, internal_partitions=5)
    policy = load_policy(ROOT / "config" / "policy.yaml")
    app = build_worker_app(settings, "lethe-unit-enforce", policy, ["hosting.public.orders"], 3)
    agent = app.agents[ENFORCE_AGENT]
    assert agent.channel is app.subject_events
    state = {name: app.tables[name] for name in (ROWS, SUBJECTS, FAUST_LOCATIONS)}
    assert LOCATIONS_TABLE not in state, "no clash with the assign agent's table"
    assert {table.partitions for table in state.values()} == {5}
    assert app.tables[LOCATIONS_TABLE].partitions == 3


def test_with_enforce_off_the_worker_app_only_assigns(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, enforce=False)
    policy = load_policy(ROOT / "config" / "policy.yaml")
    app = build_worker_app(settings, "lethe-unit-assign", policy, ["hosting.public.orders"], 1)
    assert set(app.agents) == {AGENT_NAME}
    assert set(app.tables) == {LOCATIONS_TABLE, REPLAY_MARKS_TABLE}
