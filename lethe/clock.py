"""The enforcement clock at run time: the wall clock read, the manual clock followed on Kafka.

`LiveClock(settings)` is the clock the worker reads: `now()` for its sweeps
(`driver.advance(clock.now())`) and `event_instant(wall)` for a change event committed at
wall instant `wall`. The mapping of each mode is the pure `policy.enforcement_clock`; this
module only reads the wall clock and, for the manual mode, the operator's advances.

The manual clock lives on a compacted topic (`lethe.topics.CLOCK_TOPIC`, or
LETHE_CLOCK_TOPIC): `publish_advance` writes one record per `lethe clock advance`, and
`ManualClockReader` reads the topic from its first record and takes the latest instant (an
out-of-order record never moves the clock back). Until the first advance, or while the topic
does not exist, the clock stands at LETHE_CLOCK_START.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

import orjson
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from lethe.errors import ClockError, ConfigError, StackError
from lethe.kafka_clients import Refusals, client_config
from lethe.settings import Settings
from lethe.topics import CLOCK_KEY, CLOCK_TOPIC, CLOCK_TOPIC_CONFIG
from policy.enforcement_clock import (
    ClockAdvance,
    ClockWouldGoBack,
    EnforcementClock,
    ManualClock,
)
from policy.instants import Instant, format_instant, parse_instant

log = logging.getLogger(__name__)

KAFKA_TIMEOUT_S = 10.0


def wall_now() -> Instant:
    """The wall clock, in µs since the epoch."""
    return time.time_ns() // 1000


def clock_topic(settings: Settings) -> str:
    """The manual clock's topic: LETHE_CLOCK_TOPIC, else `lethe.clock`."""
    return settings.clock_topic or CLOCK_TOPIC


def manual_start(settings: Settings) -> ManualClock:
    """The manual clock of the settings, before any advance; ConfigError in another mode."""
    clock = settings.clock
    if not isinstance(clock, ManualClock):
        raise ConfigError(
            f"LETHE_CLOCK is {settings.clock_mode}: only the manual clock is advanced by hand; "
            "set LETHE_CLOCK=manual and LETHE_CLOCK_START (for the worker and `lethe simulate` "
            "too)"
        )
    return clock


class ManualClockReader:
    """Follows the manual clock's topic; `clock()` reads what is new and returns the clock.

    Each call reads up to the topic's end at that moment (a round trip to the broker, more
    when there are new records), so call it from a thread, not the event loop. StackError
    when the broker does not answer within `timeout_s`. Between calls the consumer is
    paused: the worker calls it at every tick of every partition.
    """

    def __init__(self, settings: Settings, timeout_s: float = KAFKA_TIMEOUT_S) -> None:
        self.settings = settings
        self.topic = clock_topic(settings)
        self.timeout_s = timeout_s
        self._clock = manual_start(settings)
        self._next: dict[int, int] = {}
        """Per partition: the offset after the last record read."""
        self._consumer = Consumer(
            {
                **client_config(settings),
                "group.id": f"lethe-clock-reader-{uuid.uuid4().hex[:12]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )

    def clock(self) -> ManualClock:
        """The clock with every advance on the topic so far."""
        try:
            self._catch_up()
        except KafkaException as exc:
            raise _unreachable(self.settings, exc) from exc
        return self._clock

    def now(self) -> Instant:
        """Where the manual clock stands now."""
        return self.clock().latest

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> ManualClockReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _catch_up(self) -> None:
        consumer = self._consumer
        metadata = consumer.list_topics(self.topic, timeout=self.timeout_s)
        described = metadata.topics.get(self.topic)
        if described is None or described.error is not None or not described.partitions:
            return
        new = sorted(set(described.partitions) - set(self._next))
        if new:
            for partition in new:
                low, _ = consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), timeout=self.timeout_s
                )
                self._next[partition] = low
            consumer.incremental_assign(
                [TopicPartition(self.topic, partition, OFFSET_BEGINNING) for partition in new]
            )
        ends = {
            partition: consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=self.timeout_s
            )[1]
            for partition in self._next
        }
        behind = [partition for partition, end in ends.items() if self._next[partition] < end]
        if behind:
            consumer.resume([TopicPartition(self.topic, partition) for partition in behind])
        deadline = time.monotonic() + self.timeout_s
        while any(self._next[partition] < end for partition, end in ends.items()):
            if time.monotonic() > deadline:
                raise StackError(
                    f"could not read the clock topic {self.topic} to its end within "
                    f"{self.timeout_s:.0f}s; check the broker at {self.settings.kafka_bootstrap}"
                )
            message = consumer.poll(0.2)
            if message is not None:
                self._take(message)
        # Paused at its end, the consumer keeps no fetch waiting on the broker, which would
        # hold up the next call's metadata and offset requests (half a second each).
        consumer.pause([TopicPartition(self.topic, partition) for partition in self._next])

    def _take(self, message: Message) -> None:
        error = message.error()
        partition = message.partition()
        offset = message.offset()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF and partition is not None:
                if offset is not None and offset >= 0:
                    self._next[partition] = max(self._next.get(partition, 0), offset)
                return
            raise KafkaException(error)
        if partition is not None and offset is not None:
            self._next[partition] = offset + 1
        advance = decode_advance(message.value())
        if advance is None:
            log.warning(
                "skipped a record of the clock topic %s at partition %s offset %s: not an "
                "advance written by `lethe clock advance`",
                self.topic,
                partition,
                offset,
            )
            return
        to, wall = advance
        clock = self._clock
        self._clock = ManualClock(clock.start, (*clock.advances, ClockAdvance(wall, to)))


def encode_advance(to: Instant, wall: Instant) -> bytes:
    """The clock topic's record value of an advance to `to` made at wall instant `wall`."""
    return orjson.dumps({"instant": format_instant(to), "advanced_at": format_instant(wall)})


def decode_advance(raw: bytes | None) -> tuple[Instant, Instant] | None:
    """(to, wall) of a clock record; None for anything else (a null value included)."""
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
        return parse_instant(value["instant"]), parse_instant(value["advanced_at"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def declare_clock_topic(settings: Settings) -> None:
    """Create the manual clock's topic (compacted, one partition) unless it exists."""
    topic = clock_topic(settings)
    refusals = Refusals()
    admin = AdminClient(client_config(settings, refusals))
    try:
        existing = admin.list_topics(timeout=KAFKA_TIMEOUT_S).topics
    except KafkaException as exc:
        raise refusals.error(settings, exc, admin) from exc
    if topic in existing:
        return
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=-1, config=CLOCK_TOPIC_CONFIG)]
    )
    try:
        futures[topic].result(timeout=KAFKA_TIMEOUT_S)
    except KafkaException as exc:
        if exc.args and exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return
        raise StackError(
            f"could not create the clock topic {topic} on {settings.kafka_bootstrap} ({exc}); "
            "create it (compacted, one partition) or check the broker's permissions and log"
        ) from exc


def publish_advance(settings: Settings, to: Instant, wall: Instant) -> None:
    """Write an advance of the manual clock to its topic and wait for the broker's ack."""
    declare_clock_topic(settings)
    producer = Producer({**client_config(settings), "acks": "all"})
    failures: list[str] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(str(error))

    producer.produce(
        clock_topic(settings), key=CLOCK_KEY, value=encode_advance(to, wall), on_delivery=delivered
    )
    if producer.flush(KAFKA_TIMEOUT_S) or failures:
        raise StackError(
            f"the clock topic {clock_topic(settings)} did not take the advance "
            f"({'; '.join(failures) or 'no answer'}); check the broker at "
            f"{settings.kafka_bootstrap} and try again"
        )


def advance_manual_clock(
    settings: Settings, to: Instant, wall: Callable[[], Instant] = wall_now
) -> tuple[Instant, Instant]:
    """Advance the manual clock to `to`; return (where it stood, where it stands now).

    ClockError, naming where the clock stands, when `to` is earlier: nothing is written.
    Advancing to where it stands writes nothing either.
    """
    with ManualClockReader(settings) as reader:
        clock = reader.clock()
    advanced_at = wall()
    try:
        clock.advance(to, advanced_at)
    except ClockWouldGoBack as exc:
        raise ClockError(str(exc)) from None
    if to > clock.latest:
        publish_advance(settings, to, advanced_at)
    return clock.latest, to


class LiveClock:
    """The enforcement clock the worker reads (see the module docstring)."""

    def __init__(self, settings: Settings, wall: Callable[[], Instant] = wall_now) -> None:
        self.mapping: EnforcementClock = settings.clock
        self._wall = wall
        self._reader = ManualClockReader(settings) if settings.clock_mode == "manual" else None

    def now(self) -> Instant:
        """The enforcement instant now; the manual clock reads the new advances first and
        stands at the latest (whatever the wall clocks of the worker and the operator say)."""
        if self._reader is not None:
            self.mapping = self._reader.clock()
            return self.mapping.latest
        return self.mapping.at(self._wall())

    def event_instant(self, wall: Instant) -> Instant:
        """The enforcement instant of a change committed at wall instant `wall` (no I/O)."""
        return self.mapping.at(wall)

    def describe(self) -> str:
        return self.mapping.describe()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


def _unreachable(settings: Settings, exc: Exception) -> StackError:
    return Refusals().error(settings, exc)
