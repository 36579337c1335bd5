"""Delay from due time to command issued (issue 7, bench c), on the wall clock.

Run (needs the local stack; makes and drops its own table `bench_delay_<run>` in the demo
database, change topic and app id):

    .venv/bin/python bench/delay_bench.py [--rows 600] [--spread 60] [--lead 60] [--tracked 0]

Creates `public.bench_delay_<run>` (LIKE connection_logs, so that the shared JDBC sink can
apply the deletes), produces `--rows` Debezium creates of it whose deletes fall due one after
another over `--spread` seconds starting `--lead` seconds from now (the bench policy is the
`connection_logs` rule with `connection_log_retention` = PT1S), plus `--tracked` rows not due
for a year, and starts `lethe worker` (LETHE_CLOCK=wall, LETHE_TICK_INTERVAL as set, default
1 s, 8 internal partitions). The rows are read well before they fall due, so each command
is issued by a sweep, not on first sight. Each command's delay is the time the worker
produced it (the `lethe.commands` record's timestamp) minus its `due_at`. Prints the
percentiles; the target is p99 <= the tick interval + 1 s.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fastavro
import orjson
import psycopg
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from enforce_bench import forget, start_worker, write_logs_policy

from lethe.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = "lethe.commands"


def iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def produce(
    bootstrap: str, topic: str, first_due: datetime, rows: int, spread: float, tracked: int
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "log_level": 0})
    ts_ms = int(time.time() * 1000)
    later = first_due + timedelta(days=365)
    for row in range(1, rows + tracked + 1):
        due = first_due + timedelta(seconds=spread * (row - 1) / max(rows - 1, 1))
        if row > rows:
            due = later
        after = {
            "id": row,
            "customer_id": 800_000_000 + row,
            "ip_address": "192.0.2.1",
            "logged_at": iso(due - timedelta(seconds=1)),
        }
        value = {"before": None, "after": after, "source": {"ts_ms": ts_ms}, "op": "c"}
        producer.produce(topic, key=orjson.dumps({"id": row}), value=orjson.dumps(value))
        if row % 10_000 == 0:
            producer.flush(60)
    producer.flush(60)


def commands_end(bootstrap: str) -> list[TopicPartition]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-delay-probe", "log_level": 0}
    )
    try:
        partitions = consumer.list_topics(COMMANDS, timeout=10).topics[COMMANDS].partitions
        ends = []
        for partition in partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(COMMANDS, partition), 10)
            ends.append(TopicPartition(COMMANDS, partition, high))
        return ends
    finally:
        consumer.close()


def read_delays(
    bootstrap: str, start: list[TopicPartition], table: str, rows: int, deadline: float
) -> list[float]:
    """Seconds from due_at to the command record's timestamp, for the run's table."""
    schema = fastavro.parse_schema(
        orjson.loads((ROOT / "schemas" / "retention_command.avsc").read_bytes())
    )
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    consumer.assign(start)
    delays: dict[str, float] = {}
    try:
        while len(delays) < rows and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=1.0):
                if message.error() is not None:
                    if message.error().code() != KafkaError._PARTITION_EOF:
                        raise RuntimeError(str(message.error()))
                    continue
                command = fastavro.schemaless_reader(io.BytesIO(message.value()), schema)
                if command["table"] != f"public.{table}":
                    continue
                due = datetime.fromisoformat(command["due_at"].replace("Z", "+00:00"))
                produced = message.timestamp()[1] / 1000
                delays.setdefault(command["command_id"], produced - due.timestamp())
    finally:
        consumer.close()
    return list(delays.values())


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--spread", type=float, default=60.0)
    parser.add_argument("--lead", type=float, default=60.0)
    parser.add_argument("--tracked", type=int, default=0)
    parser.add_argument("--tick", type=float, default=1.0)
    args = parser.parse_args()
    settings = Settings.from_env()
    bootstrap = settings.kafka_bootstrap
    run = uuid.uuid4().hex[:8]
    table = f"bench_delay_{run}"
    topic = f"{settings.cdc_topic_prefix}.public.{table}"
    app_id = f"bench-delay-{run}"
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE public.{table} (LIKE public.connection_logs INCLUDING ALL)")
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    process = None
    try:
        with tempfile.TemporaryDirectory() as scratch:
            workdir = Path(scratch)
            policy = write_logs_policy(
                table, workdir / "policy.yaml", {"connection_log_retention": "PT1S"}
            )
            first_due = datetime.now(UTC) + timedelta(seconds=args.lead)
            produce(bootstrap, topic, first_due, args.rows, args.spread, args.tracked)
            start = commands_end(bootstrap)
            log_path = Path(tempfile.gettempdir()) / f"{app_id}.log"
            print(f"worker log: {log_path}", flush=True)
            process = start_worker(
                app_id,
                policy,
                workdir / "data",
                log_path,
                {"LETHE_TICK_INTERVAL": str(args.tick), "LETHE_CLOCK": "wall"},
            )
            deadline = time.monotonic() + args.lead + args.spread + 60
            delays = read_delays(bootstrap, start, table, args.rows, deadline)
            alive = process.poll() is None
            if len(delays) < args.rows:
                tail = log_path.read_text(errors="replace")[-3000:]
                print(f"only {len(delays)} of {args.rows} commands (worker alive: {alive})\n{tail}")
    finally:
        if process is not None:
            process.terminate()
            process.wait(60)
        forget(bootstrap, app_id, {topic, f"lethe.sink.public.{table}"})
        with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS public.{table}")
    if not delays:
        return 1
    early = [d for d in delays if d < 0]
    print(
        f"nproc {os.cpu_count()}, tick {args.tick:g} s, {args.rows} rows due over "
        f"{args.spread:g} s, {args.tracked} more tracked"
    )
    print("| commands | p50 ms | p90 ms | p99 ms | max ms | mean ms | early | target p99 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {len(delays)} | {percentile(delays, 0.5) * 1000:.0f} | "
        f"{percentile(delays, 0.9) * 1000:.0f} | {percentile(delays, 0.99) * 1000:.0f} | "
        f"{max(delays) * 1000:.0f} | {statistics.mean(delays) * 1000:.0f} | {len(early)} | "
        f"<= {(args.tick + 1) * 1000:.0f} ms |"
    )
    return 0 if not early else 2


if __name__ == "__main__":
    raise SystemExit(main())
