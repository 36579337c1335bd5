"""Shared helpers of the engine tests: the shipped demo policy and record builders.

Instants in expected outputs are written out by hand in the tests; the helpers
here only encode inputs (ISO text to Debezium's ms, days since epoch).
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lethe.metrics import WorkerMetrics
from lethe.policy_file import policy_schema
from policy.engine import Engine
from policy.loader import load_policy_text
from policy.model import Policy
from policy.simulation import simulate

ROOT = Path(__file__).resolve().parents[2]
DEMO_POLICY = ROOT / "config" / "policy.yaml"


def load_demo_policy(text: str | None = None) -> Policy:
    """The shipped `config/policy.yaml` (or a edited copy of its text)."""
    if text is None:
        text = DEMO_POLICY.read_text(encoding="utf-8")
    return load_policy_text(text, str(DEMO_POLICY), policy_schema())


@pytest.fixture(scope="session")
def demo_policy() -> Policy:
    return load_demo_policy()


@pytest.fixture(scope="session")
def demo_engine(demo_policy: Policy) -> Engine:
    """The shipped policy compiled once, as a worker compiles it at start."""
    return Engine.compile(demo_policy)


def ms(iso: str) -> int:
    """`2024-02-29T10:00:00Z` as Debezium's ts_ms."""
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def days(iso_date: str) -> int:
    """A date as Debezium's io.debezium.time.Date: days since 1970-01-01."""
    return (date.fromisoformat(iso_date) - date(1970, 1, 1)).days


def micros(iso: str) -> int:
    moment = datetime.fromisoformat(iso).astimezone(UTC)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // (
        datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    )


def record(
    table: str,
    op: str,
    at: str,
    row: Mapping[str, Any] | None = None,
    *,
    before: Mapping[str, Any] | None = None,
    key: Mapping[str, Any] | None = None,
    prefix: str = "hosting",
) -> str:
    """One JSON line as JsonConverter without schemas writes it (`op` c, u, r or d)."""
    image = row if op != "d" else before
    if key is None:
        assert image is not None
        key = {"id": image["id"]}
    value = {
        "op": op,
        "ts_ms": ms(at),
        "before": before,
        "after": row if op != "d" else None,
        "source": {"ts_ms": ms(at), "table": table},
    }
    return json.dumps({"topic": f"{prefix}.public.{table}", "key": key, "value": value})


def tombstone(table: str, key_id: int, prefix: str = "hosting") -> str:
    return json.dumps({"topic": f"{prefix}.public.{table}", "key": {"id": key_id}, "value": None})


def run(policy: Policy, lines: Iterable[str], until: str | None = None) -> list[dict[str, object]]:
    """Simulate and return the commands as `lethe simulate` prints them; no bad lines allowed."""
    end = None
    if until is not None:
        end = ms(until) * 1000
    result = simulate(Engine.compile(policy), list(lines), end)
    assert result.errors == (), result.errors
    return [checked_identity(command.to_json()) for command in result.commands]


COMMAND_NAMESPACE = uuid.UUID("6f1c1d8e-3b52-5d0e-9a57-1e7e5c0a4d21")
"""As docs/commands.md gives it: command ids are UUID v5 in this namespace."""


def checked_identity(command: dict[str, Any]) -> dict[str, Any]:
    """Check a printed command's `command_id` and `stage` as docs/commands.md defines them,
    and return the rest: the rule tests then compare when and what, with hand-worked values.

    The id is UUID v5 of the JSON text `[table, [[column, value], ...], stage, due_at]`;
    the stage of an archive or a delete is its action, that of an anonymise names it.
    """
    document = dict(command)
    command_id = document.pop("command_id")
    stage = document.pop("stage")
    name = json.dumps(
        [document["table"], [[c, v] for c, v in document["key"].items()], stage,
         document["due_at"]],
        separators=(",", ":"), ensure_ascii=False,
    )  # fmt: skip
    assert command_id == str(uuid.uuid5(COMMAND_NAMESPACE, name)), command
    if document["action"] == "anonymise":
        assert stage.startswith(("anonymise:", "ended:")), command
    else:
        assert stage == document["action"], command
    return document


def cmd(
    issued_at: str,
    due_at: str,
    action: str,
    table: str,
    key_id: int,
    subject: str | None,
    purposes: list[str],
    fields: list[str] | None = None,
) -> dict[str, object]:
    """An expected output line of `lethe simulate`."""
    expected: dict[str, object] = {
        "issued_at": issued_at,
        "due_at": due_at,
        "action": action,
        "table": f"public.{table}",
        "key": {"id": key_id},
        "subject": subject,
        "purposes": purposes,
    }
    if fields is not None:
        expected["fields"] = fields
    return expected


@pytest.fixture
def promtool_installed() -> str:
    """promtool's path; FAILS (never skips) without it: the rules and metrics tests must run
    in CI, and `make test` installs it with Debian's prometheus package (`lethe stack up`)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool not found: install Debian's prometheus package (`lethe stack up` does)",
            pytrace=False,
        )
    return path


def scraped(metrics: WorkerMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the worker's registry, as Prometheus would scrape it: (name, labels) ->
    value."""
    text = generate_latest(metrics.registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
