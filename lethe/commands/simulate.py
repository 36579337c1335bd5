"""`lethe simulate`: dry-run the policy engine over a captured Debezium stream.

Reads JSON lines (one Kafka record each, as Debezium's JsonConverter writes it),
prints one JSON line per command on stdout (ordered by issued_at, then table,
then key) and reports every skipped line on stderr as `FILE:LINE: what is wrong`.
Exit status: 0 when every line was used, 1 when some lines were skipped (the
output is complete for the others), 2 when the policy or the file cannot be read.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from lethe.errors import ConfigError
from policy.instants import Instant, parse_instant
from policy.model import Policy


def _instant(text: str) -> Instant:
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--policy", default="config/policy.yaml", help="policy file (default: %(default)s)"
    )
    parser.add_argument(
        "--events", required=True, metavar="FILE.jsonl", help="captured records, one per line"
    )
    parser.add_argument(
        "--until",
        type=_instant,
        metavar="INSTANT",
        help="advance the simulated clock to this instant after the last line "
        "(e.g. 2031-01-01T00:00:00Z; default: the last event's time)",
    )


def _load_policy(path: str) -> Policy:
    try:
        from lethe.policy_file import load_policy
    except ImportError:  # until lethe.policy_file lands: the same loader, read here
        from policy.loader import PolicyInvalid, load_policy_text

        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ConfigError(f"cannot read policy {path}: {exc.strerror}") from None
        try:
            return load_policy_text(text, path)
        except PolicyInvalid as exc:
            raise ConfigError(f"policy {path} is invalid:\n{exc}") from None
    return load_policy(path)


def run(args: argparse.Namespace) -> int:
    from policy.simulation import simulate

    policy = _load_policy(args.policy)
    try:
        with open(args.events, "rb") as stream:
            result = simulate(policy, stream, args.until)
    except OSError as exc:
        raise ConfigError(f"cannot read {args.events}: {exc.strerror}") from None
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
