"""`lethe worker` with its sweeps timed, for bench/scale_bench.py (bench only).

    python bench/timed_worker.py worker --app-id ID [-l info]

Runs `lethe.cli.main` with `policy.driver.Driver.advance` wrapped: each advance that returned
commands is logged at WARNING (`bench sweep: <n> commands in <s>s`) with its seconds, less
the due-index rebuild it may have started (`FaustStore._rebuild`, timed apart and logged by
the store). What is timed is the driver's work over the worker's `FaustStore` (heap pops,
RocksDB reads and writes, changelog records handed to Faust), not the commands' delivery.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lethe import faust_store
from lethe.cli import main
from policy import driver

log = logging.getLogger("bench.sweep")
rebuilding = [0.0]
rebuild = faust_store.FaustStore._rebuild
advance = driver.Driver.advance


def timed_rebuild(self: Any, partition: int) -> Any:
    started = time.perf_counter()
    try:
        return rebuild(self, partition)
    finally:
        rebuilding[0] += time.perf_counter() - started


def timed_advance(self: Any, to: Any, bounds: Any = None) -> Any:
    before = rebuilding[0]
    started = time.perf_counter()
    outcome = advance(self, to, bounds)
    took = time.perf_counter() - started - (rebuilding[0] - before)
    if outcome.commands:
        log.warning("bench sweep: %d commands in %.6fs", len(outcome.commands), took)
    return outcome


faust_store.FaustStore._rebuild = timed_rebuild  # type: ignore[method-assign]
driver.Driver.advance = timed_advance  # type: ignore[method-assign]

if __name__ == "__main__":
    raise SystemExit(main())
