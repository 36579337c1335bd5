"""Watermarks: how far the assign agent processed each change-topic partition, carried by the
ticks to the enforcer, which takes per table the earliest over its partitions."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import faust
import orjson
import pytest

from lethe import topics
from lethe.agents import assign
from lethe.agents.enforce import Enforcer
from lethe.agents.subject_records import (
    TICK,
    Tick,
    UnreadableRecord,
    header_map,
    read_subject_record,
    tick_headers,
    tick_value,
)
from lethe.agents.watermarks import (
    UNCHECKED,
    ChangeProgress,
    InputWatermarks,
    PartitionEnd,
    watermark,
)
from lethe.app import LetheApp, create_app
from lethe.clock import LiveClock
from lethe.settings import Settings
from policy.engine import Engine
from tests.unit.conftest import micros

HOLDS, TICKETS = "hosting.public.legal_holds", "hosting.public.support_tickets"


def test_a_partition_is_forwarded_up_to_its_newest_event_until_it_is_caught_up() -> None:
    assert watermark(None, 0, None, None) is None, "nothing processed, never fetched"
    assert watermark(1_000, 5, 9, 2_000) == 1_000, "records 5..8 not processed yet"
    assert watermark(1_000, 9, 9, 2_000) == 2_000, "caught up at the fetch that saw the end 9"
    assert watermark(None, 3, 3, 2_000) == 2_000, "an idle partition: caught up"
    assert watermark(3_000, 9, 9, 2_000) == 3_000


def test_a_caught_up_partition_counts_only_as_far_as_the_source_connector_was_heard() -> None:
    assert watermark(1_000, 9, 9, 2_000, 1_500) == 1_500, "heard at 1.5 ms, fetched at 2 ms"
    assert watermark(1_000, 9, 9, 2_000, 2_500) == 2_000, "heard after the fetch: the fetch"
    assert watermark(1_000, 9, 9, 2_000, 500) == 1_000, "its own newest event is processed"
    assert watermark(None, 3, 3, 2_000, 1_800) == 1_800, "an idle partition, heard at 1.8 ms"
    assert watermark(1_000, 9, 9, 2_000, None) == 1_000, "never heard: only what was read"
    assert watermark(None, 3, 3, 2_000, None) is None, "never heard, nothing read: unknown"
    assert watermark(1_000, 5, 9, 2_000, 9_000) == 1_000, "not caught up: the heartbeat is moot"


def test_a_silent_source_holds_back_every_caught_up_partition_but_not_what_was_read() -> None:
    progress = ChangeProgress([HOLDS, TICKETS])
    progress.processed(TICKETS, 0, 8, 5_000)
    ends = [
        PartitionEnd(TICKETS, 0, committed=None, highwater=9, polled_us=9_000),
        PartitionEnd(HOLDS, 0, committed=4, highwater=4, polled_us=9_000),
    ]
    assert progress.watermarks(ends, 7_000) == {(TICKETS, 0): 7_000, (HOLDS, 0): 7_000}
    assert progress.watermarks(ends, None) == {(TICKETS, 0): 5_000}


def test_progress_counts_committed_offsets_as_processed_and_keeps_the_newest_event() -> None:
    progress = ChangeProgress([HOLDS, TICKETS])
    progress.processed(TICKETS, 0, 7, 5_000)
    progress.processed(TICKETS, 0, 8, None)  # a tombstone: processed, nothing forwarded
    progress.processed(TICKETS, 1, 2, 4_000)
    ends = [
        PartitionEnd(TICKETS, 0, committed=3, highwater=9, polled_us=6_000),
        PartitionEnd(TICKETS, 1, committed=None, highwater=10, polled_us=6_000),
        PartitionEnd(HOLDS, 0, committed=4, highwater=4, polled_us=6_500),  # idle since start
        PartitionEnd(HOLDS, 1, committed=None, highwater=None, polled_us=None),  # never fetched
    ]
    assert progress.watermarks(ends, UNCHECKED) == {
        (TICKETS, 0): 6_000,
        (TICKETS, 1): 4_000,
        (HOLDS, 0): 6_500,
    }


def test_the_enforcer_takes_per_table_the_earliest_partition_once_all_have_reported() -> None:
    inputs = InputWatermarks({HOLDS: "public.legal_holds", TICKETS: "public.support_tickets"}, 2)
    inputs.report(0, [(TICKETS, 0, 900), (TICKETS, 1, 700), (HOLDS, 0, 800)])
    assert inputs.processed(0) == {"public.support_tickets": 700}, "holds partition 1 missing"
    assert inputs.processed(1) == {}, "watermarks are per subject events partition"
    inputs.report(0, [(HOLDS, 1, 850), (TICKETS, 1, 600), ("hosting.public.other", 0, 1)])
    assert inputs.processed(0) == {"public.support_tickets": 700, "public.legal_holds": 800}
    inputs.forget(0)
    assert inputs.processed(0) == {}


def test_a_tick_carries_its_watermarks_as_compact_json() -> None:
    value = tick_value({(TICKETS, 1): 700, (HOLDS, 0): 800, (TICKETS, 0): 900})
    assert value == (
        b'{"watermarks":{"hosting.public.legal_holds":{"0":800},'
        b'"hosting.public.support_tickets":{"0":900,"1":700}}}'
    )
    assert read_subject_record(header_map(tick_headers()), value) == Tick(
        ((HOLDS, 0, 800), (TICKETS, 0, 900), (TICKETS, 1, 700))
    )
    assert tick_value({}) == b""
    assert read_subject_record(header_map(tick_headers()), b"") is TICK


@pytest.mark.parametrize(
    "value",
    [
        b"{",
        b"[]",
        b'{"watermarks":[]}',
        b'{"watermarks":{"t":{"x":1}}}',
        b'{"watermarks":{"t":{"0":"1"}}}',
    ],
)
def test_a_tick_with_unreadable_watermarks_is_refused(value: bytes) -> None:
    with pytest.raises(UnreadableRecord):
        read_subject_record({topics.KIND_HEADER: topics.TICK_KIND}, value)


@pytest.fixture
def app(tmp_path: Path) -> Iterator[LetheApp]:
    settings = Settings(data_dir=tmp_path)
    app = create_app(
        settings, app_id="lethe-unit", store="memory://", change_topic_names=[TICKETS],
        web_enabled=False,
    )  # fmt: skip
    app.finalize()
    yield app


def test_the_assign_agent_reports_each_record_it_processed(app: LetheApp, demo_engine: Engine):
    progress = ChangeProgress([TICKETS])
    app.loop.run_until_complete(_three_records(app, demo_engine, progress))
    # offsets 0 (forwarded, 2025-01-01T00:00:00Z), 1 (a bad record), 2 (a tombstone)
    not_caught_up = PartitionEnd(TICKETS, 0, committed=None, highwater=5, polled_us=None)
    assert progress.watermarks([not_caught_up], UNCHECKED) == {(TICKETS, 0): 1_735_689_600_000_000}
    caught_up = PartitionEnd(
        TICKETS, 0, committed=None, highwater=3, polled_us=1_735_689_700_000_000
    )
    assert progress.watermarks([caught_up], UNCHECKED) == {(TICKETS, 0): 1_735_689_700_000_000}


async def _three_records(app: LetheApp, engine: Engine, progress: ChangeProgress) -> None:
    subject_events: faust.ChannelT[bytes] = app.channel()
    agent = assign.install(
        app, app.change_topic, app.channel(), subject_events,  # type: ignore[arg-type]
        engine=engine, metrics=app.metrics, partitions=1, progress=progress,
    )  # fmt: skip
    ticket = {"id": 1, "customer_id": 42, "last_message_at": "2024-12-31T10:00:00Z"}
    value = {"op": "c", "before": None, "after": ticket, "ts_ms": 1_735_689_600_000}
    async with agent.test_context() as running:
        running._get_strtopic = lambda channel: TICKETS
        await running.put(key=b'{"id":1}', value=orjson.dumps(value), partition=0)
        await running.put(key=b'{"id":2}', value=b"not json", partition=0)
        await running.put(key=b'{"id":1}', value=None, partition=0)


def test_the_enforcer_bounds_rows_on_the_enforcement_clock_and_shows_the_lag_in_wall_seconds(
    app: LetheApp, demo_engine: Engine, tmp_path: Path
):
    """A day a second from 2026-01-01 at wall 2026-11-30T09:00:00Z."""
    wall_start = micros("2026-11-30T09:00:00Z")
    settings = Settings(
        data_dir=tmp_path, clock_mode="accelerated", clock_start=micros("2026-01-01T00:00:00Z"),
        clock_wall_start=wall_start, clock_speed=Fraction(86_400),
    )  # fmt: skip
    enforcer = Enforcer(
        app, engine=demo_engine, store=None, clock=LiveClock(settings),  # type: ignore[arg-type]
        metrics=app.metrics, deadletters=app.channel(), change_partitions=1,
        audit_hash_key=settings.audit_hash_key_bytes,
    )  # fmt: skip
    tick = Tick(((HOLDS, 0, wall_start + 1_000_000), (TICKETS, 0, wall_start + 2_000_000)))
    bounds = enforcer.take_tick(0, tick, wall_start + 3_000_000)
    assert bounds == {
        "public.legal_holds": micros("2026-01-02T00:00:00Z"),
        "public.support_tickets": micros("2026-01-02T00:00:00Z"),  # the holds are behind
    }, "only the tables whose every input reported"
    assert enforcer.take_tick(1, TICK, wall_start) == {}, "another partition: nothing reported"

    def lag(table: str) -> float | None:
        return app.metrics.registry.get_sample_value(
            "lethe_input_watermark_lag_seconds", {"table": table}
        )

    assert lag("public.orders") == float("inf")
    assert lag("public.legal_holds") == float("inf"), "partition 1 has not heard of the holds"
    enforcer.forget([1])  # revoked
    enforcer.take_tick(0, TICK, wall_start + 3_000_000)
    assert (lag("public.legal_holds"), lag("public.support_tickets")) == (2.0, 1.0)
