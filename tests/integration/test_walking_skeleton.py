"""The walking skeleton through the real stack: PostgreSQL -> Debezium -> Kafka -> worker.

Runs `lethe worker` as a subprocess (own app id, data dir and policy file, web
port picked free). The policy is config/policy.yaml plus one source per change
topic of the run's own (`hosting.public.lethe_it_<kind>_<run>`), none of which
exists when the worker starts. Then:
1. a topic the policy names but the broker lacked is there once the worker is up
   (the worker created it before subscribing), and the record produced into it
   right away is counted;
2. a garbage record is dead-lettered to `lethe.deadletter` (topic, partition,
   offset, reason, raw value), and the worker goes on counting: a row of
   `info_requests` inserted, updated and deleted in PostgreSQL is counted exactly
   as `hosting.public.info_requests` holds it, by operation; a garbage record too
   large to be dead-lettered with its raw value is dead-lettered without it;
3. a change topic of a table the policy does not name, created while the worker
   runs, shows in `lethe_unclassified_tables` and is never read;
4. a change record compressed with gzip, snappy, lz4 or zstd is counted, and the
   worker lives on.

What the worker logs is not checked, except that no row value reaches it.

The run's topics and consumer group are deleted at the end, so other workers
never meet them later. Fails (never skips) when the stack is down: start it with
`lethe stack up`.
"""

from __future__ import annotations

import base64
import re
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import yaml
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from lethe.policy_file import load_policy
from lethe.settings import Settings
from tests.integration.workers import (
    WorkerProcess,
    forget_topics,
    produce,
    quiet,
    serving,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

APP_ID_PREFIX = "lethe-it-skeleton-"
"""Each run gets its own app id (= consumer group), so runs never share partitions;
the group, the app's internal topics and the run's own topics are deleted afterwards."""
DEADLETTER_TOPIC = "lethe.deadletter"
TABLE = "info_requests"
TABLE_TOPIC = f"hosting.public.{TABLE}"
TABLE_LABEL = f"public.{TABLE}"
"""How the worker names the table in its metric labels (as in commands)."""
TOMBSTONE = "tombstone"
"""The op label the worker counts for Debezium's null-value record after a delete."""
CODECS = ("gzip", "snappy", "lz4", "zstd")
NAMED_KINDS = ("absent", "garbage", *CODECS)
"""The run's own tables the worker's policy names, one change topic each."""
STRAY_KIND = "stray"
"""The run's own table the policy does not name."""


@pytest.fixture(scope="module")
def stack(real_stack: Settings) -> Settings:
    """The healthy stack (shared `real_stack` fails naming what is down), with Debezium topics."""
    topics = AdminClient(quiet(real_stack)).list_topics(timeout=10).topics
    if not any(name.startswith("hosting.public.") for name in topics):
        pytest.fail(
            "no hosting.public.* topics on the broker: Debezium has not captured the demo "
            "database; check the connector with `lethe stack status`"
        )
    return real_stack


def ensure_topic(settings: Settings, name: str) -> None:
    admin = AdminClient(quiet(settings))
    futures = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    try:
        futures[name].result(timeout=30)
    except KafkaException as exc:
        if "TOPIC_ALREADY_EXISTS" not in str(exc):
            raise


def run_topic(app_id: str, kind: str) -> str:
    """`hosting.public.lethe_it_<kind>_<run>`: a change topic of the run's own."""
    return f"hosting.public.lethe_it_{kind}_{app_id.rsplit('-', 1)[-1]}"


def table_of(topic: str) -> str:
    """`public.<table>`, as the worker names the table in its metric labels."""
    return topic.split(".", 1)[-1]


def write_policy(app_id: str, path: Path) -> Path:
    """config/policy.yaml plus a minimal source for each of the run's named tables."""
    document = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text(encoding="utf-8"))
    for kind in NAMED_KINDS:
        document["sources"][table_of(run_topic(app_id, kind))] = {
            "primary_key": ["id"],
            "subject": [{"kind": "customer", "column": "id"}],
            "columns": {"id": "bigint", "handled_at": "timestamptz"},
            "rules": [
                {
                    "purpose": "information_requests",
                    "stages": [{"action": "delete", "due": {"after": "P1Y", "from": "handled_at"}}],
                }
            ],
        }
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    named = {source.topic for source in load_policy(path).sources.values()}
    assert {run_topic(app_id, kind) for kind in NAMED_KINDS} <= named
    return path


@pytest.fixture(scope="module")
def worker(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    app_id = APP_ID_PREFIX + uuid.uuid4().hex[:8]
    workdir = tmp_path_factory.mktemp("worker")
    own = {run_topic(app_id, kind) for kind in (*NAMED_KINDS, STRAY_KIND)}
    try:
        policy = write_policy(app_id, workdir / "policy.yaml")
        # its policy names the demo's tables: never change their rows
        handle = start_worker(app_id, workdir, policy, env={"LETHE_ENFORCE": "off"})
        with serving(handle):
            yield handle
    finally:
        forget_topics(stack, app_id, topics=own)


def change_record(row_id: int, note: str = "") -> tuple[bytes, bytes]:
    """A Debezium create of row `row_id` (key, value), without schema envelope."""
    after = {"id": row_id, "note": note} if note else {"id": row_id}
    value = {"op": "c", "before": None, "after": after, "source": {"ts_ms": 1_700_000_000_000}}
    return orjson.dumps({"id": row_id}), orjson.dumps(value)


def deadletter_end(settings: Settings) -> int:
    consumer = Consumer({**quiet(settings), "group.id": "unused"})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(DEADLETTER_TOPIC, 0), timeout=10)
        return int(high)
    finally:
        consumer.close()


def read_dead_letter(
    settings: Settings, start: int, topic: str, partition: int, offset: int, worker: WorkerProcess
) -> dict[str, object]:
    consumer = Consumer(
        {
            **quiet(settings),
            "group.id": f"lethe-it-reader-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(DEADLETTER_TOPIC, 0, start)])

    def probe() -> dict[str, object] | None:
        message = consumer.poll(1.0)
        if message is None or message.error():
            return None
        record = orjson.loads(message.value())
        source = (record.get("topic"), record.get("partition"), record.get("offset"))
        return record if source == (topic, partition, offset) else None

    try:
        return wait_for(f"the dead letter of {topic}[{partition}]@{offset}", probe, worker)
    finally:
        consumer.close()


def wait_for_topic(settings: Settings, name: str, worker: WorkerProcess) -> None:
    admin = AdminClient(quiet(settings))
    wait_for(
        f"topic {name} to be created by the worker",
        lambda: True if name in admin.list_topics(timeout=10).topics else None,
        worker,
    )


def insert_update_delete(settings: Settings) -> int:
    """Insert, update and delete one info request; return its id."""
    import psycopg

    marker = uuid.uuid4().hex[:12]
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        row = conn.execute(
            f"INSERT INTO {TABLE} (email, full_name, content, received_at) "
            "VALUES (%s, %s, %s, now()) RETURNING id",
            (f"it-{marker}@example.org", "Integration Test", "walking skeleton"),
        ).fetchone()
        assert row is not None
        row_id = int(row[0])
        conn.execute(f"UPDATE {TABLE} SET handled_at = now() WHERE id = %s", (row_id,))
        conn.execute(f"DELETE FROM {TABLE} WHERE id = %s", (row_id,))
    return row_id


def test_a_topic_the_policy_names_is_created_before_subscribing_and_its_first_record_counted(
    worker: WorkerProcess,
) -> None:
    """Runs first: the record is produced as soon as the worker serves /metrics."""
    settings = Settings.from_env()
    topic = run_topic(worker.app_id, "absent")
    assert topic in AdminClient(quiet(settings)).list_topics(timeout=10).topics, (
        f"{topic} is named by the policy: the worker creates it before it subscribes"
    )
    key, value = change_record(4242)
    produce(settings, topic, key, value)
    wait_for(
        lambda: (
            f"/metrics to count the first record of {topic}: "
            f"{worker.change_counts(table_of(topic))}"
        ),
        lambda: True if worker.change_counts(table_of(topic)) == {"c": 1} else None,
        worker,
    )


def test_worker_counts_changes_and_dead_letters_garbage(worker: WorkerProcess) -> None:
    settings = Settings.from_env()
    wait_for_topic(settings, DEADLETTER_TOPIC, worker)
    start = deadletter_end(settings)

    garbage_topic = run_topic(worker.app_id, "garbage")
    garbage = b"\x00this is not a debezium record " + uuid.uuid4().hex.encode()
    partition, offset = produce(settings, garbage_topic, b'{"id": -1}', garbage)
    record = read_dead_letter(settings, start, garbage_topic, partition, offset, worker)
    assert record["reason"] == "not_json"
    assert isinstance(record["value_b64"], str)
    assert base64.b64decode(record["value_b64"]) == garbage
    assert record["detail"], "a dead letter says what is wrong"

    dead = (
        "lethe_dead_letters_total",
        frozenset({("topic", garbage_topic), ("reason", "not_json")}),
    )
    wait_for(
        f"/metrics to count the dead letter of {garbage_topic}",
        lambda: True if (worker.metrics() or {}).get(dead) == 1 else None,
        worker,
    )

    # The worker is still counting after the garbage: the row's changes arrive later.
    with TopicTally(settings, TABLE_TOPIC) as topic:
        row_id = insert_update_delete(settings)
        wait_for(
            f"c/u/d and the tombstone of {TABLE} id={row_id} on {TABLE_TOPIC}",
            lambda: True if topic.read().ops_of(row_id) == ["c", "u", "d", TOMBSTONE] else None,
        )

        def counted_as_on_the_topic() -> bool | None:
            counted = worker.change_counts(TABLE_LABEL)
            return True if counted == dict(topic.read().ops) else None

        wait_for(
            lambda: (
                f"/metrics to count every record of {TABLE_TOPIC} by op: the topic holds "
                f"{dict(topic.ops)}, /metrics shows {worker.change_counts(TABLE_LABEL)}"
            ),
            counted_as_on_the_topic,
            worker,
        )

    for hidden in ("/table/", "/router/"):
        url = worker.metrics_url.replace("/metrics", hidden)
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(url, timeout=5)
        assert answer.value.code == 404, f"{hidden} must not be served (it exposes tables/topology)"

    personal = re.compile(r"it-[0-9a-f]{12}@example\.org")
    assert not personal.search(worker.log()), "a row value (email) leaked into the worker log"
    assert worker.process.poll() is None, "the worker died"


def test_a_dead_letter_too_large_for_its_topic_goes_without_its_raw_record(
    worker: WorkerProcess,
) -> None:
    """900 kB of garbage fits a change topic, but not base64-encoded in a dead letter (over the
    producer's 1 MB request limit, an error that cannot heal): the dead letter goes without
    the raw record, with its size, and the worker goes on with the next record."""
    settings = Settings.from_env()
    wait_for_topic(settings, DEADLETTER_TOPIC, worker)
    start = deadletter_end(settings)
    garbage_topic = run_topic(worker.app_id, "garbage")
    huge = b"\x00" + uuid.uuid4().hex.encode() * (900_000 // 32)
    partition, offset = produce(settings, garbage_topic, b'{"id": -2}', huge)
    record = read_dead_letter(settings, start, garbage_topic, partition, offset, worker)
    assert record["reason"] == "not_json"
    assert record["value_b64"] is None, "the raw record does not fit; it must be left out"
    assert record["value_bytes"] == len(huge)
    assert "MessageSizeTooLarge" in record["raw_dropped"]

    topic = run_topic(worker.app_id, "absent")
    before = worker.change_counts(table_of(topic)).get("c", 0)
    key, value = change_record(4545)
    produce(settings, topic, key, value)
    wait_for(
        f"/metrics to count the record of {topic} produced after the huge garbage",
        lambda: True if worker.change_counts(table_of(topic)).get("c", 0) == before + 1 else None,
        worker,
    )
    assert worker.process.poll() is None, "the worker died"


def test_a_table_the_policy_does_not_name_is_reported_and_never_read(
    worker: WorkerProcess,
) -> None:
    settings = Settings.from_env()
    topic = run_topic(worker.app_id, STRAY_KIND)
    ensure_topic(settings, topic)
    key, value = change_record(4343)
    produce(settings, topic, key, value)
    unclassified = ("lethe_unclassified_tables", frozenset({("topic", topic)}))
    wait_for(
        f"/metrics to report {topic} in lethe_unclassified_tables",
        lambda: True if (worker.metrics() or {}).get(unclassified) == 1 else None,
        worker,
    )
    assigned = assigned_topics(settings, worker.app_id)
    assert run_topic(worker.app_id, "absent") in assigned, f"the worker reads {sorted(assigned)}"
    assert topic not in assigned, f"{topic} must not be read"
    assert worker.change_counts(table_of(topic)) == {}, f"{topic} must not be read"
    assert worker.process.poll() is None, "the worker died"


def assigned_topics(settings: Settings, group: str) -> set[str]:
    """The topics of the partitions assigned to the members of consumer group `group`."""
    admin = AdminClient(quiet(settings))
    description = admin.describe_consumer_groups([group])[group].result(timeout=30)
    return {
        partition.topic
        for member in description.members
        for partition in member.assignment.topic_partitions
    }


@pytest.mark.parametrize("codec", CODECS)
def test_a_compressed_change_record_is_counted(worker: WorkerProcess, codec: str) -> None:
    settings = Settings.from_env()
    topic = run_topic(worker.app_id, codec)
    key, value = change_record(4444, note=f"compressible {codec} " * 200)
    produce(settings, topic, key, value, **{"compression.type": codec, "linger.ms": "0"})
    wait_for(
        lambda: (
            f"/metrics to count the {codec} record of {topic}: "
            f"{worker.change_counts(table_of(topic))}"
        ),
        lambda: True if worker.change_counts(table_of(topic)) == {"c": 1} else None,
        worker,
    )
    assert worker.process.poll() is None, "the worker died"


class TopicTally:
    """Reads a change topic from its start and counts its records by operation, as the
    worker labels them: Debezium's `op` (c, u, d, r), or tombstone for a null value."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.consumer = Consumer(
            {
                **quiet(settings),
                "group.id": f"lethe-it-tally-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
            }
        )
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        self.ops: Counter[str] = Counter()
        self.by_id: dict[object, list[str]] = {}

    def __enter__(self) -> TopicTally:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.consumer.close()

    def read(self) -> TopicTally:
        """Count every record that has arrived since the last read."""
        while messages := self.consumer.consume(500, timeout=1.0):
            for message in messages:
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, str(error)
                    continue
                op = TOMBSTONE if message.value() is None else str(_payload(message.value())["op"])
                self.ops[op] += 1
                self.by_id.setdefault(_payload(message.key()).get("id"), []).append(op)
        return self

    def ops_of(self, row_id: int) -> list[str]:
        return self.by_id.get(row_id, [])


def _payload(raw: bytes | None) -> dict[str, object]:
    """A Debezium key or value with or without its schema envelope."""
    document = orjson.loads(raw or b"{}")
    inner = document.get("payload", document) if isinstance(document, dict) else None
    return inner if isinstance(inner, dict) else {}
