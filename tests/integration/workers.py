"""Helpers of the integration tests that run `lethe worker` as a subprocess: Kafka client
settings, a free port, producing one record, the worker process and its /metrics, a
bounded wait that fails with the worker's log, a run on a copy of connection_logs, starting,
serving and stopping a worker, reading a topic to its end and the commands of a table,
forgetting a run's topics and tables, and waiting for the worker and the JDBC sink
`lethe-sink` to catch up."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import fastavro
import psycopg
import pytest
import yaml
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from lethe import topics
from lethe.settings import Settings
from lethe.stack.connect import SinkConnector
from lethe.stack.process import http
from lethe.topics.batches import read_batch
from policy.event_wire import decode_event
from policy.events import ChangeEvent

SINK_GROUP = "connect-lethe-sink"
"""The consumer group of the stack's JDBC sink connector `lethe-sink`."""
TIMEOUT_S = 120.0
"""How long any wait lasts at most."""

T = TypeVar("T")


def wait_for(
    what: str | Callable[[], str],
    probe: Callable[[], T | None],
    worker: WorkerProcess | None = None,
    timeout_s: float = TIMEOUT_S,
) -> T:
    """Poll `probe` until it returns something; fail with `what` (a text, or a function
    that says what was seen last) and the worker log after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if worker is not None and worker.process.poll() is not None:
            pytest.fail(
                f"lethe worker exited ({worker.process.returncode}) while waiting for "
                f"{_text(what)}\n{worker.tail()}"
            )
        result = probe()
        if result is not None:
            return result
        time.sleep(0.5)
    tail = worker.tail() if worker is not None else ""
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {_text(what)}\n{tail}")


def _text(what: str | Callable[[], str]) -> str:
    return what if isinstance(what, str) else what()


def quiet(settings: Settings) -> dict[str, object]:
    """Client config; librdkafka's own connection logs off (failures raise anyway)."""
    return {"bootstrap.servers": settings.kafka_bootstrap, "log_level": 0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    metrics_url: str
    app_id: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, lines: int = 40) -> str:
        return "--- worker log (tail) ---\n" + "\n".join(self.log().splitlines()[-lines:])

    def change_counts(self, table: str) -> dict[str, int] | None:
        """lethe_change_events_total of `table` by op, as /metrics shows it now."""
        metrics = self.metrics()
        if metrics is None:
            return None
        return {
            dict(labels)["op"]: int(value)
            for (name, labels), value in metrics.items()
            if name == "lethe_change_events_total" and dict(labels).get("table") == table
        }

    def sample(self, name: str, **labels: str) -> float:
        """The value of one sample of /metrics now (0 when absent or the page does not
        answer)."""
        return (self.metrics() or {}).get((name, frozenset(labels.items())), 0.0)

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return None
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


def produce(
    settings: Settings, topic: str, key: bytes | None, value: bytes, **config: str
) -> tuple[int, int]:
    """Produce one record (producer `config` added, e.g. compression.type); return its
    (partition, offset)."""
    producer = Producer({**quiet(settings), **config})
    delivered: list[tuple[int, int]] = []

    def on_delivery(err: object, msg: object) -> None:
        assert err is None, f"produce to {topic} failed: {err}"
        delivered.append((msg.partition(), msg.offset()))  # type: ignore[attr-defined]

    producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
    producer.flush(30)
    assert delivered, f"no delivery report for the record sent to {topic}"
    return delivered[0]


ROOT = Path(__file__).resolve().parents[2]
COMMAND_SCHEMA = fastavro.parse_schema(
    json.loads((ROOT / "schemas" / "retention_command.avsc").read_text(encoding="utf-8"))
)


@dataclass
class LogsRun:
    """A run on its own copy `table` of the demo's connection_logs, its files in `workdir`."""

    app_id: str
    table: str
    workdir: Path

    @property
    def source(self) -> str:
        return f"public.{self.table}"

    @property
    def topic(self) -> str:
        return f"hosting.public.{self.table}"

    def write_policy(self) -> Path:
        """config/policy.yaml with the run's table, under connection_logs' rules, as its only
        source."""
        document = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text(encoding="utf-8"))
        document["sources"] = {self.source: document["sources"]["public.connection_logs"]}
        path = self.workdir / "policy.yaml"
        path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        return path


@contextlib.contextmanager
def logs_run(settings: Settings, app_id_prefix: str, name: str, workdir: Path) -> Iterator[LogsRun]:
    """A `LogsRun` (app id `app_id_prefix` + a hex id, table `it_<name>_<hex>_connection_logs`,
    a copy of the demo's) with its table and change topic created; its table, topics and
    consumer group dropped on leaving."""
    hexed = uuid.uuid4().hex[:8]
    run = LogsRun(f"{app_id_prefix}{hexed}", f"it_{name}_{hexed}_connection_logs", workdir)
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {run.table} (LIKE connection_logs INCLUDING ALL)")
    admin = AdminClient(quiet(settings))
    try:
        for future in admin.create_topics(
            [NewTopic(run.topic, num_partitions=1, replication_factor=1)]
        ).values():
            future.result(timeout=30)
        yield run
    finally:
        drop_run(settings, run.app_id, run.table, [run.table])


def start_worker(
    app_id: str,
    workdir: Path,
    policy: Path,
    *,
    log_name: str = "worker.log",
    env: Mapping[str, str] | None = None,
    loglevel: str = "info",
) -> WorkerProcess:
    """`lethe worker --app-id <app_id>` enforcing `policy` under the wall clock (ticks every
    0.5 s, LETHE_INTERNAL_PARTITIONS=2), its data in `workdir/data` (kept between starts), its
    log (at `loglevel`) appended to `workdir/<log_name>`; `env` adds variables or overrides
    these."""
    port = free_port()
    log_path = workdir / log_name
    worker_env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("LETHE_CLOCK") and name != "LETHE_ENFORCE"
    }
    worker_env.update(
        {
            "LETHE_DATA_DIR": str(workdir / "data"),
            "LETHE_WEB_PORT": str(port),
            "LETHE_POLICY": str(policy),
            "LETHE_INTERNAL_PARTITIONS": "2",
            "LETHE_CLOCK": "wall",
            "LETHE_TICK_INTERVAL": "0.5",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
    )
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "lethe", "worker", "--app-id", app_id, "-l", loglevel],
            cwd=ROOT,
            env=worker_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    return WorkerProcess(process, log_path, f"http://127.0.0.1:{port}/metrics", app_id)


@contextlib.contextmanager
def serving(worker: WorkerProcess) -> Iterator[WorkerProcess]:
    """The worker once its /metrics page answers; stopped on leaving."""
    try:
        wait_for("the worker's /metrics page", worker.metrics, worker)
        yield worker
    finally:
        stop(worker)


def stop(worker: WorkerProcess) -> None:
    """Stop the worker (SIGTERM, then SIGKILL after 30 s)."""
    process = worker.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def read_topic(settings: Settings, topic: str) -> list[Message]:
    """Every record of `topic` (all partitions) up to the end it has now."""
    consumer = Consumer({**quiet(settings), "group.id": f"lethe-it-read-{uuid.uuid4().hex[:12]}"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        position = dict.fromkeys(partitions, 0)
        records: list[Message] = []
        deadline = time.monotonic() + 60
        while any(position[p] < end for p, end in ends.items()):
            assert time.monotonic() < deadline, f"could not read {topic} to its end"
            for message in consumer.consume(500, timeout=0.5):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, str(error)
                    continue
                position[message.partition()] = message.offset() + 1
                records.append(message)
        return records
    finally:
        consumer.close()


def commands_of(settings: Settings, table: str) -> list[dict[str, Any]]:
    """The records on `lethe.commands` (decoded with the published Avro schema) of `table`."""
    if "lethe.commands" not in AdminClient(quiet(settings)).list_topics(timeout=10).topics:
        return []
    found = []
    for message in read_topic(settings, "lethe.commands"):
        command = fastavro.schemaless_reader(io.BytesIO(message.value()), COMMAND_SCHEMA)
        if isinstance(command, dict) and command["table"] == table:
            found.append(command)
    return found


def forget_topics(
    settings: Settings, app_id: str, marker: str = "", topics: Collection[str] = ()
) -> None:
    """Delete the consumer group `app_id`, its topics, every topic whose name holds `marker`
    (when given) and `topics`; but the sink topics of run tables, which the stack's shared
    `lethe-sink` reads (`RUN_SINK_TOPICS`): deleting one under it stalls that sink for later
    tests, so they stay until the next session sweeps them (`sweep_run_sink_topics`)."""
    admin = AdminClient(quiet(settings))
    doomed = [
        topic
        for topic in admin.list_topics(timeout=10).topics
        if (topic.startswith(f"{app_id}-") or (marker and marker in topic) or topic in topics)
        and not RUN_SINK_TOPICS.fullmatch(topic)
    ]
    futures = list(admin.delete_consumer_groups([app_id]).values())
    if doomed:
        futures += list(admin.delete_topics(doomed).values())
    for future in futures:
        with contextlib.suppress(KafkaException):
            future.result(timeout=30)


RUN_SINK_TOPICS: Final = re.compile(r"lethe\.sink\.public\.it_.+")
"""The sink topics of the tests' run tables (copies of demo tables named `it_...`)."""


def sweep_run_sink_topics(settings: Settings) -> list[str]:
    """Delete the run tables' sink topics earlier sessions left (`forget_topics` keeps them),
    then restart the shared `lethe-sink` with its tasks, so that it starts this session
    subscribed to live topics only; returns the topics deleted. Nothing to delete: nothing
    restarted."""
    admin = AdminClient(quiet(settings))
    left = sorted(t for t in admin.list_topics(timeout=10).topics if RUN_SINK_TOPICS.fullmatch(t))
    if not left:
        return []
    for future in admin.delete_topics(left, operation_timeout=30).values():
        with contextlib.suppress(KafkaException):
            future.result(timeout=60)
    wait_for(
        f"{len(left)} run sink topics deleted",
        lambda: not (set(left) & set(admin.list_topics(timeout=10).topics)) or None,
    )
    sink = SinkConnector(settings)
    status, body = http("POST", f"{sink.url}/restart?includeTasks=true", timeout=30)
    assert status in (200, 202, 204), f"lethe-sink would not restart ({status}: {body})"
    time.sleep(2)  # the restart is asynchronous: let the old task stop first
    sink.wait_running()
    return left


def drop_run(settings: Settings, app_id: str, marker: str, tables: Collection[str]) -> None:
    """After a run on copies of demo tables: wait for `lethe-sink` to commit what it was sent
    for `tables`, forget the run's topics (`forget_topics`), then drop `tables`."""
    caught_up = sink_caught_up(settings, [f"lethe.sink.public.{table}" for table in tables])
    forget_topics(settings, app_id, marker)
    if not caught_up:
        time.sleep(10)  # the sink may still hold fetched records: let them fail on no topic
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        for table in tables:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def sink_caught_up(settings: Settings, sink_topics: list[str], timeout_s: float = 60.0) -> bool:
    """Wait until `lethe-sink` has committed every record of `sink_topics` (those that exist)."""
    consumer = Consumer({**quiet(settings), "group.id": SINK_GROUP, "enable.auto.commit": False})
    try:
        existing = consumer.list_topics(timeout=10).topics
        partitions = [
            TopicPartition(topic, partition)
            for topic in sink_topics
            if topic in existing
            for partition in existing[topic].partitions
        ]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            committed = consumer.committed(partitions, timeout=10)
            behind = [
                tp
                for tp in committed
                if consumer.get_watermark_offsets(tp, timeout=10)[1] > max(tp.offset, 0)
            ]
            if not behind:
                return True
            time.sleep(1.0)
        return False
    finally:
        consumer.close()


class Reader:
    """Reads a topic from its start (or from the offsets `start` gives, per partition), every
    partition; each `read` goes up to the end the topic had when it was called (ticks keep
    arriving on the subject events topic). Its consumer group never commits."""

    def __init__(self, settings: Settings, topic: str, start: dict[int, int] | None = None) -> None:
        self.consumer = Consumer(
            {
                **quiet(settings),
                "group.id": f"lethe-it-reader-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
            }
        )
        partitions = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.partitions = [TopicPartition(topic, p) for p in sorted(partitions)]
        first = {
            tp.partition: self.consumer.get_watermark_offsets(tp, timeout=10)[0]
            for tp in self.partitions
        }
        if start is not None:
            first = {p: max(offset, start.get(p, 0)) for p, offset in first.items()}
        self.consumer.assign(
            [
                TopicPartition(topic, p, first[p] if start is not None else OFFSET_BEGINNING)
                for p in first
            ]
        )
        self.next = dict(first)
        self.records: list[Any] = []

    def read(self) -> list[Any]:
        ends = {
            tp.partition: self.consumer.get_watermark_offsets(tp, timeout=10)[1]
            for tp in self.partitions
        }
        deadline = time.monotonic() + 30
        while any(self.next[p] < end for p, end in ends.items()):
            assert time.monotonic() < deadline, "could not read the topic to its end"
            for message in self.consumer.consume(500, timeout=0.5):
                error = message.error()
                if error is not None:
                    assert error.code() == KafkaError._PARTITION_EOF, str(error)
                    continue
                self.next[message.partition()] = message.offset() + 1
                self.records.append(message)
        return self.records

    def close(self) -> None:
        self.consumer.close()


@dataclass(frozen=True)
class Forward:
    """One forward on `<app id>-subject-events`: a plain record, or one of a batch's."""

    partition: int
    key: bytes | None
    headers: dict[str, bytes]
    value: bytes | None

    @property
    def event(self) -> tuple[ChangeEvent, tuple[str, int, int] | None] | None:
        """A `change` forward's event and where it was read (`policy.event_wire`); None for
        the other kinds."""
        if self.headers.get(topics.KIND_HEADER) != topics.CHANGE_KIND or self.value is None:
            return None
        return decode_event(self.value)

    @property
    def table(self) -> str | None:
        """The table of the row the forward is about (a tick's: None)."""
        decoded = self.event
        if decoded is not None:
            return decoded[0].table
        table = self.headers.get(topics.TABLE_HEADER)
        return None if table is None else table.decode()


def forwards(messages: Collection[Message]) -> list[Forward]:
    """The forwards of records read from `<app id>-subject-events`, a batch's one by one
    (the format of docs/design/enforcer.md, read with `lethe.topics.batches.read_batch`)."""
    found: list[Forward] = []
    for message in messages:
        headers = {name: value for name, value in message.headers() or [] if value is not None}
        partition = message.partition()
        if headers.get(topics.KIND_HEADER) == topics.BATCH_KIND:
            found += [
                Forward(partition, item.key, item.headers, item.value)
                for item in read_batch(message.value())
            ]
        else:
            found.append(Forward(partition, message.key(), headers, message.value()))
    return found


def topic_ends(settings: Settings, topic: str) -> dict[int, int]:
    """The end offset of every partition of `topic` now."""
    consumer = Consumer(
        {**quiet(settings), "group.id": "lethe-it-ends", "enable.auto.commit": False}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in sorted(partitions)
        }
    finally:
        consumer.close()


def subject_events_processed(settings: Settings, app_id: str, partitions_count: int) -> bool | None:
    """Whether the worker has committed everything now on its subject events topic
    (`partitions_count` partitions); None after 60 s."""
    topic = f"{app_id}-subject-events"
    consumer = Consumer({**quiet(settings), "group.id": app_id, "enable.auto.commit": False})
    try:
        partitions = [TopicPartition(topic, p) for p in range(partitions_count)]
        ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            committed = consumer.committed(partitions, timeout=10)
            if all(max(tp.offset, 0) >= end for tp, end in zip(committed, ends, strict=True)):
                return True
            time.sleep(0.5)
        return None
    finally:
        consumer.close()


def committed_to_end(settings: Settings, group: str, topics: list[str]) -> bool | None:
    """Whether `group` has committed every partition of `topics` up to its end as of now."""
    consumer = Consumer({**quiet(settings), "group.id": group, "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(timeout=10).topics
        partitions = [TopicPartition(t, p) for t in topics for p in metadata[t].partitions]
        ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions]
        committed = consumer.committed(partitions, timeout=10)
        done = all(max(tp.offset, 0) >= end for tp, end in zip(committed, ends, strict=True))
        return True if done else None
    finally:
        consumer.close()
