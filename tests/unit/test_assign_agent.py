"""The assign agent, driven through Faust's `agent.test_context()`.

No broker: the agent reads an in-memory channel, keeps `locations` in a memory store, and
sends dead letters and subject events to in-memory channels, so what it sends can be read
back. The Kafka path is covered by tests/integration/test_walking_skeleton.py and
tests/integration/test_assign.py; the routing decision in detail by test_routing.py.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
import orjson
import pytest

from lethe.agents import assign, replays
from lethe.app import LetheApp, create_app
from lethe.settings import Settings
from policy.engine import Engine
from policy.event_wire import EventWireError, decode_event
from policy.events import ChangeEvent, Op, SourcePosition

TOPIC = "hosting.public.customers"
TICKETS = "hosting.public.support_tickets"
TICKETS_TABLE = "public.support_tickets"
SECRET = "someone@example.org"
TS_MS = 1_700_000_000_000
TS = TS_MS * 1000


@pytest.fixture
def app(tmp_path: Path) -> Iterator[LetheApp]:
    settings = Settings(data_dir=tmp_path)
    app = create_app(
        settings,
        app_id="lethe-unit",
        store="memory://",
        change_topic_names=[TOPIC, TICKETS],
        web_enabled=False,
    )
    app.finalize()
    yield app


@dataclass
class Wiring:
    agent: Any
    deadletters: faust.ChannelT[bytes]
    """Reads what the agent dead-letters."""
    subject_events: faust.ChannelT[bytes]
    """Reads what the agent forwards."""


async def no_flush() -> None:
    """The test context has no running producer to flush."""


def no_end(topic: str, partition: int) -> int | None:
    """The test context has no consumer: a partition's end is not known."""
    return None


def wire(app: LetheApp, engine: Engine, replay_marks: replays.ReplayMarks | None = None) -> Wiring:
    deadletters: faust.ChannelT[bytes] = app.channel()
    subject_events: faust.ChannelT[bytes] = app.channel()
    if replay_marks is None:
        replay_marks = replays.ReplayMarks.install(app, 1, flush=no_flush, highwater=no_end)
    agent = assign.install(
        app,
        app.change_topic,
        deadletters,
        subject_events,  # type: ignore[arg-type]
        engine=engine,
        metrics=app.metrics,
        partitions=1,
        replay_marks=replay_marks,
    )
    return Wiring(
        agent, deadletters.clone(is_iterator=True), subject_events.clone(is_iterator=True)
    )


def change(op: str, row_id: int, **columns: object) -> tuple[bytes, bytes]:
    key = orjson.dumps({"id": row_id})
    after = None if op == "d" else {"id": row_id, "email": SECRET, **columns}
    before = {"id": row_id} if op == "d" else None
    payload = {"op": op, "before": before, "after": after, "source": {"ts_ms": TS_MS}}
    value = orjson.dumps({"schema": {"type": "struct"}, "payload": payload})
    return key, value


def counted(app: LetheApp, table: str, op: str) -> float:
    value = app.metrics.registry.get_sample_value(
        "lethe_change_events_total", {"table": table, "op": op}
    )
    return value or 0.0


async def put(
    agent: Any, key: bytes, value: bytes | None, topic: str = TOPIC, partition: int = 0
) -> None:
    """Feed one record of change topic `topic` (the test context names a topic only when
    the agent reads one, so its topic lookup is replaced)."""
    agent._get_strtopic = lambda channel: topic
    await agent.put(key=key, value=value, partition=partition)


async def forwarded(
    reader: faust.ChannelT[bytes],
) -> list[tuple[bytes, dict[str, bytes], object]]:
    """Every record sent so far: (key, headers, value), a `change` record's value decoded
    (the event and where it was read)."""
    records: list[tuple[bytes, dict[str, bytes], object]] = []
    while not reader.empty():
        event = await reader.get(timeout=1.0)
        headers = dict(event.headers)
        value = event.value
        if headers.get("lethe-kind") == b"change":
            value = decode_event(value)
        records.append((event.key, headers, value))
    return records


def test_bad_record_is_dead_lettered_and_the_next_one_still_counted_and_forwarded(
    app: LetheApp, demo_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    app.loop.run_until_complete(_bad_record_then_good_ones(app, demo_engine, caplog))


async def _bad_record_then_good_ones(
    app: LetheApp, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    wiring = wire(app, engine)
    caplog.set_level("DEBUG", logger="lethe.agents.assign")

    good_key, good_value = change("c", 7)
    next_key, next_value = change("u", 9)
    async with wiring.agent.test_context() as agent_under_test:
        await put(agent_under_test, good_key, good_value, partition=2)
        await put(agent_under_test, b'{"id": 8}', b"\x00not json at all", partition=2)
        await put(agent_under_test, good_key, None, partition=2)
        await put(agent_under_test, next_key, next_value, partition=2)

    dead = await wiring.deadletters.get(timeout=1.0)
    record = orjson.loads(dead.value)
    assert record["topic"] == TOPIC
    assert record["partition"] == 2
    assert record["offset"] == 1  # the second record put
    assert record["reason"] == "not_json"
    assert base64.b64decode(record["value_b64"]) == b"\x00not json at all"
    assert base64.b64decode(record["key_b64"]) == b'{"id": 8}'
    assert dead.key == b'{"id": 8}'
    assert wiring.deadletters.empty(), "exactly one dead letter expected"

    customer = "public.customers"
    assert await forwarded(wiring.subject_events) == [
        (b"customer:7", {"lethe-kind": b"change"}, (
            ChangeEvent(customer, (("id", 7),), Op.CREATE, None, {"id": 7, "email": SECRET}, TS),
            (TOPIC, 2, 0),
        )),
        (b"customer:9", {"lethe-kind": b"change"}, (
            ChangeEvent(customer, (("id", 9),), Op.UPDATE, None, {"id": 9, "email": SECRET}, TS),
            (TOPIC, 2, 3),
        )),
    ], "the tombstone (offset 2) and the bad record (offset 1) are not forwarded"  # fmt: skip

    assert counted(app, "public.customers", "c") == 1
    assert counted(app, "public.customers", "tombstone") == 1
    assert counted(app, "public.customers", "u") == 1
    assert (
        app.metrics.registry.get_sample_value(
            "lethe_dead_letters_total", {"topic": TOPIC, "reason": "not_json"}
        )
        == 1
    )

    records = [r for r in caplog.records if r.name == "lethe.agents.assign"]
    lines = [(r.getMessage(), r.levelname) for r in records]
    per_event = {line: level for line, level in lines if line.startswith("change ")}
    assert per_event == {
        "change table=public.customers op=c key=id=7": "DEBUG",
        "change table=public.customers op=tombstone key=id=7": "DEBUG",
        "change table=public.customers op=u key=id=9": "DEBUG",
    }, "one line per event, at DEBUG only (at INFO it costs throughput)"
    assert not any(SECRET in r.getMessage() for r in records)


def test_a_ticket_deleted_with_only_its_key_goes_to_its_customer_and_a_move_departs(
    app: LetheApp, demo_engine: Engine
) -> None:
    app.loop.run_until_complete(_ticket_moves_then_goes(app, demo_engine))


async def _ticket_moves_then_goes(app: LetheApp, engine: Engine) -> None:
    wiring = wire(app, engine)
    key = orjson.dumps({"id": 5})

    def ticket(op: str, before: object, after: object) -> bytes:
        return orjson.dumps({"op": op, "before": before, "after": after, "ts_ms": TS_MS})

    created = ticket("c", None, {"id": 5, "customer_id": 42, "body": SECRET})
    moved = ticket("u", None, {"id": 5, "customer_id": 43, "body": SECRET})
    deleted = ticket("d", {"id": 5}, None)
    async with wiring.agent.test_context() as agent_under_test:
        for value in (created, moved, deleted):
            await put(agent_under_test, key, value, topic=TICKETS)

    sent = await forwarded(wiring.subject_events)
    moves = [
        (h["lethe-kind"], h.get("lethe-moved-from"), h.get("lethe-moved-to")) for _, h, _ in sent
    ]
    table = "public.support_tickets"
    created_event = ChangeEvent(
        table, (("id", 5),), Op.CREATE, None, {"id": 5, "customer_id": 42, "body": SECRET}, TS
    )
    moved_event = ChangeEvent(
        table, (("id", 5),), Op.UPDATE, None, {"id": 5, "customer_id": 43, "body": SECRET}, TS
    )
    deleted_event = ChangeEvent(table, (("id", 5),), Op.DELETE, {"id": 5}, None, TS)
    assert [(k, v, *move) for (k, _, v), move in zip(sent, moves, strict=True)] == [
        (b"customer:42", (created_event, (TICKETS, 0, 0)), b"change", None, None),
        (b"customer:43", (moved_event, (TICKETS, 0, 1)), b"change", None, None),
        (b"customer:42", moved, b"depart", None, b"customer:43"),
        (b"customer:43", (deleted_event, (TICKETS, 0, 2)), b"change", None, None),
    ]  # fmt: skip
    depart = sent[2][1]
    assert depart == {
        "lethe-kind": b"depart",
        "lethe-table": b"public.support_tickets",
        "lethe-key": b'{"id":5}',
        "lethe-ts": b"1700000000000000",
        "lethe-source-topic": TICKETS.encode(),
        "lethe-source-partition": b"0",
        "lethe-source-offset": b"1",
        "lethe-subject": b"customer:42",
        "lethe-moved-to": b"customer:43",
    }


def test_a_record_the_engine_would_refuse_is_dead_lettered_with_its_code_and_no_value(
    app: LetheApp, demo_engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    app.loop.run_until_complete(_refused_records(app, demo_engine, caplog))


async def _refused_records(app: LetheApp, engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    wiring = wire(app, engine)
    caplog.set_level("INFO", logger="lethe.agents.assign")
    key, value = change("c", 7)
    no_time = orjson.dumps({"op": "c", "after": {"id": 7}})
    email_op = orjson.dumps({"op": SECRET, "after": {"id": 7}, "source": {"ts_ms": 1}})

    async with wiring.agent.test_context() as agent_under_test:
        await put(agent_under_test, key, no_time)
        await put(agent_under_test, key, email_op)
        await put(agent_under_test, orjson.dumps(SECRET), value)

    records = [orjson.loads((await wiring.deadletters.get(timeout=1.0)).value) for _ in range(3)]
    assert [r["reason"] for r in records] == ["no_ts", "unknown_op", "bad_key"]
    assert records[1]["detail"] == "the envelope's 'op' is a JSON string that is not c, u, d or r"
    assert not any(SECRET in r["detail"] for r in records)
    for reason in ("no_ts", "unknown_op", "bad_key"):
        sample = {"topic": TOPIC, "reason": reason}
        assert app.metrics.registry.get_sample_value("lethe_dead_letters_total", sample) == 1
    assert wiring.subject_events.empty()
    logged = [r.getMessage() for r in caplog.records if r.name == "lethe.agents.assign"]
    assert not any(SECRET in line for line in logged)


def test_tables_get_capped_rocksdb_options(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, rocksdb_write_buffer_bytes=1048576)
    app = create_app(settings, app_id="lethe-unit-rocks", web_enabled=False)
    table = app.Table("subjects", default=int)
    assert table.options is not None
    assert table.options["block_cache_size"] == 8 * 1024 * 1024
    assert table.options["write_buffer_size"] == 1048576
    assert table.options["max_write_buffer_number"] == 2
    own = app.Table("other", default=int, options={"block_cache_size": 1024})
    assert own.options is not None
    assert own.options["block_cache_size"] == 1024
    assert own.options["write_buffer_size"] == 1048576


def test_a_table_partition_s_rocksdb_opens_with_the_memtable_size_set(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, rocksdb_write_buffer_bytes=327680)
    app = create_app(settings, app_id="lethe-unit-memtable", web_enabled=False)
    table = app.Table("rows", key_type=bytes, value_type=bytes, partitions=1)
    table.data._db_for_partition(0)
    (written,) = table.data.partition_path(0).glob("OPTIONS-*")
    options = written.read_text().split()
    assert "write_buffer_size=327680" in options
    assert "max_write_buffer_number=2" in options


def test_web_server_hides_table_contents(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, web_port=6099), app_id="lethe-unit-web")
    assert app.conf.web_tables_enabled is False
    assert app.conf.web_bind == "127.0.0.1"
    assert app.conf.web_port == 6099
    assert str(app.conf.store) == "rocksdb:"


def test_the_worker_is_at_least_once_and_its_session_follows_the_setting(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path), app_id="lethe-unit-guarantee", web_enabled=False)
    assert app.conf.processing_guarantee.value == "at_least_once"
    assert (app.conf.broker_session_timeout, app.conf.broker_heartbeat_interval) == (45.0, 3.0)
    quick = Settings(data_dir=tmp_path, session_timeout=6.0)
    app = create_app(quick, app_id="lethe-unit-session", web_enabled=False)
    assert (app.conf.broker_session_timeout, app.conf.broker_heartbeat_interval) == (6.0, 2.0)


def test_a_connector_replay_is_dropped_and_counted_and_the_mark_stored_after_a_flush(
    app: LetheApp, demo_engine: Engine
) -> None:
    app.loop.run_until_complete(_replayed(app, demo_engine))


async def _replayed(app: LetheApp, engine: Engine) -> None:
    steps: list[str] = []
    now = [100.0]

    async def flush() -> None:
        steps.append("flush")

    marks = replays.ReplayMarks.install(
        app, 1, flush=flush, highwater=no_end, interval_s=1.0, clock=lambda: now[0]
    )
    wiring = wire(app, engine, marks)
    key = orjson.dumps({"id": 5})

    def ticket(op: str, sequence: str, snapshot: str = "false") -> bytes:
        row = {"id": 5, "customer_id": 42, "body": SECRET}
        before, after = (row, None) if op == "d" else (None, row)
        source = {"ts_ms": TS_MS, "sequence": sequence, "snapshot": snapshot}
        return orjson.dumps(
            {"op": op, "before": before, "after": after, "source": source, "ts_ms": TS_MS}
        )

    read = ticket("r", '[null,"1000"]', "last")
    created = ticket("c", '["1100","1200"]')
    deleted = ticket("d", '["1300","1300"]')
    later = ticket("c", '["1400","1500"]')
    no_position = orjson.dumps({"op": "c", "after": {"id": 5, "customer_id": 42}, "ts_ms": TS_MS})
    async with wiring.agent.test_context() as agent_under_test:
        for value in (read, created, deleted):
            await put(agent_under_test, key, value, topic=TICKETS)
        now[0] += 1.5
        for value in (read, created, deleted):  # the connector's snapshot sent again: new
            await put(agent_under_test, key, value, topic=TICKETS)
        for value in (created, deleted, no_position, later):  # the stream replayed, then new
            await put(agent_under_test, key, value, topic=TICKETS)
        stored = app.tables[replays.TABLE].get(f"{TICKETS}:0".encode())

    sent = [value for _, _, value in await forwarded(wiring.subject_events)]
    row = {"id": 5, "customer_id": 42, "body": SECRET}

    def event(op: Op, position: SourcePosition | None, offset: int) -> object:
        before, after = (row, None) if op is Op.DELETE else (None, row)
        return ChangeEvent(TICKETS_TABLE, (("id", 5),), op, before, after, TS, position), (
            TICKETS, 0, offset,
        )  # fmt: skip

    assert sent == [
        event(Op.READ, SourcePosition(None, 1000, snapshot=True), 0),
        event(Op.CREATE, SourcePosition(1100, 1200), 1),
        event(Op.DELETE, SourcePosition(1300, 1300), 2),
        event(Op.READ, SourcePosition(None, 1000, snapshot=True), 3),
        event(Op.CREATE, SourcePosition(1100, 1200), 4),
        event(Op.DELETE, SourcePosition(1300, 1300), 5),
        (
            ChangeEvent(
                TICKETS_TABLE, (("id", 5),), Op.CREATE, None, {"id": 5, "customer_id": 42}, TS
            ),
            (TICKETS, 0, 8),
        ),
        event(Op.CREATE, SourcePosition(1400, 1500), 9),
    ]  # fmt: skip
    assert (
        app.metrics.registry.get_sample_value(
            "lethe_change_events_replayed_total", {"table": "public.support_tickets"}
        )
        == 2
    )
    assert counted(app, "public.support_tickets", "c") == 5, "replays are counted as read too"
    assert steps == ["flush"], "one write in the interval, after a flush"
    assert stored is not None
    assert replays.decode(stored) == SourcePosition(None, 1000, snapshot=True), (
        "stored: the mark after the first record 1.5 s after the partition's first use"
    )


def test_an_event_the_change_format_cannot_carry_is_forwarded_with_its_own_value(
    app: LetheApp, demo_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cannot_carry(event: object, where: object = None) -> bytes:
        raise EventWireError("a value of public.customers the format cannot carry")

    monkeypatch.setattr(assign, "encode_event", cannot_carry)
    app.loop.run_until_complete(_forwarded_undecoded(app, demo_engine))


async def _forwarded_undecoded(app: LetheApp, engine: Engine) -> None:
    wiring = wire(app, engine)
    key, value = change("c", 7)
    async with wiring.agent.test_context() as agent_under_test:
        await put(agent_under_test, key, value, partition=1)

    assert await forwarded(wiring.subject_events) == [
        (b"customer:7", {
            "lethe-kind": b"event",
            "lethe-table": b"public.customers",
            "lethe-key": b'{"id":7}',
            "lethe-op": b"c",
            "lethe-ts": b"1700000000000000",
            "lethe-source-topic": TOPIC.encode(),
            "lethe-source-partition": b"1",
            "lethe-source-offset": b"0",
            "lethe-subject": b"customer:7",
        }, value),
    ]  # fmt: skip
    assert wiring.deadletters.empty()
