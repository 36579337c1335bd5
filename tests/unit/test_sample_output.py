"""`lethe simulate` over the documented sample prints the documented commands, whatever the
hash seed.

docs/simulate.md explains, line by line, the commands of docs/sample/hosting-6y.commands.jsonl;
this checks the installed command still prints exactly those bytes for
docs/sample/hosting-6y.jsonl (regenerate both with docs/sample/make_sample.py when the policy
changes on purpose, and update the explanation).
"""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "docs" / "sample"
LETHE = Path(sys.executable).parent / "lethe"
"""The console script installed next to the interpreter running the tests."""
UNTIL = "2026-01-01T00:00:00Z"


def simulate_sample(hash_seed: str) -> bytes:
    assert LETHE.exists(), f"{LETHE} is missing: install the project (pip install -e .)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
    done = subprocess.run(
        [str(LETHE), "simulate", "--policy", "config/policy.yaml",
         "--events", str(SAMPLE / "hosting-6y.jsonl"), "--until", UNTIL],
        cwd=ROOT, env={**env, "PYTHONHASHSEED": hash_seed}, capture_output=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, b""), done.stderr.decode()
    return done.stdout


def first_differences(a: bytes, b: bytes, names: tuple[str, str], limit: int = 30) -> str:
    """The first lines of a unified diff of two outputs."""
    diff = difflib.unified_diff(
        a.decode().splitlines(), b.decode().splitlines(), *names, n=2, lineterm=""
    )
    return "\n".join(line for _, line in zip(range(limit), diff, strict=False))


def test_simulate_prints_the_documented_commands_of_the_sample() -> None:
    expected = (SAMPLE / "hosting-6y.commands.jsonl").read_bytes()
    actual = simulate_sample("0")
    if actual != expected:
        pytest.fail(
            f"lethe simulate over docs/sample/hosting-6y.jsonl printed {len(actual.splitlines())}"
            f" lines, docs/sample/hosting-6y.commands.jsonl has {len(expected.splitlines())};"
            " first differences:\n"
            + first_differences(expected, actual, ("hosting-6y.commands.jsonl", "printed")),
            pytrace=False,
        )


def test_simulate_output_does_not_depend_on_the_hash_seed() -> None:
    """Sets of strings iterate in an order that changes with the hash seed: two processes with
    different seeds must still print the same bytes."""
    one, other = simulate_sample("1"), simulate_sample("2")
    assert one, "lethe simulate printed nothing for the sample"
    if one != other:
        pytest.fail(
            "PYTHONHASHSEED=1 and =2 print different commands:\n"
            + first_differences(one, other, ("PYTHONHASHSEED=1", "PYTHONHASHSEED=2")),
            pytrace=False,
        )
