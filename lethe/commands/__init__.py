"""Subcommands of the `lethe` command line."""

from __future__ import annotations

import argparse

from policy.instants import Instant, parse_instant


def instant_argument(text: str) -> Instant:
    """An ISO-8601 instant on the command line; argparse reports a bad one as a usage error."""
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
