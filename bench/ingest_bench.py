"""CDC ingest on the real broker: events/s of one Lethe worker against a bare Faust agent.

Run (needs the local stack's Kafka; creates and deletes its own `hosting.public.bench_*`
topic, `lethe-bench-*` apps and groups and their topics):
`.venv/bin/python bench/ingest_bench.py [--events 200000] [--runs 2] [--profile DIR]
[--contenders ck,bare,...] [--replica-identity full] [--baseline DIR]`

It writes N Debezium JSON change records (schemaless, about 431 bytes each: creates and
updates of a table with the connection-log columns and rule, a few seconds apart; updates
without before image, or with it under `--replica-identity full`) to a new
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
   LETHE_MAX_POLL_RECORDS, LETHE_STREAM_BUFFER_MAXSIZE), stage A only (LETHE_ENFORCE=off);
4b. the same with stage E in the same worker (LETHE_ENFORCE=on, `worker-e`);
5. `lethe worker` with its default settings, stage A only;
6. `worker-wb<bytes>` and `worker-e-wb<bytes>` (any number of bytes, e.g. `worker-e-wb8388608`):
   4 and 4b with LETHE_ROCKSDB_WRITE_BUFFER_BYTES set to that, to weigh the memtable size
   (run two or three with `--side-by-side`).
Events/s run from the first record handled to the N-th: the bare agent times itself; the
worker is sampled every 0.2 s on /metrics (`lethe_change_events_total` alone, the change
records its first stage handled; the whole page is read every 15 s, as by Prometheus).
"all agents" waits further, until the worker's consumer group has committed every record
of the bench topic and, with stage E, of `<app id>-subject-events` (Faust commits every
2.8 s: up to that late, the worker idle meanwhile), so the bench measures whatever agents
the worker runs, with or without metrics; the worker's CPU is then read for 8 s more, idle:
"busy" CPU per event leaves out that idle rate over the run (timers, polling loops), which
otherwise grows CPU per event with the run's length on a loaded machine. After the worker
stops, the end offsets of its changelog topics and of `<app id>-subject-events` give the
records it wrote per event.

It prints a table: events/s best and median of the runs, the ratio to the tuned bare agent,
and `nproc`; and the CPU time each contender's process (all its threads: librdkafka's too)
spent per event over the same span, median of the runs, with the tuned bare agent's CPU time
divided by it: the events/s ratio on a machine with a core free for each, which the noise of
other processes sharing the cores barely touches (the worker's is read from /proc every
0.2 s). The machine is shared and noisy: compare within one run, not across runs.
`--profile DIR` adds one run of the tuned bare agent and of the tuned worker (stage A, then
stages A and E) under cProfile (not in the table; it slows them) and prints where each spends
its time. `--py-spy DIR` samples every worker run with py-spy (`<app id>.txt`, raw stacks;
`bench/stacks.py` compares two of them).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from confluent_kafka import Consumer, KafkaException, TopicPartition

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest_report import Result, profile_summary, rate_text, table  # noqa: E402
from bench.ingest_stream import (  # noqa: E402
    admin,
    bench_policy,
    change_records,
    create_topic,
    end_offsets,
    produce,
    topics_of,
)
from policy.sink_records import sink_topic  # noqa: E402

TUNED = {"fetch_bytes": 8 * 1024 * 1024, "poll_records": 5000, "buffer": 32768}
CONTENDERS = (
    "ck",
    "bare",
    "bare-default",
    "bare-send",
    "bare-produce",
    "worker",
    "worker-e",
    "worker-default",
    "worker-nometrics",
    "worker-e-nometrics",
)
SAMPLE_S = 0.2
PROMETHEUS_SCRAPE_S = 15.0
IDLE_S = 8.0
"""How long the worker's CPU is read once it has committed everything: its idle rate."""
START_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 45.0


@dataclass
class Bench:
    bootstrap: str
    events: int
    topic: str
    policy: Path
    workdir: Path
    run_id: str
    timeout_s: float
    py_spy: Path | None = None
    """A directory: every worker run is sampled by py-spy into `<app id>.txt` there."""
    py_spy_gil: bool = False
    """Sample only the thread holding the GIL (py-spy `--gil`): CPU spent in Python, without
    the time threads wait for the GIL."""
    app_ids: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def app_id(self, name: str) -> str:
        app_id = f"lethe-bench-{self.run_id}-{name}"
        self.app_ids.append(app_id)
        self.groups.append(app_id)
        return app_id


def clean_up(bench: Bench) -> None:
    """Delete the bench topic, every topic of the bench's apps and every group it made."""
    client = admin(bench.bootstrap)
    table = bench.topic.split(".", 1)[1]  # hosting.public.bench_x -> public.bench_x
    doomed = [bench.topic, sink_topic(table)]  # stage E declares its table's sink topic
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

    def __init__(
        self, argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path = ROOT
    ) -> None:
        self.log = log
        self.stderr = log.open("wb")
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=env,
            cwd=cwd,
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
                    result = Result(name, (bench.events - 1) / seconds, seconds)
                    result.extra["cpu_s"] = float(report["cpu_seconds"])
                    return result
        print(f"{name}: no result; its log ends:\n{child.tail()}", file=sys.stderr)
        return Result(name, None)
    finally:
        child.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> dict[str, float] | None:
    """The worker's /metrics, only `lethe_change_events_total` (the page's `name[]` filter: a
    probe that costs every worker alike, however many metrics it has): the sum the bench
    watches."""
    url = f"http://127.0.0.1:{port}/metrics?name[]=lethe_change_events_total"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    sums: dict[str, float] = {"changes": 0.0}
    for line in text.splitlines():
        if line.startswith("lethe_change_events_total{"):
            sums["changes"] += float(line.rsplit(" ", 1)[1])
    return sums


class Prometheus(threading.Thread):
    """Reads the worker's whole /metrics page every PROMETHEUS_SCRAPE_S, as the stack's
    Prometheus does (docker/prometheus.yml), until stopped."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(PROMETHEUS_SCRAPE_S):
            with contextlib.suppress(OSError), urllib.request.urlopen(self.url, timeout=5) as r:
                r.read()


def run_worker(
    bench: Bench,
    tuned: bool,
    profile: Path | None = None,
    *,
    enforce: bool = False,
    metrics: bool = True,
    root: Path = ROOT,
    write_buffer: int | None = None,
) -> Result:
    name = "lethe worker, " + ("tuned" if tuned else "its defaults")
    name += ", stages A and E" if enforce else ", stage A"
    if not metrics:
        name += ", LETHE_METRICS=off"
    if write_buffer is not None:
        name += f", LETHE_ROCKSDB_WRITE_BUFFER_BYTES={write_buffer}"
    if root != ROOT:
        name = f"baseline {name}"
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
        "LETHE_ENFORCE": "on" if enforce else "off",
        "LETHE_METRICS": "on" if metrics else "off",
    }
    if write_buffer is not None:
        env["LETHE_ROCKSDB_WRITE_BUFFER_BYTES"] = str(write_buffer)
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
    child = Child(argv, bench.workdir / f"{app_id}.log", env, cwd=root)
    sampler = None
    if bench.py_spy is not None:
        py_spy = str(Path(sys.executable).with_name("py-spy"))
        sampler = subprocess.Popen(
            [py_spy, "record", "--pid", str(child.process.pid), "--format", "raw",
             "--rate", "100", "-o", str(bench.py_spy / f"{app_id}.txt"),
             *(["--gil"] if bench.py_spy_gil else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
    result = Result(name, None)
    prometheus = Prometheus(port)
    prometheus.start()
    try:
        result = _watch_worker(bench, name, port, app_id, child, enforce=enforce)
    finally:
        prometheus.stopped.set()
        child.stop()
        if sampler is not None:
            sampler.wait(timeout=60)
    if result.rate is not None:
        result.extra.update(_written_per_event(bench, app_id))
    return result


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid` (every thread) so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _watch_worker(
    bench: Bench, name: str, port: int, app_id: str, child: Child, *, enforce: bool
) -> Result:
    start_deadline = time.monotonic() + START_TIMEOUT_S
    pid = child.process.pid
    first_cpu: float | None = None
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
                first_cpu = cpu_seconds(pid)
                deadline = now + bench.timeout_s
            if sums["changes"] >= bench.events:
                done_at = sampled
                done_cpu = cpu_seconds(pid)
                break
        time.sleep(SAMPLE_S)
    assert first is not None
    seconds = done_at - first[0]
    counted = bench.events - first[1]
    result = Result(name, counted / seconds, seconds)
    if first_cpu is not None and done_cpu is not None:
        result.extra["cpu_s"] = (done_cpu - first_cpu) * (bench.events - 1) / counted
    drained = _wait_committed(bench, app_id, enforce)
    if drained is not None:
        result.extra["all_agents_rate"] = counted / (drained - first[0])
        drained_cpu = cpu_seconds(pid)
        if first_cpu is not None and drained_cpu is not None:
            result.extra["all_agents_cpu_s"] = (
                (drained_cpu - first_cpu) * (bench.events - 1) / counted
            )
            time.sleep(IDLE_S)
            idle_cpu = cpu_seconds(pid)
            if idle_cpu is not None:
                idle_rate = (idle_cpu - drained_cpu) / (time.perf_counter() - drained)
                result.extra["idle_share"] = idle_rate
                busy = drained_cpu - first_cpu - idle_rate * (drained - first[0])
                result.extra["busy_cpu_s"] = busy * (bench.events - 1) / counted
    return result


def _wait_committed(bench: Bench, app_id: str, enforce: bool) -> float | None:
    """When the worker's consumer group has committed every record of the bench topic and,
    with stage E, of `<app id>-subject-events` (one partition each); None if not within
    DRAIN_TIMEOUT_S. Faust commits every 2.8 s: up to that late, the worker idle meanwhile."""
    topics = [bench.topic, f"{app_id}-subject-events"] if enforce else [bench.topic]
    consumer = Consumer({"bootstrap.servers": bench.bootstrap, "group.id": app_id,
                         "enable.auto.commit": False, "log_level": 0})  # fmt: skip
    try:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            ends = end_offsets(bench.bootstrap, topics)
            sampled = time.perf_counter()
            committed = consumer.committed([TopicPartition(t, 0) for t in topics], timeout=10)
            if all(max(tp.offset, 0) >= ends[tp.topic] for tp in committed):
                return sampled
            time.sleep(SAMPLE_S)
    finally:
        consumer.close()
    print(f"{app_id}: its topics were not committed to their end within {DRAIN_TIMEOUT_S:.0f} s")
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


def run_text(result: Result, events: int) -> str:
    """One run's line: events/s, CPU per event, and for a worker the same for all agents."""
    text = f"{rate_text(result.rate)} ev/s"
    if "cpu_s" in result.extra:
        text += f", {result.extra['cpu_s'] * 1e6 / events:,.0f} µs CPU/event"
    if "all_agents_rate" in result.extra:
        text += f", all agents {result.extra['all_agents_rate']:,.0f} ev/s"
    if "all_agents_cpu_s" in result.extra:
        text += f", {result.extra['all_agents_cpu_s'] * 1e6 / events:,.0f} µs CPU/event"
    if "busy_cpu_s" in result.extra:
        busy = result.extra["busy_cpu_s"] * 1e6 / events
        text += f" (idle {result.extra['idle_share']:.1%} of a core; without it {busy:,.0f} µs)"
    return text


def paired_text(first: Result, other: Result) -> str:
    """The first contender's all-agents CPU per event over another's (side by side)."""
    a, b = first.extra.get("all_agents_cpu_s"), other.extra.get("all_agents_cpu_s")
    label = f"first / {other.contender}: all-agents CPU per event"
    if not a or not b:
        return f"{label}: -"
    return f"{label}: {a / b:.3f}"


def write_buffer_contender(bench: Bench, key: str) -> tuple[str, Callable[[], Result]]:
    """`worker-wb<bytes>` or `worker-e-wb<bytes>`: the tuned worker (stage A, or A and E) with
    LETHE_ROCKSDB_WRITE_BUFFER_BYTES=<bytes>."""
    stages, _, size = key.rpartition("-wb")
    if stages not in ("worker", "worker-e") or not size.isdigit():
        raise SystemExit(f"unknown contender {key!r}; see --help")
    enforce = stages == "worker-e"
    name = f"lethe worker, tuned, {'stages A and E' if enforce else 'stage A'}, {size} B memtables"
    return name, lambda: run_worker(bench, True, enforce=enforce, write_buffer=int(size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=2, help="runs of each contender (default 2)")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument(
        "--create-share", type=float, default=0.3, help="share of creates (default 0.3)"
    )
    parser.add_argument(
        "--replica-identity",
        choices=("default", "full"),
        default="default",
        help="default: updates without before image; full: with it, as on the demo tables",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of another commit (e.g. `git archive main`): adds contenders "
        "baseline-worker and baseline-worker-e, its worker run from there",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="per run, seconds")
    parser.add_argument("--profile", type=Path, help="also profile one run of each Faust app")
    parser.add_argument(
        "--side-by-side",
        action="store_true",
        help="run the contenders of a round at the same time (each its own app and group), "
        "so that they share the machine's load; with two, print their CPU ratio per round",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        help="a directory: sample every worker run with py-spy (raw stacks, <app id>.txt)",
    )
    parser.add_argument(
        "--py-spy-gil",
        action="store_true",
        help="with --py-spy: sample only the thread holding the GIL (py-spy --gil)",
    )
    parser.add_argument(
        "--contenders",
        default=",".join(CONTENDERS),
        help=f"comma-separated, in run order (default: all: {','.join(CONTENDERS)}); also "
        "worker-wb<bytes> and worker-e-wb<bytes>: with LETHE_ROCKSDB_WRITE_BUFFER_BYTES=<bytes>",
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
            py_spy=args.py_spy,
            py_spy_gil=args.py_spy_gil,
        )
        if args.py_spy is not None:
            args.py_spy.mkdir(parents=True, exist_ok=True)
        try:
            create_topic(bench.bootstrap, bench.topic)
            started = time.perf_counter()
            count, size = produce(
                bench.bootstrap,
                bench.topic,
                change_records(
                    args.events,
                    table_name,
                    args.create_share,
                    full_identity=args.replica_identity == "full",
                ),
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
                "worker": ("lethe worker, tuned, stage A", lambda: run_worker(bench, True)),
                "worker-e": (
                    "lethe worker, tuned, stages A and E",
                    lambda: run_worker(bench, True, enforce=True),
                ),
                "worker-default": (
                    "lethe worker, its defaults, stage A",
                    lambda: run_worker(bench, False),
                ),
                "worker-nometrics": (
                    "lethe worker, tuned, stage A, LETHE_METRICS=off",
                    lambda: run_worker(bench, True, metrics=False),
                ),
                "worker-e-nometrics": (
                    "lethe worker, tuned, stages A and E, LETHE_METRICS=off",
                    lambda: run_worker(bench, True, enforce=True, metrics=False),
                ),
            }
            if args.baseline is not None:
                baseline = args.baseline.resolve()
                everyone["baseline-worker"] = (
                    "baseline lethe worker, tuned, stage A",
                    lambda: run_worker(bench, True, root=baseline),
                )
                everyone["baseline-worker-e"] = (
                    "baseline lethe worker, tuned, stages A and E",
                    lambda: run_worker(bench, True, enforce=True, root=baseline),
                )
            contenders = [
                everyone[key] if key in everyone else write_buffer_contender(bench, key)
                for key in args.contenders.split(",")
            ]
            results: dict[str, list[Result]] = {name: [] for name, _ in contenders}
            for round_no in range(1, args.runs + 1):
                if args.side_by_side:
                    with ThreadPoolExecutor(len(contenders)) as pool:
                        futures = [(name, pool.submit(run)) for name, run in contenders]
                        done = [(name, future.result()) for name, future in futures]
                else:
                    done = [(name, run()) for name, run in contenders]
                for name, result in done:
                    results[name].append(result)
                    print(f"run {round_no}: {name}: {run_text(result, bench.events)}", flush=True)
                if args.side_by_side:
                    for _, other in done[1:]:
                        print(f"run {round_no}: {paired_text(done[0][1], other)}", flush=True)
            print()
            print(table(results, bench.events, size / count))
            if args.profile is not None:
                args.profile.mkdir(parents=True, exist_ok=True)
                profiled: tuple[tuple[str, Callable[[Path], Result]], ...] = (
                    ("bare-tuned", lambda path: run_bare(bench, True, path)),
                    ("worker-tuned", lambda path: run_worker(bench, True, path)),
                    ("worker-e-tuned", lambda path: run_worker(bench, True, path, enforce=True)),
                )
                for name, runner in profiled:
                    path = args.profile / f"{name}.prof"
                    result = runner(path)
                    print(f"\nprofiled {name}: {rate_text(result.rate)} ev/s under cProfile")
                    if path.exists():
                        print(profile_summary(path))
        finally:
            clean_up(bench)


if __name__ == "__main__":
    main()
