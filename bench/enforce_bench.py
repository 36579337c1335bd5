"""Events per second through `lethe worker`: the assign stage alone, and assign + enforce.

Run (needs the local broker; creates and deletes its own `bench_enforce_*` topics, their sink
topic `lethe.sink.public.bench_enforce_*` (left empty) and app ids):
`.venv/bin/python bench/enforce_bench.py [--events N] [--subjects S]`

Produces N Debezium creates of `connection_logs` rows (S customers, logged now: nothing falls
due, so nothing is sent to `lethe.commands` or a sink) into a change topic of its own (one
partition), then starts `lethe worker` (own app id, policy with that one source,
LETHE_INTERNAL_PARTITIONS=8) twice: with LETHE_ENFORCE=off and on. Reports, for each, the
seconds from the first to the last commit the worker made of the change topic (assign) and
of `<app id>-subject-events` (enforce), and N / those seconds. Faust commits every 2.8 s, so
the figures are rough (take N large enough for tens of seconds); the machine is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import yaml
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
PARTITIONS = 8


def produce(bootstrap: str, topic: str, events: int, subjects: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "log_level": 0})
    now = datetime.now(UTC)
    logged = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    ts_ms = int(now.timestamp() * 1000)
    for row in range(1, events + 1):
        after = {
            "id": row,
            "customer_id": 900_000_000 + row % subjects,
            "ip_address": "192.0.2.1",
            "logged_at": logged,
        }
        value = {"before": None, "after": after, "source": {"ts_ms": ts_ms}, "op": "c"}
        producer.produce(topic, key=orjson.dumps({"id": row}), value=orjson.dumps(value))
        if row % 10_000 == 0:
            producer.flush(60)
    producer.flush(60)


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "log_level": 0})
    try:
        offsets = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
        return sum(max(tp.offset, 0) for tp in offsets)
    except KafkaException:
        return 0
    finally:
        consumer.close()


def run_worker(
    bootstrap: str, topic: str, policy: Path, events: int, enforce: bool, workdir: Path
) -> tuple[float, float | None]:
    app_id = f"bench-enforce-{uuid.uuid4().hex[:8]}"
    process = start_worker(
        app_id,
        policy,
        workdir / app_id,
        workdir / f"{app_id}.log",
        {"LETHE_KAFKA_BOOTSTRAP": bootstrap, "LETHE_ENFORCE": "on" if enforce else "off"},
    )
    subject_events = f"{app_id}-subject-events"
    first: dict[str, float] = {}
    done: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline and process.poll() is None:
            assigned = committed(bootstrap, app_id, topic, 1)
            now = time.monotonic()
            if assigned and "assign" not in first:
                first["assign"] = now
            if assigned >= events and "assign" not in done:
                done["assign"] = now
            if enforce:
                enforced = committed(bootstrap, app_id, subject_events, PARTITIONS)
                if enforced and "enforce" not in first:
                    first["enforce"] = now
                if enforced >= events and "enforce" not in done:
                    done["enforce"] = now  # ticks add records: reached at least the events
            if "assign" in done and (not enforce or "enforce" in done):
                break
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(60)
        forget(bootstrap, app_id, set())
    if "assign" not in done or (enforce and "enforce" not in done):
        tail = (workdir / f"{app_id}.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"the worker did not get through the events:\n{tail}")
    assign_s = done["assign"] - first["assign"]
    enforce_s = done["enforce"] - first["enforce"] if enforce else None
    return assign_s, enforce_s


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_worker(
    app_id: str,
    policy: Path,
    data_dir: Path,
    log_path: Path,
    env: dict[str, str],
    script: Path | None = None,
) -> subprocess.Popen[bytes]:
    """`lethe worker --app-id <app_id> -l warning` enforcing `policy` with
    LETHE_INTERNAL_PARTITIONS=PARTITIONS, its data in `data_dir`, its output written to
    `log_path`; `env` adds variables or overrides these (this shell's LETHE_CLOCK* dropped).
    `script`: a wrapper of `lethe.cli.main` (e.g. bench/timed_worker.py) run instead."""
    worker_env = {n: v for n, v in os.environ.items() if not n.startswith("LETHE_CLOCK")}
    worker_env.update(
        {
            "LETHE_DATA_DIR": str(data_dir),
            "LETHE_WEB_PORT": str(free_port()),
            "LETHE_POLICY": str(policy),
            "LETHE_INTERNAL_PARTITIONS": str(PARTITIONS),
            **env,
        }
    )
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [
                sys.executable,
                *(["-m", "lethe"] if script is None else [str(script)]),
                *("worker", "--app-id", app_id, "-l", "warning"),
            ],
            cwd=ROOT,
            env=worker_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def write_logs_policy(
    table: str, path: Path, parameters: dict[str, str] | None = None, schema: str = "public"
) -> Path:
    """config/policy.yaml with `<schema>.<table>`, under connection_logs' rules, as its only
    source; `parameters` (name: value) replace those parameters' defaults."""
    document = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text())
    document["sources"] = {f"{schema}.{table}": document["sources"]["public.connection_logs"]}
    for name, value in (parameters or {}).items():
        document["parameters"][name]["default"] = value
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def forget(bootstrap: str, app_id: str, topics: set[str]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    doomed = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"{app_id}-")]
    doomed += sorted(topics)
    futures = list(admin.delete_consumer_groups([app_id]).values())
    if doomed:
        futures += list(admin.delete_topics(doomed).values())
    for future in futures:
        with contextlib.suppress(KafkaException):
            future.result(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--subjects", type=int, default=1_000)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = parser.parse_args()
    table = f"bench_enforce_{uuid.uuid4().hex[:8]}"
    topic = f"hosting.public.{table}"
    admin = AdminClient({"bootstrap.servers": args.bootstrap, "log_level": 0})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    try:
        produce(args.bootstrap, topic, args.events, args.subjects)
        with tempfile.TemporaryDirectory() as scratch:
            workdir = Path(scratch)
            policy = write_logs_policy(table, workdir / "policy.yaml")
            for enforce in (False, True):
                assign_s, enforce_s = run_worker(
                    args.bootstrap, topic, policy, args.events, enforce, workdir
                )
                line = f"LETHE_ENFORCE={'on' if enforce else 'off'}: assign {assign_s:.1f} s"
                line += f" ({args.events / max(assign_s, 1e-9):,.0f} ev/s)"
                if enforce_s is not None:
                    rate = args.events / max(enforce_s, 1e-9)
                    line += f", enforce {enforce_s:.1f} s ({rate:,.0f} ev/s)"
                print(line, flush=True)
    finally:
        forget(args.bootstrap, "bench-enforce-none", {topic, f"lethe.sink.public.{table}"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
