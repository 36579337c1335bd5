"""The enforcement clock's modes: which instant is "now" at a wall instant (hand-worked)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from lethe.cli import main
from lethe.clock import LiveClock, decode_advance, encode_advance
from lethe.settings import Settings
from policy.enforcement_clock import (
    AcceleratedClock,
    ClockAdvance,
    ClockWouldGoBack,
    ManualClock,
    WallClock,
    parse_speed,
)
from policy.instants import format_instant, parse_instant

WALL_START = parse_instant("2026-11-30T09:00:00Z")
START = parse_instant("2026-01-01T00:00:00Z")
SECOND = 1_000_000


def at(clock: AcceleratedClock | ManualClock | WallClock, wall: int) -> str:
    return format_instant(clock.at(wall))


def test_the_wall_clock_is_the_wall_instant() -> None:
    assert at(WallClock(), parse_instant("2026-11-30T09:00:00.5Z")) == "2026-11-30T09:00:00.500000Z"


def test_a_day_a_second_makes_ten_wall_seconds_ten_days() -> None:
    clock = AcceleratedClock(START, WALL_START, Fraction(86400))
    assert at(clock, WALL_START) == "2026-01-01T00:00:00Z"
    assert at(clock, WALL_START + 10 * SECOND) == "2026-01-11T00:00:00Z"
    assert at(clock, WALL_START + 365 * SECOND) == "2027-01-01T00:00:00Z"
    # a sixth of a wall second is four hours
    assert at(clock, WALL_START + 166_667) == "2026-01-01T04:00:00.028800Z"


def test_before_its_wall_start_the_clock_stands_at_its_start() -> None:
    clock = AcceleratedClock(START, WALL_START, Fraction(86400))
    assert at(clock, WALL_START - 3600 * SECOND) == "2026-01-01T00:00:00Z"
    assert at(clock, WALL_START - 1) == "2026-01-01T00:00:00Z"


def test_fractional_speeds_round_down_to_the_microsecond() -> None:
    a_minute_an_hour = AcceleratedClock(START, WALL_START, parse_speed("1/60"))
    assert at(a_minute_an_hour, WALL_START + 3600 * SECOND) == "2026-01-01T00:01:00Z"
    assert at(a_minute_an_hour, WALL_START + 59) == "2026-01-01T00:00:00Z"
    assert at(a_minute_an_hour, WALL_START + 60) == "2026-01-01T00:00:00.000001Z"
    half = AcceleratedClock(START, WALL_START, parse_speed("0.5"))
    assert at(half, WALL_START + 3) == "2026-01-01T00:00:00.000001Z"  # 1.5 µs
    assert at(half, WALL_START + 4) == "2026-01-01T00:00:00.000002Z"
    one_and_a_half = AcceleratedClock(START, WALL_START, parse_speed("1.5"))
    assert at(one_and_a_half, WALL_START + 3 * SECOND) == "2026-01-01T00:00:04.500000Z"
    assert at(one_and_a_half, WALL_START + 1) == "2026-01-01T00:00:00.000001Z"


def test_beyond_year_9999_the_clock_stops() -> None:
    clock = AcceleratedClock(parse_instant("9999-12-31T00:00:00Z"), WALL_START, Fraction(86400))
    assert at(clock, WALL_START + SECOND // 2) == "9999-12-31T12:00:00Z"
    assert at(clock, WALL_START + 2 * SECOND) == "9999-12-31T23:59:59.999999Z"
    assert at(clock, WALL_START + 10**9 * SECOND) == "9999-12-31T23:59:59.999999Z"


@pytest.mark.parametrize("text", ["0", "-86400", "fast", "1/0", "inf", ""])
def test_a_speed_is_a_number_more_than_zero(text: str) -> None:
    with pytest.raises(ValueError, match=r"86400|more than 0"):
        parse_speed(text)


def test_speeds_are_read_exactly() -> None:
    assert parse_speed("86400") == 86400
    assert parse_speed("0.1") == Fraction(1, 10)
    assert parse_speed("1/60") == Fraction(1, 60)


def test_an_accelerated_clock_refuses_a_speed_of_zero() -> None:
    with pytest.raises(ValueError, match="more than 0"):
        AcceleratedClock(START, WALL_START, Fraction(0))


def test_the_manual_clock_stands_at_its_start_until_advanced() -> None:
    clock = ManualClock(START)
    assert at(clock, WALL_START) == "2026-01-01T00:00:00Z"
    assert "never advanced" in clock.describe()


def test_the_manual_clock_shows_the_latest_advance_made_by_then() -> None:
    clock = ManualClock(START).advance(parse_instant("2027-01-01T00:00:00Z"), WALL_START)
    clock = clock.advance(parse_instant("2028-06-01T00:00:00Z"), WALL_START + 60 * SECOND)
    assert at(clock, WALL_START - 1) == "2026-01-01T00:00:00Z"
    assert at(clock, WALL_START) == "2027-01-01T00:00:00Z"
    assert at(clock, WALL_START + 59 * SECOND) == "2027-01-01T00:00:00Z"
    assert at(clock, WALL_START + 60 * SECOND) == "2028-06-01T00:00:00Z"
    assert format_instant(clock.latest) == "2028-06-01T00:00:00Z"


def test_the_manual_clock_never_moves_back() -> None:
    clock = ManualClock(START).advance(parse_instant("2027-01-01T00:00:00Z"), WALL_START)
    with pytest.raises(ClockWouldGoBack, match="stands at 2027-01-01T00:00:00Z"):
        clock.advance(parse_instant("2026-12-31T23:59:59Z"), WALL_START + SECOND)
    with pytest.raises(ClockWouldGoBack, match="stands at 2026-01-01T00:00:00Z"):
        ManualClock(START).advance(parse_instant("2025-12-31T00:00:00Z"), WALL_START)
    same = clock.advance(parse_instant("2027-01-01T00:00:00Z"), WALL_START + SECOND)
    assert format_instant(same.latest) == "2027-01-01T00:00:00Z"


def test_an_advance_read_out_of_order_does_not_move_the_clock_back() -> None:
    """Two operators racing: the later record holds the earlier instant."""
    clock = ManualClock(
        START,
        (
            ClockAdvance(WALL_START, parse_instant("2028-01-01T00:00:00Z")),
            ClockAdvance(WALL_START + SECOND, parse_instant("2027-01-01T00:00:00Z")),
        ),
    )
    assert at(clock, WALL_START + 2 * SECOND) == "2028-01-01T00:00:00Z"
    assert format_instant(clock.latest) == "2028-01-01T00:00:00Z"


def test_a_clock_record_reads_back_and_anything_else_is_none() -> None:
    to, wall = parse_instant("2027-01-01T00:00:00Z"), parse_instant("2026-11-30T09:00:00.25Z")
    raw = encode_advance(to, wall)
    assert raw == b'{"instant":"2027-01-01T00:00:00Z","advanced_at":"2026-11-30T09:00:00.250000Z"}'
    assert decode_advance(raw) == (to, wall)
    for other in (None, b"", b"[]", b'{"instant":"soon","advanced_at":"now"}', b'{"instant":1}'):
        assert decode_advance(other) is None


def test_the_live_accelerated_clock_reads_the_wall_clock_it_is_given() -> None:
    settings = Settings.from_env(
        {
            "LETHE_CLOCK": "accelerated",
            "LETHE_CLOCK_START": "2026-01-01T00:00:00Z",
            "LETHE_CLOCK_WALL_START": "2026-11-30T09:00:00Z",
            "LETHE_CLOCK_SPEED": "86400",
        }
    )
    clock = LiveClock(settings, wall=lambda: WALL_START + 31 * SECOND)
    assert format_instant(clock.now()) == "2026-02-01T00:00:00Z"
    assert format_instant(clock.event_instant(WALL_START + SECOND)) == "2026-01-02T00:00:00Z"
    assert clock.describe() == (
        "accelerated clock: 2026-01-01T00:00:00Z at wall 2026-11-30T09:00:00Z, speed 86400"
    )


def test_only_the_manual_clock_is_advanced_by_hand(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("LETHE_CLOCK", raising=False)
    assert main(["clock", "advance", "2027-01-01T00:00:00Z"]) == 2
    assert "LETHE_CLOCK is wall: only the manual clock is advanced by hand; set " in (
        capsys.readouterr().err
    )


def test_clock_show_names_the_mode(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LETHE_CLOCK", "accelerated")
    monkeypatch.setenv("LETHE_CLOCK_WALL_START", "2026-11-30T09:00:00Z")
    monkeypatch.setenv("LETHE_CLOCK_SPEED", "1/60")
    monkeypatch.delenv("LETHE_CLOCK_START", raising=False)
    assert main(["clock", "show"]) == 0
    first, now = capsys.readouterr().out.splitlines()
    assert (
        first == "accelerated clock: 2026-11-30T09:00:00Z at wall 2026-11-30T09:00:00Z, speed 1/60"
    )
    assert now.startswith("now: 2026-")
