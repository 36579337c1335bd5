"""Worker RSS and recovery with 10^6 tracked rows (issue 7, benches d and e), on the broker.

Run (needs the local stack; makes and drops its own table `bench_scale_<run>` in the demo
database, its change topic, app id `scale-<run>` and its topics and group):

    .venv/bin/python bench/scale_bench.py [--rows 1000000] [--customers 100000]
        [--scenarios fresh kept killed] [--validate]

Feeding 10^6 change events through a worker takes tens of minutes here, so the bench writes
the state straight into the worker's changelog topics, derived with lethe's own code: each
Debezium create of a `connection_logs` row is decoded with the policy (`decode_raw`), routed
(`lethe.agents.routing.route`: the assign agent's `locations` entry and the subject key, whose
partition of `<app id>-subject-events` is aiokafka's murmur2 partitioner's, as Faust's
producer picks it) and fed to a `Driver` over a `MemoryStore` (per chunk of customers: a
subject's rows are all in one chunk); the resulting row and subject states are encoded as
`lethe.faust_store.FaustStore` writes them (`row_key`, `where_key`, `to_bytes`) into
`<app id>-subject-rows-changelog`, `-subject-row-locations-changelog`,
`-subject-states-changelog` (LETHE_INTERNAL_PARTITIONS=8 each) and `<app id>-locations-
changelog` (the change topic's one partition). One record per key: what the topics hold after
compaction (a worker's own changelog may hold more records until the log cleaner runs).

Rows: `--rows` connection logs of `--customers` customers; in each scenario k (0, 1, ...) a
group of `--due` rows falls due at SWEEP_AT + k minutes, the others half a year later. Each
scenario starts `lethe worker` (LETHE_ENFORCE=on, the manual clock standing at scenario k's
instant, a clock topic that does not exist, so no advance moves it, tick 1 s) and measures,
from the process start: the first and the last of the group's commands on `lethe.commands`
(the record timestamps), Faust's recovery marks and the due-index rebuilds from its log, the
sweeps that issued the commands (the worker runs under `bench/timed_worker.py`, which times
each `Driver.advance` over its `FaustStore`, the rebuild left out), the worker's RSS (/proc:
current, and peak VmHWM) once the commands are in, and the commands issued and records
dead-lettered (its /metrics). From the process start means: the `prewarmed` scenario's
replay before the worker starts counts. Scenarios, run in order on one app id:
- `fresh` (or `lost`): a new data directory (a new machine), LETHE_PREWARM=off: Faust replays
  every changelog (every other scenario runs the worker as shipped, LETHE_PREWARM=on);
- `kept`: the data directory of the previous run, stopped with SIGTERM;
- `killed`: the data directory of the previous run, killed with SIGKILL (its group member
  then holds the partitions until its session times out: Faust's 60 s, or
  `--session-timeout`, given to every worker of the run as LETHE_SESSION_TIMEOUT);
- `prewarmed`: a new data directory, LETHE_PREWARM=on: the worker fills its RocksDB files from
  the changelogs with confluent-kafka (`lethe.prewarm`) before Faust starts; its time counts.
`--validate` (use a small --rows, e.g. 10000) also produces the same events to the change
topic and runs a worker over them first (own app id, clock before any due), then compares
its changelog topics with the bench's, key by key.

The changelog writer is in `bench/scale_changelogs.py`; this module holds the scenarios.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import fastavro
import orjson
import psycopg
import yaml
from confluent_kafka import Consumer, Producer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from enforce_bench import committed, forget, free_port  # noqa: E402
from scale_changelogs import (  # noqa: E402
    INGESTED_AT,
    PARTITIONS,
    STEP_US,
    SWEEP_AT,
    Layout,
    change_record,
    create_topics,
    read_changelogs,
    state_records,
    topic_ends,
    write_state,
)

from lethe.policy_file import load_policy  # noqa: E402
from lethe.settings import Settings  # noqa: E402
from policy.engine import Engine  # noqa: E402
from policy.instants import format_instant, parse_instant  # noqa: E402

COMMANDS = "lethe.commands"
TIMED_WORKER = Path(__file__).resolve().parent / "timed_worker.py"
SESSION_TIMEOUT = ""
"""LETHE_SESSION_TIMEOUT for the workers; empty: the setting's default."""
MARKS = {
    "restore": "Restoring state from changelog topics",
    "replayed": "Done reading from changelog topics",
    "recovered": "Recovery complete",
    "ready": "Worker ready",
}


def rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of the process, in KiB."""
    fields = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


def scrape(port: int) -> dict[str, float]:
    """Sums of the worker's counters of interest."""
    wanted = (
        "lethe_commands_issued_total",
        "lethe_commands_reissued_total",
        "lethe_commands_refused_total",
        "lethe_dead_letters_total",
    )
    sums = dict.fromkeys(wanted, 0.0)
    with contextlib.suppress(OSError):
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        for line in text.decode().splitlines():
            name = line.split("{")[0].split(" ")[0]
            if name in sums:
                sums[name] += float(line.rsplit(" ", 1)[1])
    return sums


@dataclass
class Outcome:
    scenario: str
    first_s: float | None
    last_s: float | None
    commands: int
    wrong_due: int
    rss_mib: float
    peak_mib: float
    marks: dict[str, float]
    rebuild_s: float
    sweep_s: float
    counters: dict[str, float]


def worker_env(
    bootstrap: str,
    layout: Layout,
    policy: Path,
    data_dir: Path,
    clock: int,
    port: int,
    prewarm: bool = False,
) -> dict[str, str]:
    env = {n: v for n, v in os.environ.items() if not n.startswith("LETHE_CLOCK")}
    env.update(
        {
            "LETHE_KAFKA_BOOTSTRAP": bootstrap,
            "LETHE_DATA_DIR": str(data_dir),
            "LETHE_WEB_PORT": str(port),
            "LETHE_POLICY": str(policy),
            "LETHE_INTERNAL_PARTITIONS": str(PARTITIONS),
            "LETHE_ENFORCE": "on",
            "LETHE_CLOCK": "manual",
            "LETHE_CLOCK_START": format_instant(clock),
            "LETHE_CLOCK_TOPIC": f"{layout.app_id}-no-clock",
            "LETHE_TICK_INTERVAL": "1",
            "LETHE_PREWARM": "on" if prewarm else "off",
        }
    )
    if SESSION_TIMEOUT:
        env["LETHE_SESSION_TIMEOUT"] = SESSION_TIMEOUT
    return env


def log_marks(log_path: Path, started: float) -> tuple[dict[str, float], float, float]:
    """Seconds from `started` to Faust's recovery marks (the last of each), the seconds the
    due-index rebuilds took in all, and the seconds of the sweeps that issued commands."""
    marks: dict[str, float] = {}
    rebuild = 0.0
    sweep = 0.0
    stamp = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")
    for line in log_path.read_text(errors="replace").splitlines():
        found = stamp.match(line)
        if found is None:
            continue
        at = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - started
        for mark, text in MARKS.items():
            if text in line:
                marks[mark] = at
        if "Rebuilt the due index" in line:
            rebuild += float(line.rsplit(" in ", 1)[1].strip().rstrip("s"))
            marks["indexed"] = at
        if "bench sweep:" in line:
            sweep += float(line.rsplit(" in ", 1)[1].strip().rstrip("s"))
    return marks, rebuild, sweep


def run_scenario(
    scenario: str,
    k: int,
    bootstrap: str,
    layout: Layout,
    policy: Path,
    data_dir: Path,
    due: int,
    logs: Path,
) -> tuple[Outcome, subprocess.Popen[bytes]]:
    """Start the worker with the clock at group k's instant; return once its `due` commands
    are in (or 15 minutes passed), the worker still running."""
    clock = SWEEP_AT + k * STEP_US
    start = topic_ends(bootstrap, COMMANDS)
    port = free_port()
    env = worker_env(
        bootstrap, layout, policy, data_dir, clock, port, prewarm=scenario not in ("fresh", "lost")
    )
    log_path = logs / f"{scenario}-{k}.log"
    schema = fastavro.parse_schema(
        orjson.loads((ROOT / "schemas" / "retention_command.avsc").read_bytes())
    )
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"scale-cmd-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    consumer.assign(start)
    started = time.time()
    process = subprocess.Popen(
        [sys.executable, str(TIMED_WORKER), "worker", "--app-id", layout.app_id, "-l", "info"],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    seen: dict[str, float] = {}
    wrong = 0
    deadline = time.monotonic() + 900
    try:
        while len(seen) < due and time.monotonic() < deadline and process.poll() is None:
            for message in consumer.consume(1000, timeout=0.5):
                if message.error() is not None:
                    continue
                command = fastavro.schemaless_reader(io.BytesIO(message.value()), schema)
                if command["table"] != f"public.{layout.table}":
                    continue
                if parse_instant(command["due_at"]) != clock:
                    wrong += 1
                seen.setdefault(command["command_id"], message.timestamp()[1] / 1000 - started)
            rss(process.pid)
        time.sleep(3)  # anything more than the group
        for message in consumer.consume(10_000, timeout=1.0):
            if message.error() is None:
                command = fastavro.schemaless_reader(io.BytesIO(message.value()), schema)
                if command["table"] == f"public.{layout.table}":
                    if parse_instant(command["due_at"]) != clock:
                        wrong += 1
                    seen.setdefault(command["command_id"], message.timestamp()[1] / 1000 - started)
        now_kib, peak_kib = rss(process.pid)
        counters = scrape(port)
        marks, rebuild, sweep = log_marks(log_path, started)
    except BaseException:
        stop(process, "kill")
        raise
    finally:
        consumer.close()
    times = sorted(seen.values())
    return (
        Outcome(
            scenario,
            times[0] if times else None,
            times[-1] if times else None,
            len(seen),
            wrong,
            now_kib / 1024,
            peak_kib / 1024,
            marks,
            rebuild,
            sweep,
            counters,
        ),
        process,
    )


def stop(process: subprocess.Popen[bytes], how: str) -> float:
    """Stop the worker (SIGTERM or SIGKILL); return the seconds it took to exit."""
    started = time.monotonic()
    if process.poll() is None:
        process.send_signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
        try:
            process.wait(120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
    return time.monotonic() - started


def validate(
    bootstrap: str,
    layout: Layout,
    policy: Path,
    scratch: Path,
    expected: dict[tuple[str, int, bytes], bytes],
    rows: int,
    customers: int,
    due: int,
    groups: int,
) -> None:
    """Feed the same creates through a worker and compare its changelogs with `expected`.

    The fed worker reads them from a topic of another prefix (`scalefed.`, its policy says so
    too), so that the bench's workers, which read `layout.topic`, never see them."""
    topic = f"scalefed.public.{layout.table}"
    create_topics(bootstrap, {topic: (1, {})})
    document = yaml.safe_load(policy.read_text())
    document["topic_prefix"] = "scalefed"
    fed_policy = scratch / "policy-fed.yaml"
    fed_policy.write_text(yaml.safe_dump(document, sort_keys=False))
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "log_level": 0})
    for row in range(rows):
        key, value = change_record(row, customers, due, groups)
        producer.produce(topic, key=key, value=value)
        if row % 10_000 == 0:
            producer.flush(60)
    producer.flush(60)
    app_id = f"{layout.app_id}-fed"
    env = worker_env(bootstrap, layout, fed_policy, scratch / "fed", INGESTED_AT, free_port())
    env["LETHE_CDC_TOPIC_PREFIX"] = "scalefed"
    env["LETHE_SOURCE_HEARTBEAT_TOPIC"] = Settings.from_env().heartbeat_topic or "off"
    log_path = scratch / "fed.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "lethe", "worker", "--app-id", app_id, "-l", "warning"],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 600
        subject_events = f"{app_id}-subject-events"
        ends: int | None = None
        while time.monotonic() < deadline and process.poll() is None:
            if ends is None and committed(bootstrap, app_id, topic, 1) >= rows:
                ends = sum(end.offset for end in topic_ends(bootstrap, subject_events))
            if (
                ends is not None
                and committed(bootstrap, app_id, subject_events, PARTITIONS) >= ends
            ):
                break
            time.sleep(1)
        time.sleep(5)  # the changelog sends of the last records
    finally:
        stop(process, "term")
    fed = read_changelogs(bootstrap, layout.changelogs(app_id))
    forget(bootstrap, app_id, {topic})
    fed = {key: value for key, value in fed.items() if not key[2].startswith(b"__faust")}
    missing = expected.keys() - fed.keys()
    extra = fed.keys() - expected.keys()
    differ = [key for key in expected.keys() & fed.keys() if expected[key] != fed[key]]
    print(
        f"validation: fed worker {len(fed):,} changelog keys, bench {len(expected):,}; "
        f"missing {len(missing)}, extra {len(extra)}, different values {len(differ)}"
    )
    for key in list(missing)[:3] + list(extra)[:3] + differ[:3]:
        print(f"  {key}: bench {expected.get(key)!r} fed {fed.get(key)!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--due", type=int, default=1_000)
    parser.add_argument("--scenarios", nargs="+", default=["fresh", "kept", "killed"])
    parser.add_argument("--chunk", type=int, default=10_000, help="customers per driver")
    parser.add_argument("--validate", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep topics, table and data")
    parser.add_argument(
        "--session-timeout", default="", help="seconds (default: LETHE_SESSION_TIMEOUT's)"
    )
    args = parser.parse_args()
    global SESSION_TIMEOUT
    SESSION_TIMEOUT = args.session_timeout
    settings = Settings.from_env()
    bootstrap = settings.kafka_bootstrap
    layout = Layout(uuid.uuid4().hex[:8], settings.cdc_topic_prefix)
    groups = len(args.scenarios)
    print(
        f"nproc {os.cpu_count()}, {args.rows:,} rows of {args.customers:,} customers, "
        f"{args.due} due per scenario, app id {layout.app_id}",
        flush=True,
    )
    scratch = Path(tempfile.mkdtemp(prefix=f"scale-{layout.run}-"))
    logs = Path(tempfile.gettempdir()) / f"scale-{layout.run}-logs"
    logs.mkdir()
    print(f"worker logs: {logs}", flush=True)
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE public.{layout.table} (LIKE public.connection_logs INCLUDING ALL)"
        )
    process: subprocess.Popen[bytes] | None = None
    outcomes: list[tuple[Outcome, float]] = []
    try:
        document = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text())
        source = document["sources"]["public.connection_logs"]
        document["sources"] = {f"public.{layout.table}": source}
        policy = scratch / "policy.yaml"
        policy.write_text(yaml.safe_dump(document, sort_keys=False))
        engine = Engine.compile(load_policy(policy))
        compact = {"cleanup.policy": "compact"}
        specs = {
            topic: (count, compact) for topic, count in layout.changelogs(layout.app_id).values()
        }
        specs[layout.topic] = (1, {})
        create_topics(bootstrap, specs)
        started = time.monotonic()
        records = state_records(
            engine, layout, args.rows, args.customers, args.due, groups, args.chunk
        )
        expected = write_state(bootstrap, layout, records, args.validate)
        print(f"state derived and written in {time.monotonic() - started:.0f} s", flush=True)
        if args.validate:
            validate(
                bootstrap, layout, policy, scratch, expected, args.rows, args.customers,
                args.due, groups,
            )  # fmt: skip
        del expected
        data_dir = scratch / "data"
        for k, scenario in enumerate(args.scenarios):
            if scenario in ("fresh", "lost", "prewarmed"):
                shutil.rmtree(data_dir, ignore_errors=True)
            outcome, process = run_scenario(
                scenario, k, bootstrap, layout, policy, data_dir, args.due, logs
            )
            how = (
                "kill"
                if k + 1 < len(args.scenarios) and args.scenarios[k + 1] == "killed"
                else "term"
            )
            stopped = stop(process, how)
            process = None
            outcomes.append((outcome, stopped))
            print_outcome(outcome, stopped, how, args.due)
    finally:
        if process is not None:
            stop(process, "term")
        if not args.keep:
            forget(bootstrap, layout.app_id, {layout.topic, f"lethe.sink.public.{layout.table}"})
            with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
                conn.execute(f"DROP TABLE IF EXISTS public.{layout.table}")
            shutil.rmtree(scratch, ignore_errors=True)
    print_table(outcomes, args)
    return 0


def print_outcome(outcome: Outcome, stopped: float, how: str, due: int) -> None:
    print(
        f"{outcome.scenario}: {outcome.commands}/{due} commands (wrong due {outcome.wrong_due}), "
        f"first {outcome.first_s}, last {outcome.last_s}, rss {outcome.rss_mib:.0f} MiB "
        f"(peak {outcome.peak_mib:.0f}), marks {outcome.marks}, rebuild {outcome.rebuild_s:.1f} s, "
        f"sweeps {outcome.sweep_s * 1000:.1f} ms, "
        f"{outcome.counters}; stopped ({how}) in {stopped:.1f} s",
        flush=True,
    )


def print_table(outcomes: list[tuple[Outcome, float]], args: argparse.Namespace) -> None:
    def s(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    print(f"\nnproc {os.cpu_count()}, {args.rows:,} tracked rows, {args.customers:,} customers")
    print(
        "| start | replayed s | recovered s | due index s | first command s | last command s "
        "| commands | dead letters | sweeps ms | RSS MiB | peak RSS MiB |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for outcome, _ in outcomes:
        print(
            f"| {outcome.scenario} | {s(outcome.marks.get('replayed'))} | "
            f"{s(outcome.marks.get('recovered'))} | {outcome.rebuild_s:.1f} | "
            f"{s(outcome.first_s)} | {s(outcome.last_s)} | {outcome.commands} | "
            f"{outcome.counters['lethe_dead_letters_total']:.0f} | {outcome.sweep_s * 1000:.1f} | "
            f"{outcome.rss_mib:.0f} | "
            f"{outcome.peak_mib:.0f} |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
