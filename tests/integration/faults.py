"""The fault harness: a run of the whole chain on the real stack (rows written to the demo
database through SQL, captured by the stack's Debezium connector `hosting`, a `lethe worker`
enforcing under a manual clock, the JDBC sink `lethe-sink` applying its commands), compared
at the end with `lethe simulate` over the same change records under the same clock advances.

A run (`Run`) owns a block of ids in the demo tables; `simulate` replays what Debezium
captured, `expected_state` applies the simulated commands to what the run wrote, and
`database_state` reads what PostgreSQL holds. `tally` counts, for the run's block:
- due: the distinct commands `lethe simulate` issues over the same records and clock;
- issued: the distinct command ids on `lethe.commands`, sends every record of them, and
  duplicated the ids sent more than once (allowed: at least once, same id);
- confirmed: the distinct command ids with a `confirmed` record on `lethe.audit` (kept
  across worker restarts, unlike /metrics);
- lost: due but never issued (must be 0), unexpected: issued but not due (must be 0);
- rows deleted and anonymised in PostgreSQL, against what the simulation leaves.
`safety_violations` checks the rules no fault may break on what the worker sent: no command
for a subject under a legal hold never released, and no delete of a legal-obligation row
(invoices, orders) before its period, judged by the clock the worker was under when the
command appeared on `lethe.commands` (the topic's ends are recorded at each advance).

`fault_rows` is the fault tests' data set: a few hundred rows in five demo tables that fall
due before the first advance, between the two advances, or after the last, in groups whose
sizes are the hand-worked expectation (`FAULT_OUTCOME`), and rows of two subjects under a
legal hold never released (`fault_holds`). The stack parts the faults hit are the stack's
own (`lethe.stack`): `kill_part` sends SIGKILL to a part by the pid its stack dir records,
`restore_stack` starts whatever is down and waits for health.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import fastavro
import orjson
import psycopg
import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition

from lethe import stack
from lethe.clock import ManualClockReader, advance_manual_clock
from lethe.errors import StackError
from lethe.settings import Settings
from lethe.stack.base import Part
from lethe.stack.connect import Connect, SinkConnector, SourceConnector
from lethe.stack.process import http, pid_alive
from policy.instants import format_instant, from_datetime
from tests.integration import workers
from tests.integration.workers import (
    Reader,
    WorkerProcess,
    forget_topics,
    quiet,
    serving,
    sink_caught_up,
    topic_ends,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
COMMAND_SCHEMA = fastavro.parse_schema(
    json.loads((ROOT / "schemas" / "retention_command.avsc").read_text(encoding="utf-8"))
)
AUDIT_SCHEMA = fastavro.parse_schema(
    json.loads((ROOT / "schemas" / "audit_record.avsc").read_text(encoding="utf-8"))
)


def at(text: str) -> datetime:
    """An instant in UTC: `2010-06-01` (midnight) or `2010-06-01T10:20:30`."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


Table = dict[int, dict[str, Any]]
"""A table's rows by id."""


@dataclass
class Run:
    """One run: its worker's app id and files, the demo tables its policy names, its block of
    ids (`base` to `base + span - 1`) inside the test module's range `id_range` (every run of
    the module: earlier runs' records stay on the change topics), and its manual clock."""

    app_id: str
    workdir: Path
    policy: Path
    clock: Settings
    """The stack's settings with the run's manual clock."""
    tables: tuple[str, ...]
    """The demo tables the policy names, unqualified."""
    base: int
    span: int
    id_range: tuple[int, int]
    start: datetime
    advances: tuple[datetime, ...]
    """The instants the clock is advanced to, in order."""
    values: dict[str, Table] = field(default_factory=dict)
    """The rows the run wrote, as the database holds them after the run's own writes."""
    commands_start: dict[int, int] = field(default_factory=dict)
    audit_start: dict[int, int] = field(default_factory=dict)
    phase_ends: list[dict[int, int]] = field(default_factory=list)
    """`lethe.commands`' ends at each advance (a record before them was sent earlier)."""

    def topic(self, table: str) -> str:
        return f"hosting.public.{table}"

    def owns(self, row_id: int) -> bool:
        return self.base <= row_id < self.base + self.span

    def in_range(self, row_id: int) -> bool:
        return self.id_range[0] <= row_id <= self.id_range[1]


def new_run(
    settings: Settings,
    app_id: str,
    workdir: Path,
    *,
    base: int,
    span: int,
    id_range: tuple[int, int],
    start: datetime,
    advances: tuple[datetime, ...],
    tables: tuple[str, ...] | None = None,
) -> Run:
    """A run whose policy is `write_policy`'s (only `tables` when given); leftovers of a
    crashed run in its block are deleted; the ends of `lethe.commands` and `lethe.audit`
    recorded."""
    document = write_policy(workdir / "policy.yaml", tables)
    names = tuple(source.split(".", 1)[1] for source in document["sources"])
    clock = replace(
        settings,
        clock_mode="manual",
        clock_start=from_datetime(start),
        clock_topic=f"{app_id}-clock",
    )
    run = Run(
        app_id,
        workdir,
        workdir / "policy.yaml",
        clock,
        names,
        base,
        span,
        id_range,
        start,
        advances,
    )
    delete_rows(settings, run)
    run.commands_start = topic_ends(settings, "lethe.commands")
    run.audit_start = ends_if_any(settings, "lethe.audit")
    return run


def new_fault_run(
    settings: Settings, app_id_prefix: str, workdir: Path, id_range: tuple[int, int]
) -> Run:
    """A run of the fault data set (`fault_rows`) under its own app id (`app_id_prefix` and a
    random hex id) in a block of 1,000 ids of `id_range` picked by that id."""
    hex_id = uuid.uuid4().hex[:8]
    blocks = (id_range[1] - id_range[0] + 1) // 1000
    return new_run(
        settings,
        f"{app_id_prefix}{hex_id}",
        workdir,
        base=id_range[0] + (int(hex_id, 16) % blocks) * 1000,
        span=1000,
        id_range=id_range,
        start=FAULT_START,
        advances=FAULT_ADVANCES,
        tables=FAULT_TABLES,
    )


def ends_if_any(settings: Settings, topic: str) -> dict[int, int]:
    """`topic_ends`, or nothing when the topic does not exist yet."""
    with Consumer({**quiet(settings), "group.id": "lethe-it-ends"}) as consumer:
        exists = topic in consumer.list_topics(timeout=10).topics
    return topic_ends(settings, topic) if exists else {}


def write_policy(path: Path, tables: tuple[str, ...] | None = None) -> dict[str, Any]:
    """config/policy.yaml with an objected call recording due at `recorded_at` instead of
    `at_once` (under a clock of the past, no seeded demo row falls due: the one `at_once` rule
    would delete seeded call recording 3 whatever the clock); only the sources of `tables`
    when given. The policy document is returned."""
    document = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text(encoding="utf-8"))
    stage = document["sources"]["public.call_recordings"]["rules"][0]["stages"][0]
    assert stage["due"]["then"] == "at_once", "config/policy.yaml's call recordings changed"
    stage["due"]["then"] = "recorded_at"
    if tables is not None:
        document["sources"] = {f"public.{t}": document["sources"][f"public.{t}"] for t in tables}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return dict(document)


def delete_rows(settings: Settings, run: Run) -> None:
    """Delete every row of the run's block from the run's tables."""
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        for table in run.tables:
            conn.execute(
                f"DELETE FROM {table} WHERE id BETWEEN %s AND %s",
                (run.base, run.base + run.span - 1),
            )


def forget_run(settings: Settings, run: Run, marker: str = "") -> None:
    """After a run: let the sink catch up, delete the run's rows, drop its topics (its clock
    topic among them, and every topic whose name holds `marker` when given) and consumer
    group."""
    caught_up = sink_caught_up(settings, [f"lethe.sink.public.{t}" for t in run.tables])
    if not caught_up:
        time.sleep(10)
    delete_rows(settings, run)
    forget_topics(settings, run.app_id, marker)


def start_worker(
    run: Run, partitions: int = 8, *, loglevel: str = "info", **env: str
) -> WorkerProcess:
    """The run's worker: enforcing, under the run's manual clock from its start, logging at
    `loglevel`; `env` adds variables (e.g. LETHE_CONFIRM_TIMEOUT)."""
    return workers.start_worker(
        run.app_id,
        run.workdir,
        run.policy,
        loglevel=loglevel,
        env={
            "LETHE_INTERNAL_PARTITIONS": str(partitions),
            "LETHE_ENFORCE": "on",
            "LETHE_CLOCK": "manual",
            "LETHE_CLOCK_START": format_instant(from_datetime(run.start)),
            "LETHE_CLOCK_TOPIC": f"{run.app_id}-clock",
            **env,
        },
    )


@contextlib.contextmanager
def worker_serving(run: Run, partitions: int = 8, **env: str) -> Iterator[WorkerProcess]:
    with serving(start_worker(run, partitions, **env)) as handle:
        yield handle


def advance(settings: Settings, run: Run, to: datetime) -> None:
    """Advance the run's clock to `to`, the ends of `lethe.commands` recorded first."""
    run.phase_ends.append(topic_ends(settings, "lethe.commands"))
    advance_manual_clock(run.clock, from_datetime(to))


class ChangeTopics:
    """The run's change topics, read from their start: what the worker consumes."""

    def __init__(self, settings: Settings, run: Run) -> None:
        self.run = run
        self.readers = {table: Reader(settings, run.topic(table)) for table in run.tables}

    def changes(self, table: str) -> Counter[int]:
        """How many change events (not tombstones) of each of the run's rows `table`'s topic
        holds, by id."""
        found: Counter[int] = Counter()
        for message in self.readers[table].read():
            if message.value() is None:
                continue
            payload = orjson.loads(message.value())["payload"]
            image = payload["after"] or payload["before"]
            if self.run.owns(image["id"]):
                found[image["id"]] += 1
        return found

    def ours(self, table: str) -> int:
        """How many change events (not tombstones) of the run's rows `table`'s topic holds."""
        return sum(self.changes(table).values())

    def lines(self) -> list[dict[str, Any]]:
        """Every record as a `lethe simulate` line, in the order Debezium sent them."""
        lines = []
        for table in self.run.tables:
            for message in self.readers[table].read():
                if message.value() is None:
                    continue
                value = orjson.loads(message.value())
                lines.append(
                    {
                        "topic": message.topic(),
                        "key": orjson.loads(message.key()),
                        "value": value,
                        "order": (value["payload"]["ts_ms"], message.topic(), message.offset()),
                    }
                )
        lines.sort(key=lambda line: line.pop("order"))
        return lines

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()


def insert(conn: psycopg.Connection[Any], table: str, row: dict[str, Any]) -> None:
    columns = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(row.values()))


def update(conn: psycopg.Connection[Any], table: str, row_id: int, columns: dict[str, Any]) -> None:
    assignments = ", ".join(f"{column} = %s" for column in columns)
    conn.execute(f"UPDATE {table} SET {assignments} WHERE id = %s", (*columns.values(), row_id))


def insert_rows(
    settings: Settings, run: Run, rows: dict[str, list[dict[str, Any]]], expected: Counter[str]
) -> None:
    """Insert `rows` (by table) in one transaction, kept in `run.values`, each counted in
    `expected` (the change events Debezium must bring)."""
    with psycopg.connect(settings.pg_dsn) as conn, conn.transaction():
        for table, written in rows.items():
            run.values.setdefault(table, {})
            for row in written:
                insert(conn, table, row)
                run.values[table][row["id"]] = dict(row)
                expected[table] += 1


def worker_caught_up(settings: Settings, run: Run, worker: WorkerProcess) -> None:
    """Wait until the worker has committed every record now on the change topics, then
    every record then on its subject events topic (so every event so far, and a sweep after
    it, is processed)."""
    consumer = Consumer({**quiet(settings), "group.id": run.app_id, "enable.auto.commit": False})
    try:
        committed_to_end(settings, consumer, [run.topic(t) for t in run.tables], worker)
        time.sleep(2.0)  # a few ticks after the last event
        committed_to_end(settings, consumer, [f"{run.app_id}-subject-events"], worker)
    finally:
        consumer.close()


def committed_to_end(
    settings: Settings, consumer: Consumer, topics: list[str], worker: WorkerProcess
) -> None:
    """Wait until the worker's group has committed `topics` up to their ends now."""
    ends = {topic: topic_ends(settings, topic) for topic in topics}
    partitions = [TopicPartition(t, p) for t, parts in ends.items() for p in parts]
    behind: list[str] = []

    def committed_all() -> bool | None:
        committed = consumer.committed(partitions, timeout=10)
        behind[:] = [
            f"{tp.topic}[{tp.partition}] at {tp.offset} of {ends[tp.topic][tp.partition]}"
            for tp in committed
            if max(tp.offset, 0) < ends[tp.topic][tp.partition]
        ]
        return True if not behind else None

    wait_for(lambda: f"the worker to commit {', '.join(behind)}", committed_all, worker)


def wait_for_debezium(
    topics: ChangeTopics, expected: Counter[str], worker: WorkerProcess | None
) -> None:
    """Wait until the change topics hold `expected` change events of the run's rows per table."""

    def seen() -> bool | None:
        return True if all(topics.ours(t) >= n for t, n in expected.items()) else None

    wait_for(
        lambda: (
            "Debezium's change events of the run's rows: "
            + ", ".join(f"{t} {topics.ours(t)}/{n}" for t, n in sorted(expected.items()))
        ),
        seen,
        worker,
    )


def simulate(run: Run, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`lethe simulate` over `lines` under the run's manual clock, advanced as the worker saw."""
    events = run.workdir / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    with ManualClockReader(run.clock) as reader:
        advances = reader.clock().advances
    assert [a.to for a in advances] == [from_datetime(a) for a in run.advances]
    advances_file = run.workdir / "advances.txt"
    advances_file.write_text(
        "".join(f"{format_instant(a.wall)} {format_instant(a.to)}\n" for a in advances),
        encoding="utf-8",
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("LETHE_")}
    env.update(
        {"LETHE_CLOCK": "manual", "LETHE_CLOCK_START": format_instant(from_datetime(run.start))}
    )
    until = format_instant(from_datetime(run.advances[-1]))
    result = subprocess.run(
        [
            *(sys.executable, "-m", "lethe", "simulate", "--policy", str(run.policy)),
            *("--events", str(events), "--until", until),
            *("--clock-advances", str(advances_file)),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    return [orjson.loads(line) for line in result.stdout.splitlines() if line.strip()]


def anonymised(method: Any, value: Any) -> Any:
    """A column's value once anonymised by the policy's `method` (the demo's two kinds)."""
    if method == "empty":
        return None
    if method == {"coarsen": "month"}:
        return value.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    raise AssertionError(f"no expectation written for anonymise method {method!r}")


def expected_state(run: Run, commands: list[dict[str, Any]]) -> dict[str, Table]:
    """The run's rows once `commands` (in their order) are applied to what the run wrote."""
    policy = yaml.safe_load(run.policy.read_text(encoding="utf-8"))
    state = {table: {i: dict(v) for i, v in rows.items()} for table, rows in run.values.items()}
    for command in commands:
        table = command["table"].split(".", 1)[1]
        row = state.get(table, {}).get(int(command["key"]["id"]))
        if row is None:
            continue
        if command["action"] == "delete":
            del state[table][row["id"]]
        elif command["action"] == "anonymise":
            methods = policy["sources"][command["table"]]["anonymise"]
            for column in command["fields"]:
                row[column] = anonymised(methods[column], row[column])
    return state


def database_state(settings: Settings, run: Run) -> dict[str, Table]:
    """The rows of the run's block in PostgreSQL now, by table and id."""
    low, high = run.base, run.base + run.span - 1
    state: dict[str, Table] = {}
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        for table in run.tables:
            cursor = conn.execute(f"SELECT * FROM {table} WHERE id BETWEEN %s AND %s", (low, high))
            names = [column.name for column in cursor.description or ()]
            state[table] = {row[0]: dict(zip(names, row, strict=True)) for row in cursor}
    return state


def differences(expected: dict[str, Table], actual: dict[str, Table]) -> list[str]:
    """Each (table, id) where the database differs from the expectation, with both."""
    found = []
    for table in sorted(set(expected) | set(actual)):
        want, have = expected.get(table, {}), actual.get(table, {})
        for row_id in sorted(set(want) | set(have)):
            w, h = want.get(row_id), have.get(row_id)
            if w is None or h is None:
                if w != h:
                    found.append(
                        f"{table} id {row_id}: expected {'deleted' if w is None else 'present'}, "
                        f"found {'deleted' if h is None else 'present'}"
                    )
                continue
            changed = {c: (w[c], h.get(c)) for c in w if w[c] != h.get(c)}
            if changed:
                found.append(
                    f"{table} id {row_id}: "
                    + "; ".join(f"{c} expected {e!r}, found {a!r}" for c, (e, a) in changed.items())
                )
    return found


def wait_for_state(settings: Settings, run: Run, expected: dict[str, Table]) -> float:
    """Wait (bounded) until PostgreSQL holds `expected`; the seconds it took (a mismatch left
    at the end is for the caller's `differences` to report)."""
    begin = time.monotonic()

    def agreed() -> bool | None:
        return True if not differences(expected, database_state(settings, run)) else None

    with contextlib.suppress(pytest.fail.Exception):
        wait_for("the database to reach the simulated state", agreed)
    return time.monotonic() - begin


def outcome(run: Run, state: dict[str, Table]) -> dict[tuple[str, int], str]:
    """`deleted`, `anonymised` or `kept` for each row the run wrote, in `state`."""
    result = {}
    for table, written in run.values.items():
        for row_id, values in written.items():
            now = state[table].get(row_id)
            if now is None:
                result[(table, row_id)] = "deleted"
            else:
                same = all(now[column] == value for column, value in values.items())
                result[(table, row_id)] = "kept" if same else "anonymised"
    return result


def decoded(settings: Settings, topic: str, start: dict[int, int], schema: Any) -> Iterator[Any]:
    """The records of `topic` from `start` to its end now, decoded with the Avro `schema`, each
    with its (partition, offset)."""
    reader = Reader(settings, topic, start=start)
    try:
        for message in reader.read():
            record = fastavro.schemaless_reader(io.BytesIO(message.value()), schema)
            yield record, (message.partition(), message.offset())
    finally:
        reader.close()


def live_commands(settings: Settings, run: Run) -> list[dict[str, Any]]:
    """The commands on `lethe.commands` since the run started for rows in the module's id
    range, every record (at least once: a command may be sent more than once, same id), each
    with its `where` (partition, offset)."""
    found = []
    for command, where in decoded(settings, "lethe.commands", run.commands_start, COMMAND_SCHEMA):
        key = command["key"].get("id")
        if isinstance(key, int) and run.in_range(key):
            found.append({**command, "command_id": str(command["command_id"]), "where": where})
    return found


def command_differences(live: list[dict[str, Any]], simulated: list[dict[str, Any]]) -> list[str]:
    """Each command only one of `lethe.commands` and `lethe simulate` has, described by id,
    action, table, key, due instant and subject (and how often the worker sent it)."""
    sends = Counter(c["command_id"] for c in live)
    live_by_id = {c["command_id"]: c for c in live}
    simulated_by_id = {c["command_id"]: c for c in simulated}

    def described(c: dict[str, Any]) -> str:
        return (
            f"{c['action']} {c['table']} id {c['key']['id']} command_id {c['command_id']} "
            f"due {c['due_at']} issued {c['issued_at']} subject {c['subject']}"
        )

    return [
        f"only on lethe.commands (sent {sends[i]} times): {described(live_by_id[i])}"
        for i in sorted(set(live_by_id) - set(simulated_by_id))
    ] + [
        f"only in `lethe simulate`: {described(simulated_by_id[i])}"
        for i in sorted(set(simulated_by_id) - set(live_by_id))
    ]


def check_confirmations(worker: WorkerProcess, simulated: list[dict[str, Any]], run: Run) -> None:
    """Lethe records the deletes and anonymises confirmed from the change stream
    (`lethe_commands_confirmed_total{table,action}`, one per distinct command of the run's
    rows)."""
    expected = Counter(
        (c["table"], c["action"])
        for c in {c["command_id"]: c for c in simulated}.values()
        if c["action"] in ("delete", "anonymise") and run.owns(int(c["key"]["id"]))
    )

    def confirmed() -> dict[tuple[str, str], int]:
        metrics = worker.metrics() or {}
        return {
            (dict(labels)["table"], dict(labels)["action"]): int(value)
            for (name, labels), value in metrics.items()
            if name == "lethe_commands_confirmed_total" and value
        }

    wait_for(
        lambda: f"confirmations {confirmed()} to reach {dict(expected)}",
        lambda: True if confirmed() == dict(expected) else None,
        worker,
    )


def commands_for_rows_in_place(
    settings: Settings, run: Run, present: Mapping[str, Collection[int]]
) -> list[str]:
    """The commands on `lethe.commands` since the run started for the run's own rows or for a
    row `present` in PostgreSQL (ids by table) when the test started, described. Left out: rows
    other tests wrote and deleted before (the worker reads the change topics from their start;
    the fault tests' rows are overdue under any clock of 2010-2016), whose commands change
    nothing in the database."""
    return [
        f"{command['action']} {command['table']} id {command['key'].get('id')}"
        for command, _ in decoded(settings, "lethe.commands", run.commands_start, COMMAND_SCHEMA)
        if isinstance(command["key"].get("id"), int)
        and (
            run.owns(command["key"]["id"])
            or command["key"]["id"] in present.get(command["table"].removeprefix("public."), ())
        )
    ]


def row_ids(settings: Settings, tables: Collection[str]) -> dict[str, set[int]]:
    """The ids of every row of these tables in PostgreSQL now."""
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        return {
            table: {row[0] for row in conn.execute(f"SELECT id FROM {table}").fetchall()}
            for table in tables
        }


def confirmed_ids(settings: Settings, run: Run) -> set[str]:
    """The command ids of the run's rows with a `confirmed` record on `lethe.audit`."""
    return {
        str(record["command_id"])
        for record, _ in decoded(settings, "lethe.audit", run.audit_start, AUDIT_SCHEMA)
        if record["decision"] == "confirmed"
        and isinstance(record["key"].get("id"), int)
        and run.owns(record["key"]["id"])
    }


@dataclass(frozen=True)
class Tally:
    """What a run did with its block's rows, against `lethe simulate` (see the module
    docstring)."""

    due: int
    issued: int
    sends: int
    duplicated: int
    confirmed: int
    to_confirm: int
    """Due deletes and anonymises: what the change stream can confirm."""
    lost: int
    unexpected: int
    deleted: int
    anonymised: int
    expected_deleted: int
    expected_anonymised: int

    def line(self) -> str:
        return (
            f"due {self.due}, issued {self.issued} ({self.sends} sends, {self.duplicated} ids "
            f"sent more than once), confirmed {self.confirmed}/{self.to_confirm}, lost "
            f"{self.lost}, unexpected {self.unexpected}; PostgreSQL: deleted {self.deleted} "
            f"(simulated {self.expected_deleted}), anonymised {self.anonymised} (simulated "
            f"{self.expected_anonymised})"
        )


def settle(
    settings: Settings, run: Run, topics: ChangeTopics
) -> tuple[Tally, list[dict[str, Any]], list[str]]:
    """The end of a fault run: the sink caught up, then `lethe simulate` over what the change
    topics hold compared with PostgreSQL (the simulation's state, and the outcome worked out
    by hand, `fault_outcome`), with the commands the worker sent (the same ids, none lost or
    unexpected, every due delete and anonymise confirmed) and with the safety rules. Returns
    the tally, the commands sent and what is wrong (nothing, when the run held)."""
    sink_topics = [f"lethe.sink.public.{table}" for table in run.tables]
    assert sink_caught_up(settings, sink_topics), "the sink did not catch up within 60 s"
    simulated = simulate(run, topics.lines())
    expected = expected_state(run, simulated)
    wait_for_state(settings, run, expected)
    wait_for_confirmations(settings, run, simulated)
    live = live_commands(settings, run)
    counts = tally(settings, run, live, simulated, expected)
    actual = database_state(settings, run)
    problems = [
        f"PostgreSQL differs from `lethe simulate`: {d}" for d in differences(expected, actual)
    ]
    problems += command_differences(
        [c for c in live if run.owns(int(c["key"]["id"]))],
        [c for c in simulated if run.owns(int(c["key"]["id"]))],
    )
    seen = outcome(run, actual)
    by_hand = fault_outcome()
    for table, wanted in by_hand.items():
        found = Counter(seen[(t, i)] for t, i in seen if t == table)
        if found != wanted:
            problems.append(f"{table}: worked out by hand {dict(wanted)}, found {dict(found)}")
    held = {run.base + h for h in HELD}
    problems += safety_violations(run, live, held)
    if counts.lost or counts.unexpected:
        problems.append(f"commands lost or unexpected: {counts.line()}")
    if counts.confirmed != counts.to_confirm:
        problems.append(f"not every due delete and anonymise confirmed: {counts.line()}")
    return counts, live, problems


def tally(
    settings: Settings,
    run: Run,
    live: list[dict[str, Any]],
    simulated: list[dict[str, Any]],
    expected: dict[str, Table],
) -> Tally:
    """Count the run's commands and rows (the run's block only)."""
    due = {c["command_id"]: c for c in simulated if run.owns(int(c["key"]["id"]))}
    mine = [c for c in live if run.owns(int(c["key"]["id"]))]
    sends = Counter(c["command_id"] for c in mine)
    to_confirm = {i for i, c in due.items() if c["action"] in ("delete", "anonymise")}
    seen = Counter(outcome(run, database_state(settings, run)).values())
    wanted = Counter(outcome(run, expected).values())
    return Tally(
        due=len(due),
        issued=len(sends),
        sends=sum(sends.values()),
        duplicated=sum(1 for n in sends.values() if n > 1),
        confirmed=len(confirmed_ids(settings, run) & to_confirm),
        to_confirm=len(to_confirm),
        lost=len(set(due) - set(sends)),
        unexpected=len(set(sends) - set(due)),
        deleted=seen["deleted"],
        anonymised=seen["anonymised"],
        expected_deleted=wanted["deleted"],
        expected_anonymised=wanted["anonymised"],
    )


def wait_for_confirmations(settings: Settings, run: Run, simulated: list[dict[str, Any]]) -> None:
    """Wait (bounded) until every due delete and anonymise of the run's block is confirmed on
    `lethe.audit` (a shortfall is for the tally to report)."""
    to_confirm = {
        c["command_id"]
        for c in simulated
        if c["action"] in ("delete", "anonymise") and run.owns(int(c["key"]["id"]))
    }
    with contextlib.suppress(pytest.fail.Exception):
        wait_for(
            "the confirmations on lethe.audit",
            lambda: True if to_confirm <= confirmed_ids(settings, run) else None,
        )


LEGAL_PERIODS = {"invoices": ("issued_at", 10), "orders": ("ordered_at", 10)}
"""Legal-obligation tables (accounting: 10 years after the event, config/policy.yaml's
`accounting` purpose, retention-schedule row 12): the column and the years a row must be
kept."""


def safety_violations(run: Run, live: list[dict[str, Any]], held: set[int]) -> list[str]:
    """What the worker sent that no fault may allow: a command for a customer in `held` (under
    a hold never released), or a delete of a legal-obligation row sent while the clock stood
    before the row's period ended (the clock the worker was under when the record reached
    `lethe.commands`, from `run.phase_ends`)."""
    found = []
    clocks = [run.start, *run.advances]
    for command in live:
        table = command["table"].split(".", 1)[1]
        row_id = int(command["key"]["id"])
        if not run.owns(row_id):
            continue
        subject = command["subject"] or ""
        if subject in {f"customer:{c}" for c in held}:
            found.append(f"{command['action']} {table} id {row_id} for {subject}, under a hold")
        if command["action"] != "delete" or table not in LEGAL_PERIODS:
            continue
        column, years = LEGAL_PERIODS[table]
        partition, offset = command["where"]
        phase = sum(1 for ends in run.phase_ends if ends.get(partition, 0) <= offset)
        clock = clocks[phase]
        anchor = run.values[table][row_id][column]
        lawful = anchor.replace(year=anchor.year + years)
        if clock < lawful:
            found.append(
                f"delete {table} id {row_id} sent under the clock {clock:%Y-%m-%d}, "
                f"before {lawful:%Y-%m-%d} ({column} + {years} years)"
            )
    return found


# The fault tests' data set.

FAULT_START = at("2010-01-01")
FAULT_ADVANCES = (at("2013-01-01"), at("2016-01-01"))
FAULT_TABLES = (
    "connection_logs",
    "support_tickets",
    "satisfaction_surveys",
    "invoices",
    "orders",
    "legal_holds",
)
"""The policy's sources in a fault run: five tables of rows and the legal holds."""
HELD = (900, 901)
"""Offsets in the block of the two customers under a hold never released."""
CUSTOMERS = 40
"""The rows' customers: offsets 800 to 839 in the block (no customers row is written)."""

P1Y = (("2010-03-01", "2011-09-01"), ("2012-03-01", "2014-09-01"), ("2015-03-01", "2016-12-01"))
P5Y = (("2006-03-01", "2007-09-01"), ("2008-03-01", "2010-09-01"), ("2011-03-01", "2012-12-01"))
P10Y = (
    ("2001-03-01", "2002-09-01"),
    ("2003-03-01", "2005-09-01"),
    ("2006-03-01", "2007-12-01"),
)
"""For a period of 1, 5 or 10 years, the first and last anchors of the three groups: due
before the first advance, between the advances, after the last."""
GROUPS: dict[str, tuple[str, tuple[tuple[str, str], ...], tuple[int, int, int]]] = {
    # table: (anchor column, the groups' anchors, rows in each group)
    "connection_logs": ("logged_at", P1Y, (40, 40, 20)),  # delete 1 year after
    "support_tickets": ("last_message_at", P5Y, (15, 15, 10)),  # delete 5 years after
    "satisfaction_surveys": ("submitted_at", P1Y, (15, 15, 10)),  # anonymise 1 year after
    "invoices": ("issued_at", P10Y, (15, 15, 10)),  # delete 10 years after
    "orders": ("ordered_at", P10Y, (15, 15, 10)),  # delete 10 years after
}
"""Each group's anchors are spread evenly from its first to its last anchor (a time of day
added, so that coarsening to the month shows); a group's due instants (anchor + years) all
fall before 2013-01-01, between 2013-01-01 and 2016-01-01, or after 2016-01-01."""
HELD_ROWS = 2
"""Rows per table of each held customer, anchored in the first group (due at the first
advance without the hold)."""


def fault_outcome() -> dict[str, Counter[str]]:
    """Worked out by hand from GROUPS and config/policy.yaml: per table, how many of the
    run's rows end deleted, anonymised or kept after the last advance. The first two groups
    fall due (satisfaction surveys are anonymised, the other tables deleted; a support
    ticket's archive changes nothing in the database); the third group and the held rows
    are kept."""
    result = {}
    for table, (_, _, sizes) in GROUPS.items():
        action = "anonymised" if table == "satisfaction_surveys" else "deleted"
        result[table] = Counter(
            {action: sizes[0] + sizes[1], "kept": sizes[2] + HELD_ROWS * len(HELD)}
        )
    return result


def fault_holds(run: Run) -> list[dict[str, Any]]:
    """The legal holds of the run's held customers (never released)."""
    return [
        {
            "id": run.base + n,
            "customer_id": run.base + held,
            "case_ref": f"FAULT-{n}",
            "placed_at": at("2009-12-01"),
            "released_at": None,
        }
        for n, held in enumerate(HELD)
    ]


def fault_rows(run: Run) -> dict[str, list[dict[str, Any]]]:
    """The run's rows by table (ids from the block's start, per table): GROUPS, then
    HELD_ROWS per held customer."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for table, (column, windows, sizes) in GROUPS.items():
        anchors = [
            at(first) + (at(last) - at(first)) * i / max(count - 1, 1) + timedelta(hours=10)
            for (first, last), count in zip(windows, sizes, strict=True)
            for i in range(count)
        ]
        customers = [run.base + 800 + n % CUSTOMERS for n in range(len(anchors))]
        for held in HELD:
            for i in range(HELD_ROWS):
                anchors.append(at(windows[0][0]) + timedelta(days=30 * i, hours=10))
                customers.append(run.base + held)
        rows[table] = [
            _row(table, column, run.base + n, customer, anchor)
            for n, (customer, anchor) in enumerate(zip(customers, anchors, strict=True))
        ]
    return rows


def _row(table: str, column: str, row_id: int, customer: int, anchor: datetime) -> dict[str, Any]:
    """A row of `table` with `column` at `anchor` (no personal value beyond test text)."""
    common: dict[str, Any] = {"id": row_id, "customer_id": customer, column: anchor}
    if table == "connection_logs":
        return {**common, "ip_address": f"198.51.100.{row_id % 250}"}
    if table == "support_tickets":
        return {
            **common,
            "subject_line": "fault ticket",
            "body": "body",
            "contact_email": f"fault-t{row_id}@example.org",
            "created_at": anchor - timedelta(days=10),
        }
    if table == "satisfaction_surveys":
        return {
            **common,
            "respondent_email": f"fault-s{row_id}@example.org",
            "score": row_id % 10,
            "comments": "the person's own words",
        }
    if table == "invoices":
        return {
            **common,
            "order_id": None,
            "billing_name": "Payer",
            "billing_address": "1 Example Road",
            "amount_cents": 100,
        }
    return {**common, "service": "vps", "amount_cents": 100}


# The stack parts a fault hits.


def kill_part(settings: Settings, part: Part) -> int:
    """SIGKILL the part's process (the pid its stack dir records) and wait until it is gone;
    the pid."""
    pid = part.pid()
    assert pid is not None, f"{part.name} is not running"
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while pid_alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    assert not pid_alive(pid), f"{part.name} (pid {pid}) still alive 30 s after SIGKILL"
    return pid


def restore_stack(settings: Settings) -> list[str]:
    """PostgreSQL, Kafka, Connect and both connectors running and healthy again (each part
    that is down started, a failed connector or task restarted); raises when they are not.
    The connectors that had to be restarted.

    The JDBC sink's task can show FAILED a second or more after PostgreSQL's stop cut off its
    statement, when PostgreSQL is back (docs/reliability.md row 4): a sink task found FAILED
    so while both connectors are awaited is restarted too (`restart_cut_off_sink`), up to
    `REVIVE_ROUNDS` times; `sink_applied` covers one that fails after this returns."""
    pid = Connect(settings).pid()
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # a frozen Connect (SIGSTOP) thawed
    stack.up(settings, only={"postgres", "kafka", "connect"}, say=lambda line: None)
    restarted = [
        connector.connector
        for connector in (SourceConnector(settings), SinkConnector(settings))
        if revive(connector)
    ]
    for _ in range(REVIVE_ROUNDS - 1):
        try:
            stack.up(settings, only={"source", "sink"}, say=lambda line: None)
            return restarted
        except StackError:
            if not restart_cut_off_sink(settings):
                raise
        sink = SinkConnector(settings).connector
        if sink not in restarted:
            restarted.append(sink)
    stack.up(settings, only={"source", "sink"}, say=lambda line: None)
    return restarted


REVIVE_ROUNDS = 3
CUT_OFF: Final = (
    "57P01",
    "terminating connection due to administrator command",
    "An I/O error occurred while sending to the backend",
    "This connection has been closed",
    "Connection refused",
)
"""What the sink task's trace says when PostgreSQL's stop (or absence) failed it."""


def restart_cut_off_sink(settings: Settings, wait_s: float = 30.0) -> bool:
    """If the JDBC sink's task is FAILED because PostgreSQL went away under it (its trace
    holds one of `CUT_OFF`), restart it (`revive`) and wait until Connect no longer shows it
    FAILED; True then. False when it is not FAILED; raises, with the trace's first lines, when
    it FAILED for another reason (a failure this test must not hide)."""
    sink = SinkConnector(settings)
    state, tasks = sink.state()
    if not _failed(state, tasks):
        return False
    traces = [str(t.get("trace", "")) for t in tasks if t.get("state") == "FAILED"]
    if state == "FAILED" or not all(any(m in trace for m in CUT_OFF) for trace in traces):
        first = "\n".join(traces[0].splitlines()[:3]) if traces else f"connector {state}"
        raise AssertionError(f"the sink FAILED, not on a lost PostgreSQL connection:\n{first}")
    revive(sink)
    wait_for(  # Connect shows the restart once it has read its own status back
        f"the sink's task no longer FAILED after a restart (within {wait_s:.0f} s)",
        lambda: None if failed(sink) else True,
        timeout_s=wait_s,
    )
    return True


def failed(connector: SourceConnector | SinkConnector) -> bool:
    """Whether the connector or one of its tasks is FAILED."""
    return _failed(*connector.state())


def _failed(state: str, tasks: list[dict[str, Any]]) -> bool:
    return state == "FAILED" or any(t.get("state") == "FAILED" for t in tasks)


def sink_applied(settings: Settings, run: Run, timeout_s: float = 120.0) -> int:
    """Wait until the sink has committed every record of the run's sink topics, restarting
    its task whenever PostgreSQL's restart failed it (`restart_cut_off_sink`, what
    docs/runbook.md#letheconnectortaskfailed tells an operator to do); raises when it has not
    caught up within `timeout_s`. How many times the task was restarted."""
    sink_topics = [f"lethe.sink.public.{table}" for table in run.tables]
    restarts = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        restarts += restart_cut_off_sink(settings)
        if sink_caught_up(settings, sink_topics, timeout_s=5.0):
            return restarts
    raise AssertionError(f"the sink did not catch up within {timeout_s:.0f} s")


def revive(connector: SourceConnector | SinkConnector) -> bool:
    """Resume the connector if it is PAUSED; restart it and its tasks if any is FAILED
    (Connect's REST `restart?includeTasks=true&onlyFailed=true`); True if it was FAILED."""
    state, tasks = connector.state()
    if state == "PAUSED":
        http("PUT", f"{connector.url}/resume", timeout=30)
    if not _failed(state, tasks):
        return False
    http("POST", f"{connector.url}/restart?includeTasks=true&onlyFailed=true", timeout=30)
    return True
