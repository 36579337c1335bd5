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
