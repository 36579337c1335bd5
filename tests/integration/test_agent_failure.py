"""Row 7 of the fault matrix: an agent that fails while the worker stays up.

Faust 0.15 restarts an agent that raises and acknowledges the record it raised on; tried on
2026-11-30 (a toy app, the local broker): the worker stayed up and committed past the record,
which was never processed again (`lethe.consumer.Consumer.on_task_error`). Here the assign
agent of a worker (tests/integration/failing_worker.py) fails on one change record, as a bug
would. Then:
- the worker exits with code 1 within a minute, its log saying on which record (topic,
  partition, offset) an agent failed, and what to do;
- its consumer group has committed nothing past the record before it;
- the next worker of the app (without the failure) processes that record and the next.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import yaml
from confluent_kafka import Consumer, TopicPartition

from lethe.settings import Settings
from tests.integration.failing_worker import FAILING_KEY
from tests.integration.workers import (
    WorkerProcess,
    forget_topics,
    free_port,
    produce,
    quiet,
    serving,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FAILING = Path(__file__).with_name("failing_worker.py")
APP_ID_PREFIX = "poison-it-agent-"
EXIT_WITHIN_S = 60.0


def write_policy(app_id: str, path: Path) -> tuple[Path, str]:
    run = app_id.rsplit("-", 1)[-1]
    source = f"public.poison_agent_{run}"
    document = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text(encoding="utf-8"))
    document["sources"] = {source: document["sources"]["public.connection_logs"]}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path, f"hosting.{source}"


def record(row_id: int) -> tuple[bytes, bytes]:
    after = {
        "id": row_id,
        "customer_id": 987_680_000 + row_id,
        "ip_address": "192.0.2.9",
        "logged_at": "2024-06-15T08:30:00Z",
    }
    value = {"op": "c", "before": None, "after": after, "ts_ms": time.time_ns() // 1_000_000}
    return orjson.dumps({"id": row_id}), orjson.dumps(value)


def committed(settings: Settings, group: str, topic: str) -> int:
    consumer = Consumer({**quiet(settings), "group.id": group, "enable.auto.commit": False})
    try:
        [tp] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return max(tp.offset, 0)
    finally:
        consumer.close()


@pytest.fixture
def run(real_stack: Settings, tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    app_id = APP_ID_PREFIX + uuid.uuid4().hex[:8]
    policy, topic = write_policy(app_id, tmp_path / "policy.yaml")
    try:
        yield app_id, policy, topic
    finally:
        forget_topics(real_stack, app_id, topics=[topic])


def test_an_agent_that_fails_stops_the_worker_without_committing_its_record(
    real_stack: Settings, run: tuple[str, Path, str], tmp_path: Path
) -> None:
    app_id, policy, topic = run
    port = free_port()
    log_path = tmp_path / "failing.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LETHE_CLOCK")},
        "LETHE_DATA_DIR": str(tmp_path / "data"),
        "LETHE_WEB_PORT": str(port),
        "LETHE_POLICY": str(policy),
        "LETHE_ENFORCE": "off",
        "LETHE_INTERNAL_PARTITIONS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, str(FAILING), "--app-id", app_id, "-l", "info"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    failing = WorkerProcess(process, log_path, f"http://127.0.0.1:{port}/metrics", app_id)
    try:
        wait_for("the failing worker's /metrics page", failing.metrics, failing)
        produce(real_stack, topic, *record(1))
        wait_for(
            "the first record counted",
            lambda: True if (failing.change_counts(topic.split(".", 1)[1]) or {}) else None,
            failing,
        )
        partition, offset = produce(real_stack, topic, FAILING_KEY, record(666)[1])
        produce(real_stack, topic, *record(2))
        started = time.monotonic()
        code = process.wait(timeout=EXIT_WITHIN_S)
        exited_s = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert code == 1, f"exit code {code}\n{failing.tail()}"
    said = [line for line in failing.log().splitlines() if "failed on" in line]
    assert said, failing.tail()
    assert f"An agent failed on {topic}[{partition}]@{offset} with RuntimeError" in said[0]
    assert "restart it" in said[0]
    assert committed(real_stack, app_id, topic) <= offset, "committed past the failed record"
    print(f"\nrow 7: agent failure, worker exited 1 after {exited_s:.1f}s")

    with serving(start_worker(app_id, tmp_path, policy, env={"LETHE_ENFORCE": "off"})) as worker:
        wait_for(
            lambda: (
                f"the failed record and the next processed (committed "
                f"{committed(real_stack, app_id, topic)})"
            ),
            lambda: True if committed(real_stack, app_id, topic) == offset + 2 else None,
            worker,
        )
        counts = worker.change_counts(topic.split(".", 1)[1]) or {}
        assert counts.get("c", 0) >= 2, counts
