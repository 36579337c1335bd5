"""`lethe stack up|down|status`: the local Kafka/Connect/PostgreSQL/Prometheus stack (with
Prometheus's Alertmanager and the webhook receiver it notifies).

`up` installs what is missing, starts what is not running and waits until every part is
healthy (a no-op re-check on a running stack). `down` stops everything; `--wipe` also
deletes the data under `.stack/` (never the download cache `.cache/`). `status` prints one
line per part and exits 1 when a part is down. Logs: `.stack/logs/<part>.log`.
"""

from __future__ import annotations

import argparse
import sys

from lethe.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    up = actions.add_parser("up", help="start the stack (installing what is missing); wait healthy")
    up.add_argument(
        "--only",
        action="append",
        choices=[
            "postgres",
            "kafka",
            "connect",
            "source",
            "sink",
            "alert-receiver",
            "alertmanager",
            "prometheus",
        ],
        help="start only this part (repeatable); the parts it needs must already run",
    )
    down = actions.add_parser("down", help="stop every part of the stack")
    down.add_argument(
        "--wipe", action="store_true", help="also delete the stack's data (not the download cache)"
    )
    actions.add_parser("status", help="one line per part; exit 1 when a part is down")


def run(args: argparse.Namespace) -> int:
    from lethe import stack

    settings = Settings.from_env()
    if args.action == "up":
        stack.up(settings, only=set(args.only) if args.only else None)
        return 0
    if args.action == "down":
        stack.down(settings, wipe=args.wipe)
        return 0
    lines = stack.status(settings)
    for part in lines:
        print(part.line())
    down = [part.name for part in lines if not (part.running and part.healthy)]
    if down:
        print(f"down: {', '.join(down)} (start with `lethe stack up`)", file=sys.stderr)
        return 1
    return 0
