"""`lethe clock advance` moves the manual clock on Kafka; the reader the worker uses follows it.

Each test runs on a topic of its own (LETHE_CLOCK_TOPIC), deleted at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from lethe.clock import ManualClockReader
from lethe.settings import Settings
from policy.instants import format_instant

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def clock_env(real_stack: Settings) -> Iterator[dict[str, str]]:
    """The environment of a manual clock that starts at 2026-01-01, on a fresh topic."""
    topic = f"lethe-it-clock-{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "LETHE_KAFKA_BOOTSTRAP": real_stack.kafka_bootstrap,
        "LETHE_CLOCK": "manual",
        "LETHE_CLOCK_START": "2026-01-01T00:00:00Z",
        "LETHE_CLOCK_TOPIC": topic,
    }
    yield env
    admin = AdminClient({"bootstrap.servers": real_stack.kafka_bootstrap})
    if topic in admin.list_topics(timeout=10).topics:
        admin.delete_topics([topic])[topic].result(timeout=30)


def lethe(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lethe", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def records_on(settings: Settings, topic: str) -> int:
    """Records ever written to `topic` (the sum of its partitions' end offsets)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "unused"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        )
    finally:
        consumer.close()


def test_advance_twice_and_the_reader_follows_then_refuses_to_go_back(
    clock_env: dict[str, str],
) -> None:
    settings = Settings.from_env(clock_env)
    topic = clock_env["LETHE_CLOCK_TOPIC"]
    with ManualClockReader(settings) as reader:
        assert format_instant(reader.now()) == "2026-01-01T00:00:00Z", "no topic yet: the start"

        first = lethe(clock_env, "clock", "advance", "2027-01-01T00:00:00Z")
        assert first.returncode == 0, first.stderr
        assert (
            first.stdout == "advanced the clock from 2026-01-01T00:00:00Z to 2027-01-01T00:00:00Z\n"
        )
        assert format_instant(reader.now()) == "2027-01-01T00:00:00Z"

        second = lethe(clock_env, "clock", "advance", "2028-06-01T12:00:00Z")
        assert second.returncode == 0, second.stderr
        assert format_instant(reader.now()) == "2028-06-01T12:00:00Z"

        back = lethe(clock_env, "clock", "advance", "2027-06-01T00:00:00Z")
        assert back.returncode == 2
        assert back.stdout == ""
        assert "the clock stands at 2028-06-01T12:00:00Z; it never moves back" in back.stderr
        assert format_instant(reader.now()) == "2028-06-01T12:00:00Z"

    assert records_on(settings, topic) == 2, "the refused advance wrote nothing"
    with ManualClockReader(settings) as fresh:
        assert format_instant(fresh.now()) == "2028-06-01T12:00:00Z", "read from the beginning"

    shown = lethe(clock_env, "clock", "show")
    assert shown.returncode == 0, shown.stderr
    first_line, now = shown.stdout.splitlines()
    assert first_line.startswith("manual clock: 2028-06-01T12:00:00Z (last advanced at wall ")
    assert now == "now: 2028-06-01T12:00:00Z"

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    config = admin.describe_configs([resource])[resource].result(timeout=10)
    assert config["cleanup.policy"].value == "compact", "the latest advance must stay for good"


def test_the_reader_answers_at_once_between_advances(clock_env: dict[str, str]) -> None:
    """The worker reads the manual clock at every tick of every partition (twice a second
    per partition in the tests): a read that waits on the broker's fetch (half a second
    each for the metadata and the end offset) makes the ticks pile up unprocessed."""
    settings = Settings.from_env(clock_env)
    advanced = lethe(clock_env, "clock", "advance", "2027-01-01T00:00:00Z")
    assert advanced.returncode == 0, advanced.stderr
    with ManualClockReader(settings) as reader:
        for _ in range(3):  # the first reads take the record and the fetch already sent
            assert format_instant(reader.now()) == "2027-01-01T00:00:00Z"
        slowest = 0.0
        for _ in range(10):
            started = time.monotonic()
            assert format_instant(reader.now()) == "2027-01-01T00:00:00Z"
            slowest = max(slowest, time.monotonic() - started)
    assert slowest < 0.2, f"a read of an unchanged clock took {slowest:.3f}s"
