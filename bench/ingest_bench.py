"""CDC ingest on the real broker: events/s of one Lethe worker against a bare Faust agent.

Run (needs the local stack's Kafka; creates and deletes its own `hosting.public.bench_*`
topic, `lethe-bench-*` apps and groups and their topics):
`.venv/bin/python bench/ingest_bench.py [--events 200000] [--runs 2] [--profile DIR]
[--contenders ck,bare,...]`

It writes N Debezium JSON change records (schemaless, about 431 bytes each: creates and
updates of a table with the connection-log columns and rule, a few seconds apart) to a new
topic with one partition, then reads them, one contender after another, each `--runs` times
in turn, each with its own consumer group:
1. a confluent-kafka consumer loop that orjson-parses each value (the Python client's ceiling);
2. a bare Faust agent (`bench/bare_agent.py`, a subprocess) that iterates `stream.events()`
   and orjson-parses each value, tuned: 8 MiB fetches, 5000 records per poll, a stream
   buffer of 32768;
3. the same bare agent with Faust's default fetch settings;
3b. the tuned bare agent that also forwards each record with one Faust send (what the
   worker's first stage does at the least, to `<app id>-subject-events`), and 3c. with one
   confluent-kafka produce instead (flushed before the last event is timed);
4. `lethe worker` (a subprocess; LETHE_POLICY is config/policy.yaml with its sources cut to
   the bench table's), with the same tuning (LETHE_CONSUMER_MAX_FETCH_BYTES,
   LETHE_MAX_POLL_RECORDS, LETHE_STREAM_BUFFER_MAXSIZE);
5. `lethe worker` with its default settings.
Events/s run from the first record handled to the N-th: the bare agent times itself; the
worker is sampled every 0.2 s on /metrics (`lethe_change_events_total`, the change records
its first stage handled). "all agents" waits further, until every topic the worker reads
(Faust's `messages_received_per_topic`: its own `<app id>-subject-events` once a later
stage reads it) is read to its end and nothing read is left unacknowledged
(`active_messages` 0), so the bench measures whatever agents the worker runs. After the
worker stops, the end offsets of its changelog topics and of `<app id>-subject-events` give
the records it wrote per event.

It prints a table: events/s best and median of the runs, the ratio to the tuned bare agent,
and `nproc`. The machine is shared and noisy: compare within one run, not across runs.
`--profile DIR` adds one run of the tuned bare agent and of the tuned worker under cProfile
(not in the table; it slows them) and prints where each spends its time.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import pstats
import queue
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]
SOURCE_TABLE = "public.connection_logs"
TUNED = {"fetch_bytes": 8 * 1024 * 1024, "poll_records": 5000, "buffer": 32768}
CONTENDERS = ("ck", "bare", "bare-default", "bare-send", "bare-produce", "worker", "worker-default")
SAMPLE_S = 0.2
START_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 45.0


@dataclass
class Result:
    contender: str
    rate: float | None
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Bench:
    bootstrap: str
    events: int
    topic: str
    policy: Path
    workdir: Path
    run_id: str
    timeout_s: float
    app_ids: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def app_id(self, name: str) -> str:
        app_id = f"lethe-bench-{self.run_id}-{name}"
        self.app_ids.append(app_id)
        self.groups.append(app_id)
        return app_id


# --- the records ------------------------------------------------------------------------


def zoned(ms: int) -> str:
    """Debezium's io.debezium.time.ZonedTimestamp text of a timestamptz (microseconds)."""
    instant = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return instant.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def ip_address(rng: random.Random) -> str:
    if rng.random() < 0.2:
        return f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(65536):x}"
    return f"{rng.choice(('192.0.2', '198.51.100', '203.0.113'))}.{rng.randrange(1, 255)}"


def change_records(
    n: int, table: str, create_share: float, seed: int = 7
) -> Iterator[tuple[bytes, bytes]]:
    """N change records of `public.<table>` (connection-log columns) as Debezium's JSON
    converter writes them without schemas, a few seconds apart: a create logs a connection,
    an update rewrites an earlier one (REPLICA IDENTITY DEFAULT: no before image)."""
    rng = random.Random(seed)
    start_ms = int(dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.UTC).timestamp() * 1000)
    lsn = 24_023_928
    rows: list[tuple[int, int, str, int]] = []
    for index in range(n):
        now_ms = start_ms + index * 3_000 + rng.randrange(3_000)
        lsn += rng.randrange(200, 600)
        if not rows or rng.random() < create_share:
            row = (len(rows) + 1, rng.randrange(1, 20_000), ip_address(rng), now_ms)
            rows.append(row)
            op = "c"
        else:
            row_id, customer_id, _, logged_ms = rows[rng.randrange(len(rows))]
            row = (row_id, customer_id, ip_address(rng), logged_ms)
            op = "u"
        row_id, customer_id, address, logged_ms = row
        envelope = {
            "before": None,
            "after": {
                "id": row_id,
                "customer_id": customer_id,
                "ip_address": address,
                "logged_at": zoned(logged_ms),
            },
            "source": {
                "version": "2.7.3.Final",
                "connector": "postgresql",
                "name": "hosting",
                "ts_ms": now_ms,
                "snapshot": "false",
                "db": "hosting",
                "sequence": f'["{lsn - 312}","{lsn}"]',
                "schema": "public",
                "table": table,
                "txId": 800 + index,
                "lsn": lsn,
                "xmin": None,
            },
            "transaction": None,
            "op": op,
            "ts_ms": now_ms + 41,
        }
        yield orjson.dumps({"id": row_id}), orjson.dumps(envelope)


def bench_policy(path: Path, table: str) -> Path:
    """config/policy.yaml with its sources cut to the connection-log source, renamed `table`."""
    document = yaml.safe_load((ROOT / "config" / "policy.yaml").read_text(encoding="utf-8"))
    document["sources"] = {f"public.{table}": document["sources"][SOURCE_TABLE]}
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


# --- Kafka ------------------------------------------------------------------------------


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})


def create_topic(bootstrap: str, topic: str) -> None:
    client = admin(bootstrap)  # alive until the future is done
    future = client.create_topics([NewTopic(topic, num_partitions=1)])[topic]
    future.result(timeout=30)


def produce(bootstrap: str, topic: str, records: Iterator[tuple[bytes, bytes]]) -> tuple[int, int]:
    """Write the records; return their count and total value bytes."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1_000_000, "acks": "all"}
    )
    count = size = 0
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.1)
        count += 1
        size += len(value)
        if count % 10_000 == 0:
            producer.poll(0)
    if producer.flush(120):
        raise SystemExit(f"could not write all {count} records to {topic} within 120 s")
    return count, size


def end_offsets(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Sum of the end offsets of each topic's partitions (0 for a topic that is not there)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "log_level": 0})
    try:
        metadata = consumer.list_topics(timeout=10)
        totals: dict[str, int] = {}
        for topic in topics:
            found = metadata.topics.get(topic)
            totals[topic] = 0
            if found is None or found.error is not None:
                continue
            for partition in found.partitions:
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10
                )
                totals[topic] += max(high, 0)
        return totals
    finally:
        consumer.close()


def topics_of(bootstrap: str, prefix: str) -> list[str]:
    names = admin(bootstrap).list_topics(timeout=10).topics
    return sorted(name for name in names if name.startswith(prefix))


def clean_up(bench: Bench) -> None:
    """Delete the bench topic, every topic of the bench's apps and every group it made."""
    client = admin(bench.bootstrap)
    doomed = [bench.topic]
    for app_id in bench.app_ids:
        doomed += topics_of(bench.bootstrap, f"{app_id}-")
    for name, future in client.delete_topics(doomed, operation_timeout=30).items():
        try:
            future.result(timeout=60)
        except KafkaException as exc:
            if "UNKNOWN_TOPIC" not in str(exc):
                print(f"could not delete topic {name}: {exc}", file=sys.stderr)
    if not bench.groups:
        return
    deadline = time.monotonic() + 60
    pending = list(bench.groups)
    while pending and time.monotonic() < deadline:
        futures = client.delete_consumer_groups(pending, request_timeout=15)
        still: list[str] = []
        for group, future in futures.items():
            try:
                future.result(timeout=30)
            except KafkaException as exc:
                if "GROUP_ID_NOT_FOUND" in str(exc):
                    continue
                still.append(group)
        pending = still
        if pending:
            time.sleep(2)
    if pending:
        print(f"could not delete consumer groups {pending}", file=sys.stderr)


# --- contenders -------------------------------------------------------------------------


def run_confluent(bench: Bench) -> Result:
    group = f"lethe-bench-{bench.run_id}-ck-{uuid.uuid4().hex[:6]}"
    bench.groups.append(group)
    consumer = Consumer(
        {
            "bootstrap.servers": bench.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([bench.topic])
    count = 0
    first = 0.0
    deadline = time.monotonic() + bench.timeout_s
    try:
        while count < bench.events:
            if time.monotonic() > deadline:
                return Result("confluent-kafka + orjson", None, extra={"timeout": count})
            for message in consumer.consume(num_messages=10_000, timeout=1.0):
                if message.error() is not None:
                    continue
                orjson.loads(message.value())  # type: ignore[arg-type]
                count += 1
                if count == 1:
                    first = time.perf_counter()
        seconds = time.perf_counter() - first
    finally:
        consumer.close()
    return Result("confluent-kafka + orjson", (count - 1) / seconds, seconds)


class Child:
    """A subprocess in its own session, its stdout lines in a queue, its stderr in a file."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self.stderr = log.open("wb")
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
            cwd=ROOT,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.decode(errors="replace"))

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM (Faust stops cleanly: commits, flushes, leaves the group); SIGKILL after
        STOP_TIMEOUT_S."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                print(f"{self.log.name}: no exit {STOP_TIMEOUT_S:.0f} s after SIGTERM; killed")
                self.process.kill()
                self.process.wait(timeout=10)
        self.stderr.close()

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])


def python_argv(script: list[str], profile: Path | None) -> list[str]:
    if profile is None:
        return [sys.executable, *script]
    return [sys.executable, "-m", "cProfile", "-o", str(profile), *script]


def tuning_flags(tuned: bool) -> list[str]:
    if not tuned:
        return []
    return [
        f"--fetch-bytes={TUNED['fetch_bytes']}",
        f"--poll-records={TUNED['poll_records']}",
        f"--buffer={TUNED['buffer']}",
    ]


def run_bare(
    bench: Bench, tuned: bool, profile: Path | None = None, *, send: str | None = None
) -> Result:
    name = "bare Faust agent, " + ("tuned" if tuned else "Faust defaults")
    app_id = bench.app_id(f"bare-{'tuned' if tuned else 'default'}-{uuid.uuid4().hex[:6]}")
    script = [str(ROOT / "bench" / "bare_agent.py"), bench.topic, "--app-id", app_id]
    script += ["--events", str(bench.events), "--bootstrap", bench.bootstrap]
    if send is not None:
        name += ", 1 send per event" if send == "faust" else ", 1 confluent-kafka produce per event"
        create_topic(bench.bootstrap, f"{app_id}-forward")
        script += ["--send-to", f"{app_id}-forward", "--produce-with", send]
    child = Child(
        python_argv(script + tuning_flags(tuned), profile), bench.workdir / f"{app_id}.log"
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S + bench.timeout_s
        while time.monotonic() < deadline:
            try:
                line = child.lines.get(timeout=1.0)
            except queue.Empty:
                if not child.alive():
                    break
                continue
            with contextlib.suppress(orjson.JSONDecodeError):
                report = orjson.loads(line)
                if isinstance(report, dict) and "seconds" in report:
                    seconds = float(report["seconds"])
                    return Result(name, (bench.events - 1) / seconds, seconds)
        print(f"{name}: no result; its log ends:\n{child.tail()}", file=sys.stderr)
        return Result(name, None)
    finally:
        child.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> dict[str, float] | None:
    """The worker's /metrics: the sums the bench watches, keyed by name (and topic)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    sums: dict[str, float] = {"changes": 0.0, "active": 0.0}
    for line in text.splitlines():
        if line.startswith("lethe_change_events_total{"):
            sums["changes"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("lethe_faust_active_messages "):
            sums["active"] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("lethe_faust_messages_received_per_topic_total{"):
            topic = line.split('topic="', 1)[1].split('"', 1)[0]
            sums[f"topic:{topic}"] = float(line.rsplit(" ", 1)[1])
    return sums


def run_worker(bench: Bench, tuned: bool, profile: Path | None = None) -> Result:
    name = "lethe worker, " + ("tuned" if tuned else "its defaults")
    app_id = bench.app_id(f"worker-{'tuned' if tuned else 'default'}-{uuid.uuid4().hex[:6]}")
    port = free_port()
    env = {
        **os.environ,
        "LETHE_KAFKA_BOOTSTRAP": bench.bootstrap,
        "LETHE_POLICY": str(bench.policy),
        "LETHE_CDC_TOPIC_PREFIX": "hosting",
        "LETHE_DATA_DIR": str(bench.workdir / app_id),
        "LETHE_WEB_HOST": "127.0.0.1",
        "LETHE_WEB_PORT": str(port),
        "LETHE_INTERNAL_PARTITIONS": "1",
    }
    if tuned:
        env["LETHE_CONSUMER_MAX_FETCH_BYTES"] = str(TUNED["fetch_bytes"])
        env["LETHE_MAX_POLL_RECORDS"] = str(TUNED["poll_records"])
        env["LETHE_STREAM_BUFFER_MAXSIZE"] = str(TUNED["buffer"])
    else:
        for variable in (
            "LETHE_CONSUMER_MAX_FETCH_BYTES",
            "LETHE_MAX_POLL_RECORDS",
            "LETHE_STREAM_BUFFER_MAXSIZE",
        ):
            env.pop(variable, None)
    script = ["-m", "lethe", "worker", "--app-id", app_id, "-l", "warning"]
    if profile is None:
        argv = [sys.executable, *script]
    else:
        argv = [sys.executable, "-m", "cProfile", "-o", str(profile), *script]
    child = Child(argv, bench.workdir / f"{app_id}.log", env)
    result = Result(name, None)
    try:
        result = _watch_worker(bench, name, port, app_id, child)
    finally:
        child.stop()
    if result.rate is not None:
        result.extra.update(_written_per_event(bench, app_id))
    return result


def _watch_worker(bench: Bench, name: str, port: int, app_id: str, child: Child) -> Result:
    start_deadline = time.monotonic() + START_TIMEOUT_S
    first: tuple[float, float] | None = None
    deadline = None
    done_at = None
    while True:
        now = time.monotonic()
        if not child.alive():
            print(f"{name}: exited; its log ends:\n{child.tail()}", file=sys.stderr)
            return Result(name, None)
        if first is None and now > start_deadline:
            print(f"{name}: nothing handled in {START_TIMEOUT_S:.0f} s:\n{child.tail()}")
            return Result(name, None)
        if deadline is not None and now > deadline:
            print(f"{name}: not all {bench.events} handled in {bench.timeout_s:.0f} s")
            return Result(name, None)
        sums = scrape(port)
        sampled = time.perf_counter()
        if sums is not None and sums["changes"] > 0:
            if first is None:
                first = (sampled, sums["changes"])
                deadline = now + bench.timeout_s
            if sums["changes"] >= bench.events:
                done_at = sampled
                break
        time.sleep(SAMPLE_S)
    assert first is not None
    seconds = done_at - first[0]
    result = Result(name, (bench.events - first[1]) / seconds, seconds)
    drained = _wait_drained(bench, port, app_id)
    if drained is not None:
        result.extra["all_agents_rate"] = (bench.events - first[1]) / (drained - first[0])
    return result


def _wait_drained(bench: Bench, port: int, app_id: str) -> float | None:
    """When every topic the worker reads is read to its end and acknowledged (a later stage
    reading `<app id>-subject-events` included); None if not within DRAIN_TIMEOUT_S."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        sums = scrape(port)
        sampled = time.perf_counter()
        if sums is not None and sums["active"] == 0:
            read = {key[6:]: value for key, value in sums.items() if key.startswith("topic:")}
            read.pop(bench.topic, None)
            ends = end_offsets(bench.bootstrap, sorted(read)) if read else {}
            if all(read[topic] >= ends[topic] for topic in read):
                return sampled
        time.sleep(SAMPLE_S)
    print(f"{app_id}: its topics were not read to their end within {DRAIN_TIMEOUT_S:.0f} s")
    return None


def _written_per_event(bench: Bench, app_id: str) -> dict[str, float]:
    changelogs = [t for t in topics_of(bench.bootstrap, f"{app_id}-") if t.endswith("-changelog")]
    subject_events = f"{app_id}-subject-events"
    ends = end_offsets(bench.bootstrap, [*changelogs, subject_events])
    return {
        "changelog_per_event": sum(ends[t] for t in changelogs) / bench.events,
        "sent_per_event": ends[subject_events] / bench.events,
        "changelogs": {t.removeprefix(f"{app_id}-"): ends[t] for t in changelogs},
    }


# --- report -----------------------------------------------------------------------------

AREAS = (
    ("lethe agents (stage A)", ("/lethe/agents/",)),
    ("policy core (decode, route)", ("/policy/",)),
    ("lethe other", ("/lethe/",)),
    ("faust", ("/faust/",)),
    ("aiokafka", ("/aiokafka/",)),
    ("mode", ("/mode/",)),
    ("asyncio, selectors", ("/asyncio/", "selectors.py")),
    ("logging", ("/logging/",)),
    ("prometheus_client", ("/prometheus_client/",)),
    ("rocksdict", ("rocksdict",)),
)


def profile_summary(path: Path, top: int = 12) -> str:
    """Own time by area, and the functions with the most own time."""
    stats = pstats.Stats(str(path))
    table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    by_area: dict[str, float] = {}
    total = 0.0
    for (filename, _, function), (_, _, own, _, _) in table.items():
        total += own
        area = next(
            (name for name, marks in AREAS if any(mark in filename for mark in marks)), None
        )
        if area is None:
            area = f"builtins ({function})" if filename == "~" else "other"
            if filename == "~" and own < 0.02 * max(total, 1e-9):
                area = "builtins (rest)"
        by_area[area] = by_area.get(area, 0.0) + own
    lines = [f"  own time {total:.1f} s by area:"]
    for area, own in sorted(by_area.items(), key=lambda item: -item[1])[:top]:
        lines.append(f"    {own / total:6.1%}  {area}")
    ranked = sorted(table.items(), key=lambda item: -item[1][2])[:top]
    lines.append("  functions with the most own time:")
    for (filename, line, function), (_, calls, own, _, _) in ranked:
        short = "/".join(Path(filename).parts[-2:]) if filename != "~" else "~"
        lines.append(f"    {own / total:6.1%}  {calls:>9}  {short}:{line} {function}")
    return "\n".join(lines)


def rate_text(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.0f}"


def ratio_text(rate: float | None, base: float | None) -> str:
    return "-" if rate is None or not base else f"{rate / base:.0%}"


def table(results: dict[str, list[Result]], bench: Bench, mean_bytes: float) -> str:
    def best(rates: list[float | None]) -> float | None:
        known = [rate for rate in rates if rate is not None]
        return max(known) if known else None

    def median(rates: list[float | None]) -> float | None:
        known = [rate for rate in rates if rate is not None]
        return statistics.median(known) if known else None

    rows: list[tuple[str, list[float | None]]] = []
    for contender, runs in results.items():
        rows.append((contender, [run.rate for run in runs]))
        if contender.startswith("lethe worker"):
            rows.append(
                (
                    f"{contender}, all agents",
                    [run.extra.get("all_agents_rate") for run in runs],
                )
            )
    bare = results.get("bare Faust agent, tuned", [])
    base_best = best([run.rate for run in bare])
    base_median = median([run.rate for run in bare])
    runs = max((len(r) for r in results.values()), default=0)
    out = [
        f"{bench.events:,} records, mean {mean_bytes:.0f} B, 1 partition; nproc {nproc()}; "
        f"{runs} run(s) of each, in turn",
        "",
        "| contender | best ev/s | median ev/s | best / tuned bare | median / tuned bare |",
        "|---|---:|---:|---:|---:|",
    ]
    for contender, rates in rows:
        b, m = best(rates), median(rates)
        out.append(
            f"| {contender} | {rate_text(b)} | {rate_text(m)} | {ratio_text(b, base_best)} | "
            f"{ratio_text(m, base_median)} |"
        )
    out.append("")
    for contender, runs_of in results.items():
        for run in runs_of:
            if "changelog_per_event" in run.extra:
                out.append(
                    f"{contender}: {run.extra['changelog_per_event']:.3f} changelog records "
                    f"per event {run.extra['changelogs']}, {run.extra['sent_per_event']:.3f} "
                    "records sent to <app id>-subject-events per event"
                )
                break
    return "\n".join(out)


def nproc() -> str:
    try:
        return subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=2, help="runs of each contender (default 2)")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument(
        "--create-share", type=float, default=0.3, help="share of creates (default 0.3)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="per run, seconds")
    parser.add_argument("--profile", type=Path, help="also profile one run of each Faust app")
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help=f"comma-separated, in run order (default: all: {','.join(CONTENDERS)})",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on the way out
    run_id = uuid.uuid4().hex[:8]
    table_name = f"bench_{run_id}"
    with tempfile.TemporaryDirectory(prefix="lethe-ingest-bench-") as tmp:
        workdir = Path(tmp)
        bench = Bench(
            bootstrap=args.bootstrap,
            events=args.events,
            topic=f"hosting.public.{table_name}",
            policy=bench_policy(workdir / "policy.yaml", table_name),
            workdir=workdir,
            run_id=run_id,
            timeout_s=args.timeout,
        )
        try:
            create_topic(bench.bootstrap, bench.topic)
            started = time.perf_counter()
            count, size = produce(
                bench.bootstrap,
                bench.topic,
                change_records(args.events, table_name, args.create_share),
            )
            print(
                f"wrote {count:,} records ({size / count:.0f} B mean) to {bench.topic} in "
                f"{time.perf_counter() - started:.1f} s",
                flush=True,
            )
            everyone: dict[str, tuple[str, Callable[[], Result]]] = {
                "ck": ("confluent-kafka + orjson", lambda: run_confluent(bench)),
                "bare": ("bare Faust agent, tuned", lambda: run_bare(bench, True)),
                "bare-default": (
                    "bare Faust agent, Faust defaults",
                    lambda: run_bare(bench, False),
                ),
                "bare-send": (
                    "bare Faust agent, tuned, 1 send per event",
                    lambda: run_bare(bench, True, send="faust"),
                ),
                "bare-produce": (
                    "bare Faust agent, tuned, 1 confluent-kafka produce per event",
                    lambda: run_bare(bench, True, send="confluent"),
                ),
                "worker": ("lethe worker, tuned", lambda: run_worker(bench, True)),
                "worker-default": ("lethe worker, its defaults", lambda: run_worker(bench, False)),
            }
            contenders = [everyone[key] for key in args.contenders.split(",")]
            results: dict[str, list[Result]] = {name: [] for name, _ in contenders}
            for round_no in range(1, args.runs + 1):
                for name, run in contenders:
                    result = run()
                    results[name].append(result)
                    extra = ""
                    if "all_agents_rate" in result.extra:
                        extra = f", all agents {result.extra['all_agents_rate']:,.0f} ev/s"
                    print(
                        f"run {round_no}: {name}: {rate_text(result.rate)} ev/s{extra}",
                        flush=True,
                    )
            print()
            print(table(results, bench, size / count))
            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
                for name, runner in (
                    ("bare-tuned", run_bare),
                    ("worker-tuned", run_worker),
                ):
                    path = args.profile / f"{name}.prof"
                    result = runner(bench, True, path)
                    print(f"\nprofiled {name}: {rate_text(result.rate)} ev/s under cProfile")
                    if path.exists():
                        print(profile_summary(path))
        finally:
            clean_up(bench)


if __name__ == "__main__":
    main()
