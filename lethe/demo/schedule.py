"""What the policy makes due, and when, for the rows the demo starts with.

The demo reads every row of the demo tables once at its start and runs them through the
same engine and driver as the worker (`policy.simulation.simulate`), as the initial snapshot
the worker reads, under the demo's enforcement clock. The result is every command the worker
should issue up to a horizon, each with the enforcement instant it is issued at; the summary
counts those issued by the clock's now as "due", beside the commands the worker did issue.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson
import psycopg
from psycopg import sql

from policy.enforcement_clock import EnforcementClock
from policy.engine import Engine
from policy.instants import Instant
from policy.model import Policy, Source
from policy.simulation import simulate

EPOCH = date(1970, 1, 1)


@dataclass(frozen=True, slots=True)
class Schedule:
    """Per table (`public.<name>`), the sorted enforcement instants its commands are issued at."""

    issued_at: Mapping[str, Sequence[Instant]]

    def due_by(self, now: Instant) -> dict[str, int]:
        """Commands issued by `now`, by table."""
        return {table: bisect_right(times, now) for table, times in self.issued_at.items()}


def read_rows(
    conn: psycopg.Connection[Any], policy: Policy
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every row of every table the policy names: (table `schema.name`, {column: value}).

    Holds first, then the tables that feed a subject's activity, then the others: the
    schedule is what the policy asks for once the worker has read every table, not what a
    row read before its subject's hold or last contact would get."""
    for table, source in sorted(policy.sources.items(), key=_reading_order):
        schema, name = table.split(".", 1)
        query = sql.SQL("SELECT {columns} FROM {table} ORDER BY 1").format(
            columns=sql.SQL(", ").join(sql.Identifier(column) for column in source.columns),
            table=sql.Identifier(schema, name),
        )
        with conn.cursor() as cursor:
            cursor.execute(query)
            names = [column.name for column in cursor.description or ()]
            for values in cursor:
                yield table, dict(zip(names, values, strict=True))


def _reading_order(item: tuple[str, Source]) -> tuple[int, str]:
    table, source = item
    return (0 if source.hold else 1 if source.activity else 2, table)


def snapshot_line(topic: str, table: str, row: Mapping[str, Any], ts_ms: int) -> bytes:
    """The row as the Debezium snapshot record `lethe simulate` reads (no schema wrapper)."""
    after = {column: _json_value(value) for column, value in row.items()}
    key = {column: after[column] for column in ("id",) if column in after}
    value = {
        "before": None,
        "after": after,
        "source": {"ts_ms": ts_ms, "table": table.split(".", 1)[1], "snapshot": "true"},
        "op": "r",
        "ts_ms": ts_ms,
    }
    return orjson.dumps({"topic": topic, "key": key, "value": value})


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return (value - EPOCH).days
    if isinstance(value, Decimal):
        return str(value)
    return value


def schedule(
    engine: Engine,
    rows: Iterator[tuple[str, Mapping[str, Any]]],
    clock: EnforcementClock,
    wall_start_ms: int,
    until: Instant,
) -> Schedule:
    """The commands the worker issues for `rows`, snapshotted at `wall_start_ms`, up to `until`."""
    policy = engine.policy
    lines = (
        snapshot_line(policy.sources[table].topic, table, row, wall_start_ms) for table, row in rows
    )
    result = simulate(engine, lines, until=until, clock=clock)
    if result.errors:
        first = result.errors[0]
        raise ValueError(f"{len(result.errors)} demo row(s) did not decode: {first.message}")
    issued: dict[str, list[Instant]] = {table: [] for table in policy.sources}
    for command in result.commands:
        issued[command.table].append(command.issued_at)
    return Schedule({table: sorted(times) for table, times in issued.items()})
