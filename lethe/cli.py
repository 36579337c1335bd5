"""The `lethe` command line: one subcommand per job.

Each subcommand lives in its own module `lethe.commands.<name>` with
`add_arguments(parser)` and `run(args) -> int`. Building the parser imports
every such module, so they stay light: heavy dependencies (Faust, the Kafka
clients) are imported inside `run`, and `lethe validate` does not pay for them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lethe.errors import LetheError

SUBCOMMANDS: dict[str, str] = {
    "worker": "Start the Faust worker that enforces the policy.",
    "stack": "Start, stop or inspect the local Kafka/Connect/PostgreSQL/Prometheus stack.",
    "validate": "Check a policy file; list every error with file:line.",
    "simulate": "Dry-run the policy engine over a captured Debezium stream (JSON lines).",
    "clock": "Show the enforcement clock, or advance the manual one.",
    "demo": "Seed the demo database, enforce on an accelerated clock, show a live summary.",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lethe", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in SUBCOMMANDS.items():
        module = importlib.import_module(f"lethe.commands.{name}")
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(f"lethe.commands.{args.command}")
    try:
        return int(module.run(args))
    except LetheError as exc:
        print(f"lethe {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
