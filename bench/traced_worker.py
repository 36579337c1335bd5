"""`lethe worker` that reports the size of its due indexes, for bench/soak_bench.py --traced.

    python bench/traced_worker.py worker --app-id ID [-l warning]

Runs `lethe.cli.main`; every SOAK_TRACE_EVERY seconds (default 60) a thread logs at WARNING
`bench due index: <timers> timers, <armed> armed` summed over the partitions of
the worker's `FaustStore` (timers: heap entries; armed: rows with a live timer; the
difference: entries of rows disarmed or re-armed, dropped only when their instant passes)
and `bench rocksdb: ...`, the memory RocksDB reports for all the worker's table partitions
(memtables, block caches, table readers: native memory that tracemalloc does not see).
Under PYTHONTRACEMALLOC (the soak's `--tracemalloc`) it also logs, each minute, the 10 source
lines whose allocations grew most since its first report (`bench tracemalloc: ...`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from faust.stores import rocksdb

from lethe import faust_store
from lethe.cli import main

log = logging.getLogger("bench.trace")
stores: list[Any] = []
tables: list[Any] = []
setup = faust_store.FaustStore.__init__
table_setup = rocksdb.Store.__init__
TRACEMALLOC_EVERY_S = 60.0
ROCKSDB_MEMORY = (
    "rocksdb.cur-size-all-mem-tables",
    "rocksdb.block-cache-usage",
    "rocksdb.estimate-table-readers-mem",
)


def recorded_setup(self: Any, *args: Any, **kwargs: Any) -> None:
    setup(self, *args, **kwargs)
    stores.append(self)


def recorded_table_setup(self: Any, *args: Any, **kwargs: Any) -> None:
    table_setup(self, *args, **kwargs)
    tables.append(self)


def rocksdb_mib() -> tuple[int, list[float]]:
    dbs = [db for table in tables for db in list(table._dbs.values())]
    sums = [0.0] * len(ROCKSDB_MEMORY)
    for db in dbs:
        for index, name in enumerate(ROCKSDB_MEMORY):
            sums[index] += (db.property_int_value(name) or 0) / 1024 / 1024
    return len(dbs), sums


def report(every: float) -> None:
    first = None
    traced_at = time.monotonic()
    while True:
        time.sleep(every)
        indexes = [index for store in stores for index in store._due.values()]
        timers = sum(index.timers() for index in indexes)
        armed = sum(len(index) for index in indexes)
        log.warning("bench due index: %d timers, %d armed", timers, armed)
        count, (memtables, caches, readers) = rocksdb_mib()
        log.warning(
            "bench rocksdb: %d dbs, memtables %.1f MiB, block caches %.1f MiB, "
            "table readers %.1f MiB",
            count,
            memtables,
            caches,
            readers,
        )
        if not tracemalloc.is_tracing() or time.monotonic() - traced_at < TRACEMALLOC_EVERY_S:
            continue
        traced_at = time.monotonic()
        snapshot = tracemalloc.take_snapshot()
        if first is None:
            first = snapshot
            continue
        for stat in snapshot.compare_to(first, "lineno")[:10]:
            log.warning("bench tracemalloc: %s", stat)


faust_store.FaustStore.__init__ = recorded_setup  # type: ignore[method-assign]
rocksdb.Store.__init__ = recorded_table_setup  # type: ignore[method-assign]

if __name__ == "__main__":
    every = float(os.environ.get("SOAK_TRACE_EVERY", "60"))
    threading.Thread(target=report, args=(every,), daemon=True).start()
    raise SystemExit(main())
