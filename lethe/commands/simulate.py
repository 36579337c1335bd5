"""`lethe simulate`: dry-run the policy engine over a captured Debezium stream.

Reads JSON lines (one Kafka record each, as Debezium's JsonConverter writes it),
prints one JSON line per command on stdout (ordered by issued_at, then table,
then key) and reports every skipped line on stderr as `FILE:LINE: what is wrong`.
Exit status: 0 when every line was used, 1 when some lines were skipped (the
output is complete for the others), 2 when the policy or the file cannot be read
or `--until` is earlier than the last event (nothing is printed on stdout then).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from lethe.errors import ConfigError
from lethe.policy_file import load_policy
from lethe.settings import Settings
from policy.instants import Instant, parse_instant


def _instant(text: str) -> Instant:
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
        type=_instant,
        metavar="INSTANT",
        help="advance the simulated clock to this instant after the last line; not before "
        "the last event (e.g. 2031-01-01T00:00:00Z; default: the last event's time)",
    )


def run(args: argparse.Namespace) -> int:
    from policy.engine import Engine
    from policy.simulation import UntilBeforeLastEvent, simulate

    path = args.policy if args.policy is not None else Settings.from_env().policy_path
    policy = load_policy(path)  # raises PolicyFileInvalid (every error, file:line): exit 2
    engine = Engine.compile(policy)
    try:
        with open(args.events, "rb") as stream:
            result = simulate(engine, stream, args.until)
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
