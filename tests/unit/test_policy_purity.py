"""The policy core stays pure: no Kafka, no Lethe runtime, no files, no environment, no clock.

Reads the sources of `policy/` with `ast` (nothing is imported), so an import hidden
inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

POLICY = Path(__file__).resolve().parents[2] / "policy"
MODULES = sorted(POLICY.rglob("*.py"))

FORBIDDEN_IMPORTS = (
    "lethe",
    "faust",
    "aiokafka",
    "confluent_kafka",
    "os",
    "time",
    "pathlib",
    "importlib.resources",
)
CLOCK_READS = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("time", "time"),
    ("time", "time_ns"),
    ("time", "monotonic"),
}


def module_name(path: Path) -> str:
    """The module's path inside `policy/` (`engine.py`, `loader/build.py`)."""
    return path.relative_to(POLICY).as_posix()


def imported_names(tree: ast.AST) -> list[str]:
    """Every module an `import` or `from ... import` names, with `from a import b` as a.b too."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def is_forbidden(name: str) -> bool:
    return any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN_IMPORTS)


def clock_reads(tree: ast.AST) -> list[str]:
    """`datetime.now()`, `date.today()`, `time.time()`, ... also via a module prefix."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value
        owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", None)
        if (owner_name, node.func.attr) in CLOCK_READS:
            found.append(f"line {node.lineno}: {owner_name}.{node.func.attr}()")
    return found


def test_the_policy_package_has_modules_to_check() -> None:
    assert {module_name(path) for path in MODULES} >= {
        "engine.py",
        "events.py",
        "envelope.py",
        "decoding.py",
        "loader/__init__.py",
    }


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_no_policy_module_imports_runtime_io_or_kafka(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    assert [name for name in imported_names(tree) if is_forbidden(name)] == []


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_no_policy_module_reads_the_clock(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    assert clock_reads(tree) == []


def test_the_checks_catch_what_they_are_for() -> None:
    sneaky = ast.parse(
        "def f():\n"
        "    from lethe.policy_file import policy_schema\n"
        "    from importlib import resources\n"
        "    import os.path\n"
        "    return datetime.datetime.now(), date.today(), time.time()\n"
    )
    assert [name for name in imported_names(sneaky) if is_forbidden(name)] == [
        "lethe.policy_file",
        "lethe.policy_file.policy_schema",
        "importlib.resources",
        "os.path",
    ]
    assert len(clock_reads(sneaky)) == 3
