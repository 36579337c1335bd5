"""`lethe validate [POLICY]`: check a policy file and list every error with file:line.

Exit 0 with a one-line summary when the policy is valid; otherwise each error
goes to stderr as `file:line: what is wrong (how to fix it)` and the exit
status is 1. Nothing is loaded from a file with errors.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lethe.policy_file import display_name, read_policy
from lethe.settings import Settings
from policy.model import Policy


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "policy",
        nargs="?",
        type=Path,
        metavar="POLICY",
        help="the policy file (default: $LETHE_POLICY, else config/policy.yaml "
        "in the working directory)",
    )


def summary(policy: Policy) -> str:
    rules = sum(len(source.rules) for source in policy.sources.values())
    return (
        f"{len(policy.purposes)} purposes, {len(policy.sources)} sources, "
        f"{rules} rules, {len(policy.parameters)} parameters"
    )


def run(args: argparse.Namespace) -> int:
    path: Path = args.policy if args.policy is not None else Settings.from_env().policy_path
    result = read_policy(path)
    if isinstance(result, Policy):
        print(f"{display_name(path)}: valid: {summary(result)}")
        return 0
    for error in result:
        print(error, file=sys.stderr)
    count = len(result)
    print(
        f"lethe validate: {count} error{'s' if count != 1 else ''} in {display_name(path)}; "
        "nothing loaded",
        file=sys.stderr,
    )
    return 1
