"""RocksDB memtable size, without Kafka: what a write costs, and whether one cap fits all DBs.

Run (no broker; writes under a temporary directory and deletes it):

    .venv/bin/python bench/memtable_bench.py writes [--rows 1000000] [--overwrites 200000]
        [--sizes 8388608,1048576,262144]
    .venv/bin/python bench/memtable_bench.py shared [--dbs 26] [--writes 240000]

`writes`: one RocksDB opened as the worker's table partitions are (`faust.stores.rocksdb.
RocksDBOptions` with `lethe.app.ROCKSDB_OPTIONS`) per memtable size, each in a process of its
own: a bulk fill of `--rows` rows (40-byte keys, 280-byte values, shuffled) in write
batches of 5,000, as the prewarm and Faust's recovery write; then `--overwrites` random
overwrites, each a get and a put, as the worker writes. Each phase runs until RocksDB has
no flush or compaction running or pending; it prints wall time, the process's CPU time (all
threads: RocksDB's flushes and compactions too) per row or write, and the bytes written to
disk (/proc/self/io).

`shared`: `--dbs` RocksDBs (a worker's table partitions) written uniformly at random, in a
process of their own, each with its own memtables (`per-db`) or all under one total cap, a
`rocksdict.WriteBufferManager` set on every DB's options; it prints the sum of their
memtables (`rocksdb.cur-size-all-mem-tables`), the manager's own count, the process's RSS and
the files on disk as the writes go.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import rocksdict
from faust.stores.rocksdb import RocksDBOptions

from lethe.app import ROCKSDB_OPTIONS

VALUE_BYTES = 280
BATCH = 5000
KiB = 1024
MiB = 1024 * 1024


def cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def written_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes"):
            return int(line.split()[1])
    return 0


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / KiB
    return 0.0


def settled(db: Any) -> None:
    """Wait until RocksDB runs and owes no flush or compaction."""
    busy = ("rocksdb.num-running-compactions", "rocksdb.num-running-flushes")
    while any(int(db.property_value(name)) for name in busy) or int(
        db.property_value("rocksdb.compaction-pending")
    ):
        time.sleep(0.05)


class SharedCapOptions(RocksDBOptions):
    """Faust's options with one WriteBufferManager set on each DB (None: Faust's own)."""

    manager: Any = None

    def as_options(self) -> Any:
        options = super().as_options()
        if self.manager is not None:
            options.set_write_buffer_manager(self.manager)
        return options


def options(write_buffer: int, manager: Any = None) -> SharedCapOptions:
    opened = SharedCapOptions(**ROCKSDB_OPTIONS, write_buffer_size=write_buffer, use_rocksdict=True)
    opened.manager = manager
    return opened


def writes(write_buffer: int, rows: int, overwrites: int, scratch: Path) -> None:
    db = options(write_buffer).open(scratch / f"writes-{write_buffer}")
    rnd = random.Random(1)
    keys = [rnd.randbytes(12) + b"subject-row-%09d" % i for i in range(rows)]
    value = os.urandom(VALUE_BYTES)
    cpu, disk, wall = cpu_s(), written_bytes(), time.perf_counter()
    batch = rocksdict.WriteBatch(raw_mode=True)
    for count, key in enumerate(keys, 1):
        batch.put(key, value)
        if count % BATCH == 0:
            db.write(batch)
            batch = rocksdict.WriteBatch(raw_mode=True)
    db.write(batch)
    settled(db)
    fill = (time.perf_counter() - wall, (cpu_s() - cpu) / rows, written_bytes() - disk)
    cpu, disk = cpu_s(), written_bytes()
    for _ in range(overwrites):
        key = keys[rnd.randrange(rows)]
        db.get(key)
        db[key] = value
    settled(db)
    over = ((cpu_s() - cpu) / overwrites, written_bytes() - disk)
    db.close()
    print(
        f"memtable {write_buffer:>9,} B: fill of {rows:,} rows {fill[0]:5.1f} s, "
        f"{fill[1] * 1e6:5.1f} µs CPU/row, {fill[2] / MiB:5.0f} MiB written; "
        f"{overwrites:,} overwrites {over[0] * 1e6:5.1f} µs CPU/write, "
        f"{over[1] / MiB:5.0f} MiB written",
        flush=True,
    )


def shared(write_buffer: int, cap: int | None, dbs: int, total: int, scratch: Path) -> None:
    manager = None if cap is None else rocksdict.WriteBufferManager(cap, False)
    where = scratch / f"shared-{write_buffer}-{cap}"
    opened = options(write_buffer, manager)
    tables = [opened.open(where / str(index)) for index in range(dbs)]
    rnd = random.Random(1)
    value = os.urandom(VALUE_BYTES)
    label = "per-db" if cap is None else f"one cap of {cap / MiB:g} MiB"
    print(f"{dbs} DBs, memtables of {write_buffer / KiB:g} KiB, {label}:")
    step = total // 6
    for done in range(step, total + 1, step):
        for _ in range(step):
            tables[rnd.randrange(dbs)][rnd.randbytes(40)] = value
        memtables = sum(
            int(table.property_int_value("rocksdb.cur-size-all-mem-tables") or 0)
            for table in tables
        )
        counted = 0 if manager is None else manager.get_usage()
        files = sum(len(os.listdir(where / str(index))) for index in range(dbs))
        print(
            f"  {done:>8,} writes: memtables {memtables / MiB:6.1f} MiB, manager's count "
            f"{counted / MiB:5.1f} MiB, RSS {rss_mib():6.1f} MiB, {files} files",
            flush=True,
        )
    for table in tables:
        table.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", choices=("writes", "shared"))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--overwrites", type=int, default=200_000)
    parser.add_argument("--sizes", default="8388608,1048576,262144")
    parser.add_argument("--dbs", type=int, default=26)
    parser.add_argument("--writes", type=int, default=240_000)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    scratch = Path(tempfile.mkdtemp(prefix="lethe-memtable-bench-"))
    spawn = multiprocessing.get_context("spawn")

    def alone(target: Any, *run: Any) -> None:
        process = spawn.Process(target=target, args=run)
        process.start()
        process.join()

    try:
        if args.bench == "writes":
            for size in sizes:
                alone(writes, size, args.rows, args.overwrites, scratch)
        else:
            runs: list[tuple[int, int | None]] = [
                (8 * MiB, None),
                (256 * KiB, None),
                (8 * MiB, 8 * MiB),
                (8 * MiB, 64 * MiB),
                (1 * MiB, 4 * MiB),
            ]
            for write_buffer, cap in runs:
                alone(shared, write_buffer, cap, args.dbs, args.writes, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
