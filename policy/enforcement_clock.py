"""The enforcement clock: which instant the enforcer takes as "now" at a given wall instant.

Production runs on the wall clock. Demos and tests run on an accelerated clock or a manual
one, so that nothing waits for real months. Each mode is a pure mapping `at(wall)` from a
wall instant (µs) to an enforcement instant (µs); the worker's sweeps advance the driver to
`at(wall now)`, and a change event committed at wall instant w is applied at `at(w)`.
`lethe simulate` maps each event's `ts_ms` the same way, so the two agree under one clock.

- `WallClock`: the wall instant itself.
- `AcceleratedClock`: `start` at `wall_start`, then `speed` enforcement seconds per wall
  second. Before `wall_start` the clock stands at `start`; the exact time is rounded down to
  the µs; beyond year 9999 it stops at MAX_INSTANT (every stage is due by then).
- `ManualClock`: `start` until an operator advances it (`lethe clock advance`); then the
  latest instant it was advanced to at or before the wall instant. It never moves back.

Reading the wall clock and following the operator's advances is the runtime's job (`lethe.clock`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from policy.instants import MAX_INSTANT, MIN_INSTANT, Instant, format_instant


@dataclass(frozen=True, slots=True)
class WallClock:
    """Enforcement time is wall time (production)."""

    def at(self, wall: Instant) -> Instant:
        return wall

    def describe(self) -> str:
        return "wall clock"


@dataclass(frozen=True, slots=True)
class AcceleratedClock:
    """`start` at wall instant `wall_start`, then `speed` times as fast as the wall clock."""

    start: Instant
    wall_start: Instant
    speed: Fraction

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError(f"the speed must be more than 0, not {self.speed}")
        if not MIN_INSTANT <= self.start <= MAX_INSTANT:
            raise ValueError("the start must be between years 1 and 9999")

    def at(self, wall: Instant) -> Instant:
        """The enforcement instant at `wall`: rounded down to the µs, held to start..MAX_INSTANT."""
        elapsed = wall - self.wall_start
        if elapsed <= 0:
            return self.start
        scaled = elapsed * self.speed.numerator // self.speed.denominator
        return min(self.start + scaled, MAX_INSTANT)

    def describe(self) -> str:
        return (
            f"accelerated clock: {format_instant(self.start)} at wall "
            f"{format_instant(self.wall_start)}, speed {_speed_text(self.speed)}"
        )


@dataclass(frozen=True, slots=True)
class ClockAdvance:
    """An operator moved the manual clock to `to` at wall instant `wall`."""

    wall: Instant
    to: Instant


class ClockWouldGoBack(ValueError):
    """The manual clock never moves back: `to` is earlier than where it stands."""

    def __init__(self, current: Instant, to: Instant) -> None:
        self.current = current
        self.to = to
        super().__init__(
            f"the clock stands at {format_instant(current)}; it never moves back, so it "
            f"cannot go to {format_instant(to)}: advance it to {format_instant(current)} or later"
        )


@dataclass(frozen=True, slots=True)
class ManualClock:
    """`start`, then wherever an operator advanced it (`advances`, in any order)."""

    start: Instant
    advances: tuple[ClockAdvance, ...] = ()

    @property
    def latest(self) -> Instant:
        """Where the clock stands after every advance."""
        return max((self.start, *(advance.to for advance in self.advances)))

    def at(self, wall: Instant) -> Instant:
        """The latest instant the clock was advanced to at or before `wall` (else `start`)."""
        now = self.start
        for advance in self.advances:
            if advance.wall <= wall and advance.to > now:
                now = advance.to
        return now

    def advance(self, to: Instant, wall: Instant) -> ManualClock:
        """The clock advanced to `to` at `wall`; ClockWouldGoBack when `to` is earlier than
        `latest`. The advances are kept in wall order."""
        current = self.latest
        if to < current:
            raise ClockWouldGoBack(current, to)
        advances = sorted((*self.advances, ClockAdvance(wall, to)), key=_wall_order)
        return ManualClock(self.start, tuple(advances))

    def describe(self) -> str:
        if not self.advances:
            return f"manual clock: {format_instant(self.start)} (its start, never advanced)"
        last = max(self.advances, key=_wall_order)
        return (
            f"manual clock: {format_instant(self.latest)} "
            f"(last advanced at wall {format_instant(last.wall)})"
        )


EnforcementClock = WallClock | AcceleratedClock | ManualClock
"""One of the three modes; each has `at(wall) -> Instant` and `describe()`."""

WALL_CLOCK = WallClock()


def parse_speed(text: str) -> Fraction:
    """`86400`, `0.5` or `1/60` as an exact speed factor; ValueError unless a number > 0."""
    try:
        speed = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(
            f"{text!r} is not a number; write a speed factor such as 86400 (a day a second), "
            "0.5 or 1/60"
        ) from None
    if speed <= 0:
        raise ValueError(f"{text!r} is not more than 0; the clock must move forwards")
    return speed


def _speed_text(speed: Fraction) -> str:
    return str(speed.numerator) if speed.denominator == 1 else str(speed)


def _wall_order(advance: ClockAdvance) -> tuple[Instant, Instant]:
    return (advance.wall, advance.to)
