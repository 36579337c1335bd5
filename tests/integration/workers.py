"""Helpers of the integration tests that run `lethe worker` as a subprocess: Kafka client
settings, a free port, producing one record, the worker process and its /metrics, and a
bounded wait that fails with the worker's log."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from lethe.settings import Settings

TIMEOUT_S = 120.0
"""How long any wait lasts at most."""

T = TypeVar("T")


def wait_for(
    what: str | Callable[[], str],
    probe: Callable[[], T | None],
    worker: WorkerProcess | None = None,
) -> T:
    """Poll `probe` until it returns something; fail with `what` (a text, or a function
    that says what was seen last) and the worker log."""
    deadline = time.monotonic() + TIMEOUT_S
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
    pytest.fail(f"timed out after {TIMEOUT_S:.0f}s waiting for {_text(what)}\n{tail}")


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
