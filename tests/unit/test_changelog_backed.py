"""A table partition's RocksDB, opened as the worker opens it (no write-ahead log), keeps after
a crash only writes older than the changelog offset it persisted: a restart then replays the
changelog from that offset and loses nothing. Real RocksDB, a real SIGKILL."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import rocksdict

from lethe.changelog import ChangelogBackedOptions

OFFSET_KEY = b"__offset__"
WRITES = 20_000

_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    from lethe.changelog import ChangelogBackedOptions
    db = ChangelogBackedOptions(write_buffer_size=262144, use_rocksdict=True).open(sys.argv[1])
    value = b"v" * 200
    for index in range(int(sys.argv[2])):
        db.put(b"row-%08d" % index, value)
        if index % 100 == 99:
            db.put(b"__offset__", str(index).encode())
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _open(path: Path) -> rocksdict.Rdict:
    return ChangelogBackedOptions(use_rocksdict=True).open(path)


def test_a_killed_database_keeps_every_write_its_persisted_offset_covers(tmp_path: Path) -> None:
    path = tmp_path / "partition-0"
    done = subprocess.run(
        [sys.executable, "-c", _WRITER, str(path), str(WRITES)],
        env={**os.environ},
        check=False,
        timeout=120,
    )
    assert done.returncode == -signal.SIGKILL

    db = _open(path)
    try:
        offset = db.get(OFFSET_KEY)
        kept = sum(1 for key in db.keys() if key.startswith(b"row-"))  # noqa: SIM118 (an Rdict iterates items)
        assert offset is not None, "256 KiB memtables flushed several times during the writes"
        covered = int(offset) + 1
        assert all(db.get(b"row-%08d" % index) is not None for index in range(covered))
        assert kept >= covered
        assert covered < WRITES, "the writes since the last flush went with the crash"
    finally:
        db.close()


def test_a_database_dropped_at_a_clean_stop_keeps_every_write(tmp_path: Path) -> None:
    """Faust's store does not close its databases at stop: it drops them and collects."""
    path = tmp_path / "partition-0"
    db = _open(path)
    for index in range(1_000):
        db.put(b"row-%08d" % index, b"v")
    db.put(OFFSET_KEY, b"999")
    del db
    gc.collect()

    db = _open(path)
    try:
        assert db.get(OFFSET_KEY) == b"999"
        assert sum(1 for _ in db.keys()) == 1_001  # noqa: SIM118
    finally:
        db.close()
