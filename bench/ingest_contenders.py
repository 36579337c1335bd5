"""The ingest bench's contenders (`bench/ingest_bench.py`): the bench's settings, each
contender's run (a confluent-kafka loop, the bare Faust agent, `lethe worker`) and how it is
started, watched and stopped. Kept apart from the bench's main loop and report.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from confluent_kafka import Consumer, TopicPartition

from bench.ingest_report import Result
from bench.ingest_stream import create_topic, end_offsets, topics_of

ROOT = Path(__file__).resolve().parents[1]

TUNED = {"fetch_bytes": 8 * 1024 * 1024, "poll_records": 5000, "buffer": 32768}
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
    cut: str | None = None,
) -> Result:
    name = "lethe worker, " + ("tuned" if tuned else "its defaults")
    name += ", stages A and E" if enforce else ", stage A"
    if cut is not None:
        name += f", E cut after {cut}"
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
    if cut is not None:
        env["BENCH_CUT"] = cut
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
    entry = ["-m", "lethe"] if cut is None else [str(ROOT / "bench" / "cut_worker.py")]
    script = [*entry, "worker", "--app-id", app_id, "-l", "warning"]
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
    with stage E, of `<app id>-subject-events` every record that was there when the bench
    topic's commit reached its end (one partition each; a change record is committed only once
    its forwards are delivered, so they are all among them; the ticks sent later are not
    waited for: a worker that hands its changes off in process has only ticks there, one a
    second, which a commit every 2.8 s rarely catches up with); None if not within
    DRAIN_TIMEOUT_S. Faust commits every 2.8 s: up to that late, the worker idle meanwhile."""
    subject_events = f"{app_id}-subject-events"
    topics = [bench.topic, subject_events] if enforce else [bench.topic]
    consumer = Consumer({"bootstrap.servers": bench.bootstrap, "group.id": app_id,
                         "enable.auto.commit": False, "log_level": 0})  # fmt: skip
    wanted: dict[str, int] = {}
    try:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            ends = end_offsets(bench.bootstrap, topics)
            sampled = time.perf_counter()
            committed = consumer.committed([TopicPartition(t, 0) for t in topics], timeout=10)
            offsets = {tp.topic: max(tp.offset, 0) for tp in committed}
            if not wanted and offsets[bench.topic] >= ends[bench.topic]:
                wanted = end_offsets(bench.bootstrap, topics)
            if wanted and all(offsets[topic] >= wanted[topic] for topic in topics):
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


def write_buffer_contender(bench: Bench, key: str) -> tuple[str, Callable[[], Result]]:
    """`worker-wb<bytes>` or `worker-e-wb<bytes>`: the tuned worker (stage A, or A and E) with
    LETHE_ROCKSDB_WRITE_BUFFER_BYTES=<bytes>."""
    stages, _, size = key.rpartition("-wb")
    if stages not in ("worker", "worker-e") or not size.isdigit():
        raise SystemExit(f"unknown contender {key!r}; see --help")
    enforce = stages == "worker-e"
    name = f"lethe worker, tuned, {'stages A and E' if enforce else 'stage A'}, {size} B memtables"
    return name, lambda: run_worker(bench, True, enforce=enforce, write_buffer=int(size))
