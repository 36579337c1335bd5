"""The change counter agent, driven through Faust's `agent.test_context()`.

No broker: the agent reads an in-memory channel and dead-letters to another
one, so what it sends can be read back. The Kafka path is covered by
tests/integration/test_walking_skeleton.py.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import faust
import orjson
import pytest

from lethe.agents import change_counter
from lethe.app import ROCKSDB_OPTIONS, LetheApp, create_app
from lethe.settings import Settings

TOPIC = "hosting.public.customers"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[LetheApp]:
    settings = Settings(data_dir=tmp_path)
    app = create_app(
        settings,
        app_id="lethe-unit",
        store="memory://",
        change_topic_names=[TOPIC],
        web_enabled=False,
    )
    app.finalize()
    yield app


SECRET = "someone@example.org"


def change(op: str, row_id: int) -> tuple[bytes, bytes]:
    key = orjson.dumps({"id": row_id})
    after = None if op == "d" else {"id": row_id, "email": SECRET}
    before = {"id": row_id} if op == "d" else None
    payload = {"op": op, "before": before, "after": after, "source": {"ts_ms": 1_700_000_000_000}}
    value = orjson.dumps({"schema": {"type": "struct"}, "payload": payload})
    return key, value


def counted(app: LetheApp, table: str, op: str) -> float:
    value = app.metrics.registry.get_sample_value(
        "lethe_change_events_total", {"table": table, "op": op}
    )
    return value or 0.0


def test_bad_record_is_dead_lettered_and_the_next_one_still_counted(
    app: LetheApp, caplog: pytest.LogCaptureFixture
) -> None:
    app.loop.run_until_complete(_bad_record_then_good_ones(app, caplog))


async def _bad_record_then_good_ones(app: LetheApp, caplog: pytest.LogCaptureFixture) -> None:
    deadletters: faust.ChannelT[bytes] = app.channel()
    reader = deadletters.clone(is_iterator=True)
    agent = change_counter.install(app, app.change_topic, deadletters, metrics=app.metrics)
    caplog.set_level("DEBUG", logger="lethe.agents.change_counter")

    async with agent.test_context() as agent_under_test:
        good_key, good_value = change("c", 7)
        await agent_under_test.put(key=good_key, value=good_value, partition=2)
        await agent_under_test.put(key=b'{"id": 8}', value=b"\x00not json at all", partition=2)
        await agent_under_test.put(key=good_key, value=None, partition=2)
        next_key, next_value = change("u", 9)
        await agent_under_test.put(key=next_key, value=next_value, partition=2)

    dead = await reader.get(timeout=1.0)
    record = orjson.loads(dead.value)
    assert record["topic"] == TOPIC
    assert record["partition"] == 2
    assert record["offset"] == 1  # the second record put
    assert record["reason"] == "not_json"
    assert base64.b64decode(record["value_b64"]) == b"\x00not json at all"
    assert base64.b64decode(record["key_b64"]) == b'{"id": 8}'
    assert dead.key == b'{"id": 8}'
    assert reader.empty(), "exactly one dead letter expected"

    assert counted(app, "public.customers", "c") == 1
    assert counted(app, "public.customers", "tombstone") == 1
    assert counted(app, "public.customers", "u") == 1
    assert (
        app.metrics.registry.get_sample_value(
            "lethe_dead_letters_total", {"topic": TOPIC, "reason": "not_json"}
        )
        == 1
    )

    records = [r for r in caplog.records if r.name == "lethe.agents.change_counter"]
    lines = [(r.getMessage(), r.levelname) for r in records]
    per_event = {line: level for line, level in lines if line.startswith("change ")}
    assert per_event == {
        "change table=public.customers op=c key=id=7": "DEBUG",
        "change table=public.customers op=tombstone key=id=7": "DEBUG",
        "change table=public.customers op=u key=id=9": "DEBUG",
    }, "one line per event, at DEBUG only (at INFO it costs throughput)"
    assert not any(SECRET in r.getMessage() for r in records)


def test_a_record_the_engine_would_refuse_is_dead_lettered_with_its_code_and_no_value(
    app: LetheApp, caplog: pytest.LogCaptureFixture
) -> None:
    app.loop.run_until_complete(_refused_records(app, caplog))


async def _refused_records(app: LetheApp, caplog: pytest.LogCaptureFixture) -> None:
    deadletters: faust.ChannelT[bytes] = app.channel()
    reader = deadletters.clone(is_iterator=True)
    agent = change_counter.install(app, app.change_topic, deadletters, metrics=app.metrics)
    caplog.set_level("INFO", logger="lethe.agents.change_counter")
    key, value = change("c", 7)
    no_time = orjson.dumps({"op": "c", "after": {"id": 7}})
    email_op = orjson.dumps({"op": SECRET, "after": {"id": 7}, "source": {"ts_ms": 1}})

    async with agent.test_context() as agent_under_test:
        await agent_under_test.put(key=key, value=no_time)
        await agent_under_test.put(key=key, value=email_op)
        await agent_under_test.put(key=orjson.dumps(SECRET), value=value)

    records = [orjson.loads((await reader.get(timeout=1.0)).value) for _ in range(3)]
    assert [r["reason"] for r in records] == ["no_ts", "unknown_op", "bad_key"]
    assert records[1]["detail"] == "the envelope's 'op' is a JSON string that is not c, u, d or r"
    assert not any(SECRET in r["detail"] for r in records)
    for reason in ("no_ts", "unknown_op", "bad_key"):
        sample = {"topic": TOPIC, "reason": reason}
        assert app.metrics.registry.get_sample_value("lethe_dead_letters_total", sample) == 1
    logged = [r.getMessage() for r in caplog.records if r.name == "lethe.agents.change_counter"]
    assert not any(SECRET in line for line in logged)


def test_tables_get_capped_rocksdb_options(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path), app_id="lethe-unit-rocks", web_enabled=False)
    table = app.Table("subjects", default=int)
    assert table.options is not None
    assert table.options["block_cache_size"] == ROCKSDB_OPTIONS["block_cache_size"]
    own = app.Table("other", default=int, options={"block_cache_size": 1024})
    assert own.options is not None
    assert own.options["block_cache_size"] == 1024
    assert own.options["write_buffer_size"] == ROCKSDB_OPTIONS["write_buffer_size"]


def test_web_server_hides_table_contents(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, web_port=6099), app_id="lethe-unit-web")
    assert app.conf.web_tables_enabled is False
    assert app.conf.web_bind == "127.0.0.1"
    assert app.conf.web_port == 6099
    assert str(app.conf.store) == "rocksdb:"
