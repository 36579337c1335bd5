"""`lethe validate` and `lethe simulate` start without Faust or the Kafka clients."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
import lethe.cli
lethe.cli.build_parser()
heavy = sorted(
    {name.split(".")[0] for name in sys.modules}
    & {"faust", "confluent_kafka", "aiokafka", "mode"}
)
print(",".join(heavy))
"""


def test_building_the_parser_imports_no_kafka_stack() -> None:
    """A fresh interpreter, so modules imported by other tests do not count."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    heavy = done.stdout.strip()
    assert heavy == "", f"building the parser imported {heavy}; import them inside run()"


def test_stack_only_offers_exactly_the_stacks_parts() -> None:
    """The parser names the parts itself (importing `lethe.stack` would load the stack's
    code just to build it); they must be the stack's own, in its start order."""
    import argparse

    from lethe import stack
    from lethe.commands import stack as stack_command

    parser = argparse.ArgumentParser()
    stack_command.add_arguments(parser)
    actions = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    only = next(a for a in actions.choices["up"]._actions if a.dest == "only")
    assert tuple(only.choices or ()) == stack.PART_NAMES
