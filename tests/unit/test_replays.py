"""A connector's replay (its events sent again after a restart) is dropped; nothing else is.

The positions are those Debezium 3 (PostgreSQL, pgoutput) gave on the local stack
(`source.sequence`, [last commit LSN, LSN]), in the order it sent them:
- a snapshot: every read at [null, 26932112];
- the first transaction after it: [null, 26932208], [null, 26932368], [null, 26932528];
- two concurrent transactions, T2 committed first: T2's [26932736, 26932896] and
  [26932736, 26933056], then T1's [26933264, 26932736] and [26933264, 26933264] (LSN alone
  goes back from 26933056 to 26932736);
- after Connect was killed with SIGKILL before it flushed its offsets, the changes since its
  last flush came again with the same sequence: [26933824, 26933880] ... [26934408, 26934408],
  then new ones from [26934560, 26934616].
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import orjson

from lethe.agents.replays import ReplayMarks, advance, decode, is_replay
from policy.decoding import decode_raw
from policy.engine import Engine
from policy.events import ChangeEvent, SourcePosition

SNAPSHOT = SourcePosition(None, 26932112, snapshot=True)
FIRST_TX = [SourcePosition(None, lsn) for lsn in (26932208, 26932368, 26932528)]
CONCURRENT = [
    SourcePosition(26932736, 26932896),
    SourcePosition(26932736, 26933056),
    SourcePosition(26933264, 26932736),
    SourcePosition(26933264, 26933264),
]
BEFORE_KILL = [
    SourcePosition(26933824, 26933880),
    SourcePosition(26933824, 26934040),
    SourcePosition(26933824, 26934200),
    SourcePosition(26934408, 26934408),
]
AFTER_RESTART = SourcePosition(26934560, 26934616)


def kept(positions: Iterable[SourcePosition | None]) -> list[SourcePosition | None]:
    """The positions forwarded, in order, by the rule from no mark."""
    mark: SourcePosition | None = None
    forwarded = []
    for position in positions:
        if is_replay(mark, position):
            continue
        forwarded.append(position)
        mark = advance(mark, position)
    return forwarded


def test_a_snapshot_and_the_stream_after_it_are_all_forwarded_concurrent_transactions_too() -> None:
    stream = [SNAPSHOT, SNAPSHOT, SNAPSHOT, *FIRST_TX, *CONCURRENT, *BEFORE_KILL]
    assert kept(stream) == stream


def test_the_changes_sent_again_after_connect_was_killed_are_dropped_new_ones_kept() -> None:
    stream = [*FIRST_TX, *CONCURRENT, *BEFORE_KILL, *BEFORE_KILL, AFTER_RESTART]
    assert kept(stream) == [*FIRST_TX, *CONCURRENT, *BEFORE_KILL, AFTER_RESTART]


def test_a_replay_of_the_first_transaction_after_the_snapshot_is_dropped() -> None:
    stream = [SNAPSHOT, *FIRST_TX, CONCURRENT[0], *FIRST_TX, *CONCURRENT]
    assert kept(stream) == [SNAPSHOT, *FIRST_TX, *CONCURRENT]


def test_a_new_snapshot_restarts_the_stream_even_at_lower_positions() -> None:
    """A connector recreated on a restored database: its snapshot and what follows are new."""
    resnapshot = SourcePosition(None, 1000, snapshot=True)
    after = [SourcePosition(None, 1100), SourcePosition(1200, 1300)]
    stream = [*CONCURRENT, resnapshot, resnapshot, *after]
    assert kept(stream) == stream


def test_changes_without_position_are_never_dropped() -> None:
    stream = [*CONCURRENT, None, None, CONCURRENT[0]]
    assert kept(stream) == [*CONCURRENT, None, None]


def envelope(source: object, op: str = "c") -> bytes:
    payload = {
        "before": None,
        "after": {"id": 7, "customer_id": 42, "ip_address": "192.0.2.1"},
        "source": source,
        "op": op,
        "ts_ms": 1796034691334,
    }
    return orjson.dumps({"schema": {"type": "struct"}, "payload": payload})


def decoded(demo_engine: Engine, value: bytes) -> ChangeEvent:
    event = decode_raw(demo_engine.decoding, "hosting.public.connection_logs", None, value)
    assert isinstance(event, ChangeEvent), event
    return event


def test_the_decoder_gives_the_position_debezium_postgresql_sends(demo_engine: Engine) -> None:
    source = {
        "connector": "postgresql",
        "ts_ms": 1796034679212,
        "snapshot": "false",
        "lsn": 26933880,
        "sequence": '["26933824","26933880"]',
        "txId": 795,
    }
    assert decoded(demo_engine, envelope(source)).position == SourcePosition(26933824, 26933880)
    first = {**source, "sequence": '[null,"26932208"]'}
    assert decoded(demo_engine, envelope(first)).position == SourcePosition(None, 26932208)
    read = {**source, "snapshot": "last_in_data_collection", "sequence": '[null,"26932112"]'}
    assert decoded(demo_engine, envelope(read, "r")).position == SNAPSHOT


def test_a_record_without_a_usable_position_decodes_without_one(demo_engine: Engine) -> None:
    for source in (
        {"ts_ms": 1796034679212},
        None,
        {"lsn": 26933880},
        {"sequence": "not json"},
        {"sequence": '["26933824"]'},
        {"sequence": '["x","26933880"]'},
        {"sequence": ["26933824", None]},
        {"sequence": ["-1", "26933880"]},
    ):
        assert decoded(demo_engine, envelope(source)).position is None, source


class Marks:
    """`ReplayMarks` over a dict for a table, a hand-set clock and partition end, recording
    what happens in order."""

    def __init__(self) -> None:
        self.table: dict[bytes, bytes] = {}
        self.now = 100.0
        self.end: int | None = None
        self.steps: list[str] = []
        self.marks = ReplayMarks(
            self.table, self.flush, highwater=lambda t, p: self.end, clock=lambda: self.now
        )

    async def flush(self) -> None:
        self.steps.append(f"flush with {len(self.table)} stored")

    def forward(self, offset: int, position: SourcePosition) -> None:
        assert not self.marks.replayed("t", 0, position)
        self.marks.forwarded("t", 0, position)
        asyncio.run(self.marks.store("t", 0, offset))

    def stored(self) -> SourcePosition | None:
        data = self.table.get(b"t:0")
        return None if data is None else decode(data)


def test_a_mark_is_stored_after_a_flush_once_a_second_or_at_the_partitions_end() -> None:
    marks = Marks()
    marks.end = 10
    marks.forward(0, CONCURRENT[0])
    assert marks.stored() is None, "behind, less than a second after the partition's first use"
    marks.now += 1.0
    marks.forward(1, CONCURRENT[1])
    assert marks.stored() == CONCURRENT[1]
    assert marks.steps == ["flush with 0 stored"], "flushed before the write"
    marks.now += 0.5
    marks.forward(2, CONCURRENT[2])
    assert marks.stored() == CONCURRENT[1], "behind, half a second after the last write"
    marks.forward(9, CONCURRENT[3])
    assert marks.stored() == CONCURRENT[3], "the partition's last record: stored at once"
    assert len(marks.steps) == 2


def test_a_revoked_partition_takes_its_stored_mark_again() -> None:
    marks = Marks()
    marks.end = 1
    marks.forward(0, CONCURRENT[0])
    marks.end = 10
    marks.forward(1, CONCURRENT[1])
    assert marks.stored() == CONCURRENT[0]
    marks.marks.forget({("t", 0)})
    assert not marks.marks.replayed("t", 0, CONCURRENT[1]), (
        "forwarded but not stored: read again after a rebalance, it is forwarded again"
    )
    assert marks.marks.replayed("t", 0, CONCURRENT[0])


def test_a_mark_is_not_stored_when_the_flush_fails() -> None:
    marks = Marks()
    marks.end = 1
    failing = [True]

    async def flush() -> None:
        if failing[0]:
            raise RuntimeError("Cannot flush: Producer not Running")

    marks.marks = ReplayMarks(marks.table, flush, highwater=lambda t, p: marks.end)
    marks.forward(0, CONCURRENT[0])
    assert marks.stored() is None, "what was forwarded may not be in Kafka"
    failing[0] = False
    marks.end = 2
    marks.forward(1, CONCURRENT[1])
    assert marks.stored() == CONCURRENT[1]
