"""`lethe clock show` and `lethe clock advance INSTANT`: the enforcement clock.

`show` prints the clock of the LETHE_CLOCK* settings and where it stands now (the manual
clock is read from its topic). `advance` moves the manual clock (LETHE_CLOCK=manual) to
INSTANT: the worker's next sweep issues everything due by then. The clock never moves
back: an earlier INSTANT is refused (exit 2) with where the clock stands, and nothing is
written. Exit 2 too when the clock is not manual or Kafka does not answer.
"""

from __future__ import annotations

import argparse

from lethe.commands import instant_argument
from lethe.settings import Settings
from policy.instants import format_instant


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser(
        "show", help="print the clock mode and where it stands now", description=__doc__
    )
    advance = actions.add_parser(
        "advance",
        help="move the manual clock to INSTANT (never back)",
        description="Move the manual clock (LETHE_CLOCK=manual) to INSTANT; never back.",
    )
    advance.add_argument(
        "instant", type=instant_argument, metavar="INSTANT", help="e.g. 2027-01-01T00:00:00Z"
    )


def run(args: argparse.Namespace) -> int:
    from lethe.clock import LiveClock, advance_manual_clock

    settings = Settings.from_env()
    if args.action == "advance":
        before, after = advance_manual_clock(settings, args.instant)
        if after == before:
            print(f"the clock already stands at {format_instant(after)}; nothing written")
        else:
            print(f"advanced the clock from {format_instant(before)} to {format_instant(after)}")
        return 0
    clock = LiveClock(settings)
    try:
        now = clock.now()
        print(clock.describe())
        print(f"now: {format_instant(now)}")
    finally:
        clock.close()
    return 0
