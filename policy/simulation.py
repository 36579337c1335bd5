"""The dry run behind `lethe simulate`: the engine driven by a captured stream.

`simulate(engine, lines, until)` feeds JSON lines, one Kafka record each as
Debezium's JsonConverter writes it (`{"topic": ..., "key": ..., "value": ...}`),
through the same `Driver` as the live enforcer, over an in-memory store
(`policy.store.MemoryStore`).

The simulated clock is each envelope's `ts_ms`: before an event at time T is
applied, every stage due at or before T is issued; a tombstone keeps the clock;
an event older than the clock is applied at the clock's time. `due` is called when
a row's timer fires, at that time, or at the clock's time when the timer was armed
in the past (by an event that made a stage due, or the release of a hold), so each
command's `issued_at` is when the enforcer would send it. After the last line the
clock advances to `until` (default: the last event's time; an earlier `until`
raises `UntilBeforeLastEvent`). A bad line is returned as a `LineError` with its
line number and skipped; the rest goes on.

Under another enforcement clock (`policy.enforcement_clock`, as the worker runs under it),
`ts_ms` is the event's wall time and the event is applied at the clock's instant for it,
`clock.at(ts)`; `until` is an enforcement instant. A manual clock's advances are made in
wall order between the events (an advance at wall time W before any event at W or later),
and those after the last event at its end, as the worker's sweeps would.

An engine compiled with `confirm_after` re-issues the commands no event of the stream
confirmed (`Command.attempt` > 1, printed after their first send); without it (the default
of `lethe simulate`: a captured stream rarely holds the changes Lethe's own commands made)
nothing is re-issued. Re-issues are timed as by a worker that sweeps every instant (under a
manual clock: at each advance, as the worker's sweeps would).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import orjson

from policy.decoding import decode_record
from policy.driver import Driver
from policy.enforcement_clock import WALL_CLOCK, EnforcementClock, ManualClock, WallClock
from policy.engine import Engine
from policy.envelope import DecodeReason, Rejection
from policy.events import ChangeEvent, Tombstone
from policy.instants import Instant, format_instant
from policy.state import Command
from policy.store import MemoryStore


@dataclass(frozen=True, slots=True)
class LineError:
    """A line that was skipped: its 1-based number and what is wrong with it."""

    line: int
    message: str


class UntilBeforeLastEvent(ValueError):
    """`until` is earlier than the last event: the clock never runs backwards."""

    def __init__(self, until: Instant, last_event: Instant) -> None:
        self.until = until
        self.last_event = last_event
        super().__init__(
            f"--until {format_instant(until)} is before the last event "
            f"({format_instant(last_event)}); pass --until {format_instant(last_event)} "
            "or later, or leave it out to stop at the last event"
        )


@dataclass(frozen=True, slots=True)
class SimulationResult:
    commands: tuple[Command, ...]
    """Ordered by when sent (issued_at; reissued_at for a re-issue), then table, then key."""
    errors: tuple[LineError, ...]
    events: int
    """Change events applied (tombstones not counted)."""
    clock: Instant | None
    """Where the simulated clock stopped; None when no event had a time."""


def simulate(
    engine: Engine,
    lines: Iterable[str | bytes],
    until: Instant | None = None,
    clock: EnforcementClock = WALL_CLOCK,
) -> SimulationResult:
    """Run the engine (`Engine.compile(policy)`) over JSON lines of Debezium records,
    under the enforcement `clock` (default: the wall clock, each event at its `ts_ms`).

    Raises `UntilBeforeLastEvent` when `until` is earlier than the last event.
    """
    driver = Driver(engine, MemoryStore(), continuous=not isinstance(clock, ManualClock))
    commands: list[Command] = []
    errors: list[LineError] = []
    events = 0
    mapped = not isinstance(clock, WallClock)
    advances = (
        sorted(clock.advances, key=lambda advance: (advance.wall, advance.to))
        if isinstance(clock, ManualClock)
        else []
    )
    made = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        decoded = decode_line(engine, line)
        if isinstance(decoded, Rejection):
            errors.append(LineError(number, decoded.detail))
            continue
        if isinstance(decoded, Tombstone):
            continue
        if mapped:
            wall = decoded.ts
            while made < len(advances) and advances[made].wall <= wall:
                commands.extend(driver.advance(advances[made].to).commands)
                made += 1
            decoded = replace(decoded, ts=clock.at(wall))
        commands.extend(driver.feed(decoded).commands)
        events += 1
    for advance in advances[made:]:
        commands.extend(driver.advance(advance.to).commands)
    stopped = driver.clock
    if until is not None and stopped is not None and until < stopped:
        raise UntilBeforeLastEvent(until, stopped)
    end = stopped if until is None else until
    if end is not None:
        commands.extend(driver.advance(end).commands)
    commands.sort(key=Command.sort_key)
    return SimulationResult(tuple(commands), tuple(errors), events, stopped)


def decode_line(engine: Engine, line: str | bytes) -> ChangeEvent | Tombstone | Rejection:
    """Decode one JSON line `{"topic": ..., "key": ..., "value": ...}`; never raises."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return Rejection(
            DecodeReason.BAD_RECORD, f"not JSON ({exc.msg}); each line must be one JSON object"
        )
    if not isinstance(record, dict):
        return Rejection(
            DecodeReason.BAD_RECORD,
            'not a JSON object; write {"topic": ..., "key": ..., "value": ...}',
        )
    if "value" not in record:
        return Rejection(DecodeReason.BAD_RECORD, 'no "value"; write null for a tombstone')
    return decode_record(engine.decoding, record.get("topic"), record.get("key"), record["value"])
