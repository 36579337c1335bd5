"""A Kafka Connect task that FAILED is seen by the worker (`lethe.connect_watch`), on the real
stack's Connect.

The test registers a JDBC sink connector of its own, `connectstate-<hex>`, on a topic of its
own (not one of `lethe.sink.public.*`, so the stack's `lethe-sink` never reads it), whose
`connection.url` points at a closed port. Connect starts the connector (RUNNING) and its task,
which fails to reach the database and stays FAILED (measured on the stack's Connect 4.3 and
Debezium 3.6: FAILED about 30 s after the registration, "Could not create connection"). A
worker polling Connect every second (LETHE_CONNECT_POLL_INTERVAL=1, LETHE_ENFORCE=off, on a
copy of connection_logs) must show on /metrics:
- `lethe_connector_tasks{connector=<it>,state="FAILED"}` 1 (and RUNNING 0), while the
  connector's own state stays RUNNING: the failure is the task's, which the stack's health
  check (`lethe stack status`) and the connector's state do not show;
- the stack's source connector `hosting` with its task RUNNING, `lethe_connect_up` 1;
- the log line naming the connector and the task, without the task's trace.
Once the connector is deleted, its series leave /metrics. The connector is deleted and the
run's topics dropped at the end, whatever happens. Fails (never skips) when the stack is down.
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lethe.settings import Settings
from tests.integration.workers import (
    WorkerProcess,
    forget_topics,
    free_port,
    logs_run,
    serving,
    start_worker,
    wait_for,
)

pytestmark = pytest.mark.integration

APP_ID_PREFIX = "connectstate-it-"


def connect(settings: Settings, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Kafka Connect's answer (status, JSON or None) to `method path`."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        f"{settings.connect_url}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            text = answer.read()
            return answer.status, json.loads(text) if text else None
    except urllib.error.HTTPError as error:
        return error.code, None


def failing_sink_config(topic: str) -> dict[str, str]:
    """A Debezium JDBC sink like the stack's `lethe-sink`, to a database on a closed port."""
    return {
        "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        "tasks.max": "1",
        "topics": topic,
        "connection.url": f"jdbc:postgresql://127.0.0.1:{free_port()}/connectstate",
        "connection.username": "connectstate",
        "connection.password": "connectstate",
        "connection.provider": "org.hibernate.c3p0.internal.C3P0ConnectionProvider",
        "insert.mode": "upsert",
        "primary.key.mode": "record_key",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
    }


@contextlib.contextmanager
def failing_sink(settings: Settings) -> Iterator[str]:
    """The name of a registered `failing_sink_config` connector, deleted on leaving with
    the topic it reads."""
    name = f"connectstate-{uuid.uuid4().hex[:8]}"
    topic = name.replace("-", ".")
    status, _ = connect(settings, "PUT", f"/connectors/{name}/config", failing_sink_config(topic))
    assert status in (200, 201), f"Connect refused the connector {name} ({status})"
    try:
        yield name
    finally:
        connect(settings, "DELETE", f"/connectors/{name}")
        forget_topics(settings, f"connect-{name}", topics=[topic])


def series_of(worker: WorkerProcess, connector: str) -> list[str]:
    """The names of the samples of /metrics now labelled with `connector`."""
    return [
        name
        for (name, labels), _ in (worker.metrics() or {}).items()
        if dict(labels).get("connector") == connector
    ]


def task_states(worker: WorkerProcess, connector: str) -> dict[str, float]:
    """`lethe_connector_tasks` of `connector` by state, as the worker's /metrics shows now."""
    return {
        dict(labels)["state"]: value
        for (name, labels), value in (worker.metrics() or {}).items()
        if name == "lethe_connector_tasks" and dict(labels).get("connector") == connector
    }


def test_a_failed_sink_task_shows_on_the_workers_metrics_until_the_connector_is_gone(
    real_stack: Settings, tmp_path: Path
) -> None:
    with (
        logs_run(real_stack, APP_ID_PREFIX, "connectstate", tmp_path) as run,
        failing_sink(real_stack) as connector,
    ):
        worker = start_worker(
            run.app_id,
            tmp_path,
            run.write_policy(),
            env={"LETHE_ENFORCE": "off", "LETHE_CONNECT_POLL_INTERVAL": "1"},
        )
        with serving(worker):

            def failed_task() -> dict[str, float] | None:
                states = task_states(worker, connector)
                return states if states.get("FAILED") == 1 else None

            def seen() -> str:
                status = connect(real_stack, "GET", f"/connectors/{connector}/status")
                return (
                    f"{connector}'s task FAILED on /metrics (now {task_states(worker, connector)}"
                    f"; Connect says {status})"
                )

            failed = wait_for(seen, failed_task, worker)
            assert failed["RUNNING"] == 0
            assert worker.sample("lethe_connector_state", connector=connector, state="RUNNING")
            assert worker.sample("lethe_connector_state", connector=connector, state="FAILED") == 0
            assert task_states(worker, "hosting")["RUNNING"] == 1
            assert task_states(worker, "hosting")["FAILED"] == 0
            assert worker.sample("lethe_connect_up") == 1
            assert worker.sample("lethe_connect_poll_age_seconds") < 5
            log = worker.log()
            assert f"task 0 of connector {connector} FAILED" in log
            assert "Could not create connection" not in log, "a task's trace is never logged"

            status, _ = connect(real_stack, "DELETE", f"/connectors/{connector}")
            assert status == 204
            wait_for(
                f"{connector} gone from /metrics",
                lambda: True if not series_of(worker, connector) else None,
                worker,
            )
            assert task_states(worker, "hosting")["RUNNING"] == 1
