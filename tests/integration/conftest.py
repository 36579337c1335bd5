"""Shared fixtures for tests against the real local stack (`lethe stack up`).

`real_stack` FAILS (never skips) with the broken part and its log file when the
stack is not healthy. Start it with `make stack-up` (or `.venv/bin/lethe stack up`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from lethe import stack
from lethe.settings import Settings

from .workers import sweep_run_sink_topics


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The demo's test runs last: its worker really enforces on the demo database (the test
    restores it) and leaves thousands of records on the change topics, which every later
    worker with a new app id would read again. The fault tests run just before it: they kill
    and restart Kafka, Connect and PostgreSQL (healthy again when each ends), which no test
    running next to them should see."""
    items.sort(
        key=lambda item: (
            item.nodeid.startswith("tests/integration/test_demo.py"),
            item.nodeid.startswith("tests/integration/test_faults.py"),
        )
    )


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def real_stack(stack_settings: Settings) -> Settings:
    """The settings of a healthy stack; fails naming each part that is down and its log."""
    broken = [part for part in stack.status(stack_settings) if not (part.running and part.healthy)]
    if broken:
        details = "\n".join(
            f"  {part.name}: {'unhealthy' if part.running else 'stopped'} "
            f"at {part.endpoint}; log {part.log_file}"
            for part in broken
        )
        pytest.fail(
            "the local stack is not healthy:\n"
            f"{details}\n"
            "start it with `make stack-up` (or `.venv/bin/lethe stack up`)",
            pytrace=False,
        )
    sweep_run_sink_topics(stack_settings)
    return stack_settings


@pytest.fixture
def pg(real_stack: Settings) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the demo database `hosting` as the demo user."""
    with psycopg.connect(real_stack.pg_dsn, autocommit=True) as conn:
        yield conn


ConsumerFactory = Callable[..., Consumer]


@pytest.fixture
def kafka_consumer(real_stack: Settings) -> Iterator[ConsumerFactory]:
    """Make consumers (own group each); all are closed after the test.

    `kafka_consumer(topic, from_end=True)` assigns every partition of `topic` at its
    current end, so the test reads only what it causes; `from_end=False` reads from
    the start.
    """
    made: list[Consumer] = []

    def make(topic: str, *, from_end: bool = True) -> Consumer:
        consumer = Consumer(
            {
                "bootstrap.servers": real_stack.kafka_bootstrap,
                "group.id": f"lethe-it-{uuid.uuid4().hex[:12]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )
        made.append(consumer)
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        assignment = []
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            assignment.append(TopicPartition(topic, partition, high if from_end else low))
        consumer.assign(assignment)
        return consumer

    yield make
    for consumer in made:
        consumer.close()


def poll_until(
    consumer: Consumer,
    match: Callable[[Message], bool],
    *,
    what: str,
    timeout: float = 60.0,
) -> Message:
    """Poll until a record satisfies `match` (null values included); fail naming `what`."""
    deadline = time.monotonic() + timeout
    seen = 0
    while time.monotonic() < deadline:
        message: Message | None = consumer.poll(0.5)
        if message is None:
            continue
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                continue
            pytest.fail(f"Kafka error while waiting for {what}: {error}")
        if match(message):
            return message
        seen += 1
    pytest.fail(f"no record for {what} within {timeout:.0f}s ({seen} other records seen)")


def json_value(message: Message) -> dict[str, Any] | None:
    """The record's value as a JSON object; None for a null value or any other JSON."""
    raw = message.value()
    if raw is None:
        return None
    value = orjson.loads(raw)
    return value if isinstance(value, dict) else None


def poll_json_until(
    consumer: Consumer,
    match: Callable[[dict[str, Any]], bool],
    *,
    what: str,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Poll until a record whose JSON value satisfies `match`; fail naming `what`."""

    def matches(message: Message) -> bool:
        value = json_value(message)
        return value is not None and match(value)

    value = json_value(poll_until(consumer, matches, what=what, timeout=timeout))
    assert value is not None
    return value
