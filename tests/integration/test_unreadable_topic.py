"""Row 7 of the fault matrix: a change topic compressed with a codec the worker cannot read.

The worker runs without the library aiokafka decompresses snappy, lz4 and zstd with
(`cramjam`: a module of that name that refuses to import is put first on its PYTHONPATH, as
an install without aiokafka's codec extras would be). Its policy names two tables of the
run's own (connection_logs' rules, LETHE_ENFORCE=off). A snappy-compressed record goes to
one, plain records to the other, before and after it. Before Lethe set such a partition
aside, aiokafka's `UnsupportedCodecError` crashed Faust's fetcher and the worker exited 1 about
10 s later, naming neither the topic nor the fix, with no record of the other topic processed
(tried on 2026-11-30). Now:
- the worker stays up and goes on with the other topic: every plain record is counted;
- `lethe_unreadable_partitions{topic,partition}` is 1 for the snappy partition, 0 for the
  other;
- the log names the topic and partition, the codec and the fix, once (no loop), and the
  worker's CPU time stays low while it waits (no spinning);
- nothing of the snappy partition is committed past its record;
- restarted with the codec (same app id and data), the worker reads the snappy record.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition

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
APP_ID_PREFIX = "poison-it-codec-"
PLAIN_BEFORE, PLAIN_AFTER = 3, 5
IDLE_S = 10.0
IDLE_CPU_S = 2.0
"""CPU seconds the worker may use in IDLE_S of waiting with the partition set aside (a
worker that refetched the batch in a loop would use nearly all of them)."""


def topics_of(app_id: str) -> tuple[str, str]:
    run = app_id.rsplit("-", 1)[-1]
    return f"hosting.public.poison_plain_{run}", f"hosting.public.poison_snappy_{run}"


def write_policy(app_id: str, path: Path) -> Path:
    document = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text(encoding="utf-8"))
    rules = document["sources"]["public.connection_logs"]
    document["sources"] = {topic.split(".", 1)[1]: rules for topic in topics_of(app_id)}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def record(row_id: int) -> tuple[bytes, bytes]:
    after = {
        "id": row_id,
        "customer_id": 987_670_000 + row_id,
        "ip_address": "192.0.2.7 " * 40,
        "logged_at": "2024-06-15T08:30:00Z",
    }
    value = {"op": "c", "before": None, "after": after, "ts_ms": time.time_ns() // 1_000_000}
    return orjson.dumps({"id": row_id}), orjson.dumps(value)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, in clock ticks


def committed(settings: Settings, group: str, topic: str) -> int:
    consumer = Consumer({**quiet(settings), "group.id": group, "enable.auto.commit": False})
    try:
        [tp] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return max(tp.offset, 0)
    finally:
        consumer.close()


@pytest.fixture
def run(real_stack: Settings, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    app_id = APP_ID_PREFIX + uuid.uuid4().hex[:8]
    try:
        yield app_id, write_policy(app_id, tmp_path / "policy.yaml")
    finally:
        forget_topics(real_stack, app_id, topics=topics_of(app_id))


def counted(worker: WorkerProcess, topic: str) -> int:
    return sum((worker.change_counts(topic.split(".", 1)[1]) or {}).values())


def test_a_topic_in_a_codec_the_worker_cannot_read_is_set_aside_and_said(
    real_stack: Settings, run: tuple[str, Path], tmp_path: Path
) -> None:
    app_id, policy = run
    plain, snappy = topics_of(app_id)
    shim = tmp_path / "no-codecs"
    shim.mkdir()
    (shim / "cramjam.py").write_text(
        'raise ImportError("cramjam left out: no snappy, lz4 or zstd")\n', encoding="utf-8"
    )
    without_codecs = {"LETHE_ENFORCE": "off", "PYTHONPATH": str(shim)}
    with serving(start_worker(app_id, tmp_path, policy, env=without_codecs)) as worker:
        for row_id in range(PLAIN_BEFORE):
            produce(real_stack, plain, *record(row_id))
        produce(real_stack, snappy, *record(100), **{"compression.type": "snappy"})
        for row_id in range(PLAIN_BEFORE, PLAIN_BEFORE + PLAIN_AFTER):
            produce(real_stack, plain, *record(row_id))
        unreadable = (
            "lethe_unreadable_partitions",
            frozenset({("topic", snappy), ("partition", "0")}),
        )
        readable = (
            "lethe_unreadable_partitions",
            frozenset({("topic", plain), ("partition", "0")}),
        )
        wait_for(
            f"lethe_unreadable_partitions for {snappy}",
            lambda: True if (worker.metrics() or {}).get(unreadable) == 1 else None,
            worker,
        )
        wait_for(
            lambda: (
                f"the {PLAIN_BEFORE + PLAIN_AFTER} records of {plain} counted "
                f"({counted(worker, plain)})"
            ),
            lambda: True if counted(worker, plain) == PLAIN_BEFORE + PLAIN_AFTER else None,
            worker,
        )
        before = cpu_seconds(worker.process.pid)
        time.sleep(IDLE_S)
        idle_cpu = cpu_seconds(worker.process.pid) - before
        assert worker.process.poll() is None, "the worker stays up"
        assert idle_cpu < IDLE_CPU_S, f"{idle_cpu:.1f} CPU s in {IDLE_S:.0f} s: a loop"
        assert counted(worker, snappy) == 0
        assert (worker.metrics() or {}).get(readable) == 0
        said = [line for line in worker.log().splitlines() if f"Cannot read {snappy}[0]" in line]
        assert len(said) == 1, f"said once, not in a loop: {len(said)} times"
        assert "compressed with snappy" in said[0]
        assert "pip install 'aiokafka[lz4,snappy,zstd]'" in said[0]
        assert committed(real_stack, app_id, snappy) == 0, "nothing committed past the record"
        print(f"\nrow 7: set aside, {idle_cpu:.2f} CPU s in {IDLE_S:.0f} s idle")

    restarted = start_worker(app_id, tmp_path, policy, env={"LETHE_ENFORCE": "off"})
    with serving(restarted):
        wait_for(
            f"the snappy record of {snappy} counted once the worker has the codec",
            lambda: True if counted(restarted, snappy) == 1 else None,
            restarted,
        )
        assert (restarted.metrics() or {}).get(unreadable) == 0
