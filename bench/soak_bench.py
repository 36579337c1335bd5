"""Soak (issue 9, row 6): one enforcing `lethe worker` under a steady load for `--minutes`
(default 10), its RSS, lag and sweep time sampled; growth past the first minute is a leak.

Run (needs the local broker only; makes and deletes its own change topic
`<prefix>.soak.logs_<run>`, sink topic `lethe.sink.soak.logs_<run>`, app id `soak-<run>` and
the app's topics and group; never touches PostgreSQL or Connect):

    .venv/bin/python bench/soak_bench.py [--minutes 10] [--rate 500] [--lifetime 45]
        [--update-share 0.2] [--early-share 0.25] [--sample-every 5] [--samples-out FILE]

The load, at `--rate` change records a second once steady (creates c, updates u and deletes d,
with c = d = rate x (1 - update share) / 2, u = rate x update share):
- creates of `soak.logs_<run>` rows (connection-log columns and rules; the bench policy sets
  `connection_log_retention` to `--lifetime` seconds), logged now, so each falls due
  `--lifetime` s after it is written; five consecutive rows a customer, so subjects come and
  go as well as rows;
- updates of a random row not yet within 2 s of its due (a new IP address; the due does not
  move);
- deletes: `--early-share` of the rows are deleted by "the application" at a random time
  before their due (the worker drops them, no command); every other row falls due, the worker
  (LETHE_CLOCK=wall, LETHE_ENFORCE=on, tick 1 s) sends its delete to the sink topic, and the
  bench plays the database and Debezium: for each delete it reads there it writes the row's
  delete record and tombstone to the change topic, which confirms the command. The schema
  `soak` keeps the stack's JDBC sink (it reads `lethe.sink.public.*`) off these topics.
So rows are removed at the rate they are added: from about `--lifetime` s on, the rows the
worker tracks stay near c x lifetime x (1 - early share / 2) (about 7,900 at the defaults),
its subjects likewise, and every figure that still grows after the first minute grows with
time, not with the state: that is what the verdict looks for (`bench/soak_report.py`).

Every `--sample-every` seconds the bench reads the worker's RSS and CPU time (/proc), its
/metrics (commands issued, confirmed, re-issued, dead letters, rows tracked, the consumer
lag gauges, the `lethe_sweep_duration_seconds` histogram; LETHE_CENSUS_INTERVAL=10 for the
gauges), its group's committed offsets against the end offsets of the change topic and of
`<app id>-subject-events`, and its data directory's size. `--traced` runs the worker under
`bench/traced_worker.py`, which logs its due indexes' sizes and RocksDB's memtables at each
sample (the table and verdict then show RSS less the memtables; `--tracemalloc`: also the
source lines whose allocations grew most, each minute), to find what grows.

It prints the minute table, the verdict, and the commands: rows due before the load stopped
against the deletes seen (none missing, none early, none for a row deleted early). Exit
status 0 when nothing grows and no command is missing or early, 2 otherwise. The machine is
shared: note `nproc` and the load. The worker must keep up for the verdict to speak of
leaks: a worker that falls behind holds fetched records and unconfirmed rows that grow with
its lag (the lag finding says so); lower `--rate` until it keeps up.

The load (feed, database, ledger) is in `bench/soak_load.py`; this module holds the sampler.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from enforce_bench import PARTITIONS, committed, forget, start_worker, write_logs_policy  # noqa: E402
from ingest_contenders import cpu_seconds, free_port  # noqa: E402
from ingest_stream import admin, create_topic, end_offsets  # noqa: E402
from scale_bench import rss  # noqa: E402
from soak_load import Database, Feed, Ledger  # noqa: E402
from soak_report import Sample, minutes, sample_of, table, verdict  # noqa: E402

from lethe.settings import Settings  # noqa: E402
from lethe.topics import COMMAND_PARTITIONS, subject_events_topic_name  # noqa: E402
from policy.sink_records import sink_topic  # noqa: E402

SCHEMA = "soak"
MISSING = "not seen by the end of the drain (lost, or late: see the lag)"
START_TIMEOUT_S = 180.0


def metrics_text(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return str(response.read().decode())
    except OSError:
        return None


def memtables_kib(log_path: Path) -> int | None:
    """RocksDB's memtables as bench/traced_worker.py last logged them, in KiB."""
    found = None
    with contextlib.suppress(OSError):
        for line in log_path.read_text(errors="replace").splitlines():
            if "bench rocksdb:" in line:
                found = line
    if found is None:
        return None
    return int(float(found.split("memtables ", 1)[1].split(" MiB", 1)[0]) * 1024)


def directory_kib(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(folder, name)).st_size
    return total // 1024


def committed_lag(bootstrap: str, app_id: str, topic: str) -> float:
    """End offsets minus the worker group's committed offsets: change topic and subject events."""
    subject_events = subject_events_topic_name(app_id)
    ends = end_offsets(bootstrap, [topic, subject_events])
    done = committed(bootstrap, app_id, topic, 1)
    done += committed(bootstrap, app_id, subject_events, PARTITIONS)
    return float(ends[topic] + ends[subject_events] - done)


def wait_for_metrics(port: int, process_alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and process_alive():
        if metrics_text(port) is not None:
            return
        time.sleep(1)
    raise SystemExit("the worker served no /metrics within its start timeout")


def account(ledger: Ledger, stopped_ms: int) -> dict[str, int]:
    """Rows that fell due before the load stopped, against the deletes the worker sent."""
    commanded = dict(ledger.commanded_ms)  # a copy: the database thread may still add
    due = {r for r, at in ledger.due_ms.items() if at <= stopped_ms} - ledger.early_deleted
    seen = set(commanded)
    early = sum(1 for r, at in commanded.items() if at < ledger.due_ms.get(r, 0))
    return {
        "rows created": len(ledger.due_ms),
        "deleted early by the application": len(ledger.early_deleted),
        "due before the load stopped": len(due),
        "delete commands seen for them": len(due & seen),
        MISSING: len(due - seen),
        "early (sent before due)": early,
        "for a row deleted early": ledger.after_early_delete,
        "re-sent (same row)": ledger.repeated,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--rate", type=float, default=500.0, help="change records/s, steady")
    parser.add_argument("--lifetime", type=int, default=45, help="seconds from create to due")
    parser.add_argument("--update-share", type=float, default=0.2)
    parser.add_argument("--early-share", type=float, default=0.25)
    parser.add_argument("--sample-every", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument(
        "--drain",
        type=float,
        default=180.0,
        help="seconds to wait, once the load stops, for the commands of the rows due by then",
    )
    parser.add_argument("--samples-out", type=Path, help="also write the samples as JSON")
    parser.add_argument(
        "--traced",
        action="store_true",
        help="run the worker under bench/traced_worker.py: due index and RocksDB memtables",
    )
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="with --traced: also the lines whose allocations grew most (slows the worker)",
    )
    parser.add_argument(
        "--write-buffer",
        type=int,
        help="LETHE_ROCKSDB_WRITE_BUFFER_BYTES for the worker (default: the setting's, or "
        "the variable's when set)",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on the way out
    settings = Settings.from_env()
    bootstrap = settings.kafka_bootstrap
    run = uuid.uuid4().hex[:8]
    table_name = f"logs_{run}"
    topic = f"{settings.cdc_topic_prefix}.{SCHEMA}.{table_name}"
    sink = sink_topic(f"{SCHEMA}.{table_name}")
    app_id = f"soak-{run}"
    ledger = Ledger()
    samples: list[Sample] = []
    process = None
    feed = database = None
    stopped_ms = 0
    drained_s = 0.0
    traced = False
    with tempfile.TemporaryDirectory(prefix="lethe-soak-") as scratch:
        workdir = Path(scratch)
        log_path = Path(tempfile.gettempdir()) / f"{app_id}.log"
        try:
            create_topic(bootstrap, topic)
            client = admin(bootstrap)
            client.create_topics([NewTopic(sink, num_partitions=COMMAND_PARTITIONS)])[sink].result(
                30
            )
            policy = write_logs_policy(
                table_name,
                workdir / "policy.yaml",
                {"connection_log_retention": f"PT{args.lifetime}S"},
                schema=SCHEMA,
            )
            port = free_port()
            data_dir = workdir / "data"
            traced = args.traced or args.tracemalloc
            extra = {"SOAK_TRACE_EVERY": str(args.sample_every)}
            if args.tracemalloc:
                extra["PYTHONTRACEMALLOC"] = "1"
            if args.write_buffer is not None:
                extra["LETHE_ROCKSDB_WRITE_BUFFER_BYTES"] = str(args.write_buffer)
            print(f"worker log: {log_path}; app id {app_id}; topic {topic}", flush=True)
            process = start_worker(
                app_id,
                policy,
                data_dir,
                log_path,
                {
                    "LETHE_KAFKA_BOOTSTRAP": bootstrap,
                    "LETHE_CLOCK": "wall",
                    "LETHE_ENFORCE": "on",
                    "LETHE_METRICS": "on",
                    "LETHE_WEB_PORT": str(port),
                    "LETHE_CENSUS_INTERVAL": "10",
                    **extra,
                },
                ROOT / "bench" / "traced_worker.py" if traced else None,
            )
            wait_for_metrics(port, lambda: process.poll() is None)
            database = Database(bootstrap, sink, topic, ledger, args.seed)
            producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "log_level": 0})
            feed = Feed(producer, topic, args, ledger)
            database.start()
            started = time.monotonic()
            feed.start()
            duration = args.minutes * 60
            k = 0
            while k * args.sample_every < duration:
                at_s = k * args.sample_every
                time.sleep(max(0.0, started + at_s - time.monotonic()))
                if process.poll() is not None:
                    raise SystemExit(f"the worker exited ({process.returncode}); see {log_path}")
                for thread in (feed, database):
                    if thread.error is not None:
                        raise SystemExit(f"{type(thread).__name__} failed: {thread.error!r}")
                text = metrics_text(port)
                if text is not None:
                    samples.append(
                        sample_of(
                            text,
                            at_s,
                            rss(process.pid)[0],
                            cpu_seconds(process.pid) or 0.0,
                            committed_lag(bootstrap, app_id, topic),
                            directory_kib(data_dir),
                            memtables_kib(log_path) if traced else None,
                        )
                    )
                if k and at_s % 60 == 0:
                    last = samples[-1] if samples else None
                    print(
                        f"{at_s / 60:.0f} min: {ledger.written:,} written, "
                        f"{ledger.confirmations:,} confirmed by the bench, RSS "
                        f"{(last.rss_kib if last else 0) / 1024:.0f} MiB",
                        flush=True,
                    )
                k += 1
            feed.stop.set()
            feed.join(10)
            producer.flush(30)
            stopped_ms = int(time.time() * 1000)
            drain_until = time.monotonic() + args.drain
            while time.monotonic() < drain_until and account(ledger, stopped_ms)[MISSING]:
                time.sleep(1)
            drained_s = args.drain - max(0.0, drain_until - time.monotonic())
        finally:
            for thread in (feed, database):
                if thread is not None:
                    thread.stop.set()
                    thread.join(30)
            if process is not None:
                process.terminate()
                process.wait(60)
            forget(bootstrap, app_id, {topic, sink})
    rows = minutes(samples)
    print(f"\nnproc {os.cpu_count()}, load average {os.getloadavg()[0]:.1f} at the end")
    print(
        f"{args.minutes} min at {args.rate:g} change records/s once steady (update share "
        f"{args.update_share:g}, early deletes {args.early_share:g}), rows due "
        f"{args.lifetime} s after their create, sampled every {args.sample_every:g} s\n"
    )
    print(table(rows))
    print()
    findings = verdict(rows, args.rate)
    for finding in findings:
        print(finding.line())
    if not findings:
        print("no verdict: it needs at least two whole minutes after the first (--minutes 3)")
    counts = account(ledger, stopped_ms)
    print(f"\ncommands, {drained_s:.0f} s after the load stopped:")
    for name, count in counts.items():
        print(f"{name}: {count:,}")
    if traced:
        print(f"\nfrom {log_path}:")
        lines = log_path.read_text(errors="replace").splitlines()
        indexes = [line for line in lines if "bench due index" in line]
        for line in indexes[:: max(1, round(60 / args.sample_every))]:
            print(line)
        for line in lines:
            if "bench tracemalloc" in line:
                print(line)
    if args.samples_out is not None:
        args.samples_out.write_text(json.dumps([asdict(s) for s in samples], indent=1))
    bad = counts[MISSING] or counts["early (sent before due)"]
    return 2 if bad or any(f.growing for f in findings) else 0


if __name__ == "__main__":
    raise SystemExit(main())
