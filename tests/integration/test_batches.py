"""A batch on `<app id>-subject-events` (how `lethe worker` forwards, `lethe.topics.batches`):
a forward in it that the enforcer cannot use is dead-lettered alone, with the batch's topic,
partition and offset, its reason and the forward's own value, and the batch's other forwards
are processed (their rows tracked).

The test writes the batch itself to a running worker's subject events topic: two events of a
run's copy of connection_logs around a forward of an unknown kind. The rows were logged now,
so nothing falls due and no command is sent.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer

from lethe import topics
from lethe.settings import Settings
from lethe.topics.batches import batch_item, batch_value
from tests.integration.workers import (
    LogsRun,
    logs_run,
    quiet,
    read_topic,
    serving,
    start_worker,
    topic_ends,
    wait_for,
)

pytestmark = pytest.mark.integration


def change(run: LogsRun, row_id: int, lsn: int) -> bytes:
    """A Debezium create of the run's table, logged now (schemaless JSON)."""
    now_ms = int(time.time() * 1000)
    logged = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_ms / 1000))
    return orjson.dumps(
        {
            "before": None,
            "after": {"id": row_id, "customer_id": 4242, "ip_address": "192.0.2.1",
                      "logged_at": logged},
            "source": {"connector": "postgresql", "name": "hosting", "ts_ms": now_ms,
                       "db": "hosting", "schema": "public", "table": run.table, "lsn": lsn},
            "op": "c",
            "ts_ms": now_ms,
        }
    )  # fmt: skip


def event(run: LogsRun, row_id: int, offset: int) -> bytes:
    headers = [
        (topics.KIND_HEADER, topics.EVENT_KIND),
        (topics.TABLE_HEADER, run.source.encode()),
        (topics.KEY_HEADER, orjson.dumps({"id": row_id})),
        (topics.OP_HEADER, b"c"),
        (topics.TS_HEADER, str(int(time.time() * 1_000_000)).encode()),
        (topics.SOURCE_TOPIC_HEADER, run.topic.encode()),
        (topics.SOURCE_PARTITION_HEADER, b"0"),
        (topics.SOURCE_OFFSET_HEADER, str(offset).encode()),
        (topics.SUBJECT_HEADER, b"customer:4242"),
    ]
    return batch_item(b"customer:4242", headers, change(run, row_id, 1000 + offset))


def test_a_forward_the_enforcer_cannot_use_is_dead_lettered_alone(
    real_stack: Settings, tmp_path: Path
) -> None:
    with logs_run(real_stack, "lethe-it-batch-", "batch", tmp_path) as run:
        worker = start_worker(
            run.app_id, tmp_path, run.write_policy(), env={"LETHE_CENSUS_INTERVAL": "1"}
        )
        with serving(worker):
            subject_events = topics.subject_events_topic_name(run.app_id)
            wait_for("the subject events topic", lambda: topic_ends(real_stack, subject_events))
            letters_from = sum(topic_ends(real_stack, topics.DEADLETTER_TOPIC).values())
            odd = batch_item(b"customer:4242", [(topics.KIND_HEADER, b"odd")], b'{"odd":1}')
            value = batch_value([event(run, 1, 0), odd, event(run, 2, 1)])
            producer = Producer(quiet(real_stack))
            placed: list[tuple[int, int]] = []
            producer.produce(
                subject_events, value, None, 0,
                lambda error, message: placed.append((message.partition(), message.offset())),
                headers=[(topics.KIND_HEADER, topics.BATCH_KIND)],
            )  # fmt: skip
            producer.flush(30)
            [(partition, offset)] = placed

            def tracked() -> float | None:
                found = sum(
                    value
                    for (name, labels), value in (worker.metrics() or {}).items()
                    if name == "lethe_rows_tracked" and dict(labels).get("table") == run.source
                )
                return found if found >= 2 else None

            assert wait_for("both rows of the batch tracked", tracked, worker) == 2

            def letters() -> list[dict[str, object]] | None:
                found = [
                    letter
                    for record in read_topic(real_stack, topics.DEADLETTER_TOPIC)[letters_from:]
                    if (letter := orjson.loads(record.value() or b"null"))["topic"]
                    == subject_events
                ]
                return found or None

            [letter] = wait_for("the dead letter of the odd forward", letters, worker)
            assert (letter["partition"], letter["offset"]) == (partition, offset)
            assert letter["reason"] == "bad_record"
            assert "odd" in str(letter["detail"])
            assert base64.b64decode(str(letter["value_b64"])) == b'{"odd":1}'
            assert (
                worker.sample("lethe_dead_letters_total", topic=subject_events, reason="bad_record")
                == 1
            )
