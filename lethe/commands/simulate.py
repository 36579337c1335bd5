"""`lethe simulate`: dry-run the policy engine over a captured Debezium stream.

Reads JSON lines (one Kafka record each, as Debezium's JsonConverter writes it),
prints one JSON line per command on stdout (ordered by when it is sent, `issued_at` or a
re-issue's `reissued_at`, then table, then key) and reports every skipped line on stderr
as `FILE:LINE: what is wrong`.
Exit status: 0 when every line was used, 1 when some lines were skipped (the
output is complete for the others), 2 when the policy or the file cannot be read
or `--until` is earlier than the last event (nothing is printed on stdout then).

The run is under the enforcement clock of the LETHE_CLOCK* settings, the worker's: each
event is applied at the clock's instant for its `ts_ms` (its wall time), and `--until` is
an enforcement instant. Under the manual clock, `--clock-advances FILE` lists the advances
an operator made, one a line: `WALL_INSTANT INSTANT` (at wall time WALL_INSTANT the clock
was advanced to INSTANT), in wall order; `#` starts a comment. Without it the manual clock
stands at LETHE_CLOCK_START until `--until`.

Nothing is re-issued unless `--confirm-after SECONDS` is given: then an anonymise or delete
command that no later event of the file confirms (the row's delete, its anonymised values) is
printed again, with the same `command_id`, `attempt` and `reissued_at`, SECONDS of the
enforcement clock after it was issued, then after 2x, 4x, 8x and 16x that, as the worker
does with LETHE_CONFIRM_TIMEOUT.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from lethe.commands import instant_argument
from lethe.errors import ConfigError
from lethe.policy_file import load_policy
from lethe.settings import Settings
from policy.enforcement_clock import ClockWouldGoBack, ManualClock
from policy.instants import Instant, format_instant, parse_instant


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy",
        type=Path,
        metavar="POLICY",
        help="the policy file (default: $LETHE_POLICY, else config/policy.yaml)",
    )
    parser.add_argument(
        "--events", required=True, metavar="FILE.jsonl", help="captured records, one per line"
    )
    parser.add_argument(
        "--until",
        type=instant_argument,
        metavar="INSTANT",
        help="advance the simulated clock to this instant after the last line; not before "
        "the last event (e.g. 2031-01-01T00:00:00Z; default: the last event's time); an "
        "instant of the enforcement clock (LETHE_CLOCK)",
    )
    parser.add_argument(
        "--clock-advances",
        type=Path,
        metavar="FILE",
        help="LETHE_CLOCK=manual only: the advances of the manual clock, one `WALL_INSTANT "
        "INSTANT` a line, in wall order (default: none, the clock stands at LETHE_CLOCK_START)",
    )
    parser.add_argument(
        "--confirm-after",
        type=positive_seconds,
        metavar="SECONDS",
        help="re-issue an anonymise or delete command that no later event confirms, SECONDS of "
        "the enforcement clock after it was issued, then after 2x, 4x, 8x and 16x (default: "
        "never)",
    )


def positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text} is not more than 0 seconds")
    return seconds


def read_advances(path: Path, clock: ManualClock) -> ManualClock:
    """`clock` advanced as `path` lists; ConfigError naming FILE:LINE for a bad line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    last_wall: Instant | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2:
            raise ConfigError(
                f"{path}:{number}: write `WALL_INSTANT INSTANT`, e.g. "
                "`2026-11-30T10:00:00Z 2027-01-01T00:00:00Z`"
            )
        try:
            wall, to = (parse_instant(word) for word in words)
        except ValueError as exc:
            raise ConfigError(f"{path}:{number}: {exc}") from None
        if last_wall is not None and wall < last_wall:
            raise ConfigError(
                f"{path}:{number}: wall time {format_instant(wall)} is before the line above's "
                f"({format_instant(last_wall)}); list the advances in wall order"
            )
        try:
            clock = clock.advance(to, wall)
        except ClockWouldGoBack as exc:
            raise ConfigError(f"{path}:{number}: {exc}") from None
        last_wall = wall
    return clock


def run(args: argparse.Namespace) -> int:
    from policy.engine import Engine
    from policy.simulation import UntilBeforeLastEvent, simulate

    settings = Settings.from_env()
    clock = settings.clock
    if args.clock_advances is not None:
        if not isinstance(clock, ManualClock):
            raise ConfigError(
                f"--clock-advances is for the manual clock, but LETHE_CLOCK is "
                f"{settings.clock_mode}; set LETHE_CLOCK=manual and LETHE_CLOCK_START, or leave "
                "--clock-advances out"
            )
        clock = read_advances(args.clock_advances, clock)
    path = args.policy if args.policy is not None else settings.policy_path
    policy = load_policy(path)  # raises PolicyFileInvalid (every error, file:line): exit 2
    confirm_after = None
    if args.confirm_after is not None:
        confirm_after = round(args.confirm_after * 1_000_000)
    engine = Engine.compile(policy, confirm_after=confirm_after)
    try:
        with open(args.events, "rb") as stream:
            result = simulate(engine, stream, args.until, clock)
    except OSError as exc:
        raise ConfigError(f"cannot read {args.events}: {exc.strerror}") from None
    except UntilBeforeLastEvent as exc:
        raise ConfigError(f"{args.events}: {exc}") from None
    out = sys.stdout
    for command in result.commands:
        out.write(orjson.dumps(command.to_json()).decode() + "\n")
    out.flush()
    for error in result.errors:
        print(f"{args.events}:{error.line}: {error.message}", file=sys.stderr)
    if result.errors:
        print(
            f"lethe simulate: skipped {len(result.errors)} bad line(s); "
            f"{result.events} event(s) applied, {len(result.commands)} command(s)",
            file=sys.stderr,
        )
        return 1
    return 0
