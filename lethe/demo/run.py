"""`lethe demo`: the worker on an accelerated clock, and the live summary of what it does.

The worker is `lethe worker` in a child process, with a fresh app id (`lethe-demo-<UTC
time>`, so it reads the change topics from their beginning, the initial snapshot first),
enforcing (LETHE_ENFORCE=on) under an accelerated clock that starts at the wall instant it
is launched and runs a year every `seconds_per_year` wall seconds. Its log goes to
`<LETHE_STACK_DIR>/logs/demo-worker.log`. The summary is redrawn in place every second until
Ctrl-C (or `duration`): then the worker gets SIGTERM, is waited for, and the demo's own
topics, consumer group and local tables are deleted (its commands stay applied).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.live import Live

from lethe.demo import DEFAULT_SECONDS_PER_YEAR
from lethe.demo.schedule import Schedule, read_history, replay, wait_quiet
from lethe.demo.seed import row_counts
from lethe.demo.summary import Snapshot, WorkerCounts, parse_metrics, render
from lethe.errors import LetheError
from lethe.policy_file import load_policy
from lethe.settings import Settings
from policy.enforcement_clock import AcceleratedClock
from policy.engine import Engine
from policy.instants import Instant, format_instant

YEAR_SECONDS = 365 * 86_400
HORIZON_YEARS = 60
"""How far ahead of its start the demo computes what falls due (an hour of demo)."""
STOP_TIMEOUT_S = 30.0
CLOCK_VARIABLES = (
    "LETHE_CLOCK",
    "LETHE_CLOCK_START",
    "LETHE_CLOCK_WALL_START",
    "LETHE_CLOCK_SPEED",
)


def demo_speed(seconds_per_year: float) -> Fraction:
    """The clock speed at which a (365-day) year passes in `seconds_per_year` wall seconds."""
    if not seconds_per_year > 0:
        raise LetheError(f"--seconds-per-year {seconds_per_year} is not more than 0")
    return Fraction(YEAR_SECONDS) / Fraction(seconds_per_year).limit_denominator(1000)


def demo_app_id(now: datetime) -> str:
    return f"lethe-demo-{now:%Y%m%d%H%M%S}"


@dataclass
class WorkerProcess:
    """The demo's `lethe worker` child process."""

    process: subprocess.Popen[bytes]
    log_file: Path

    def stop(self) -> int:
        """SIGTERM, wait; SIGKILL after STOP_TIMEOUT_S. Returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_worker(
    settings: Settings, app_id: str, clock: AcceleratedClock, log_file: Path
) -> WorkerProcess:
    env = {key: value for key, value in os.environ.items() if key not in CLOCK_VARIABLES}
    env.update(
        LETHE_CLOCK="accelerated",
        LETHE_CLOCK_WALL_START=format_instant(clock.wall_start),
        LETHE_CLOCK_START=format_instant(clock.start),
        LETHE_CLOCK_SPEED=str(clock.speed),
        LETHE_ENFORCE="on",
    )
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "lethe", "worker", "--app-id", app_id, "-l", "warning"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the demo, which stops the worker itself
        )
    return WorkerProcess(process, log_file)


def read_metrics(url: str) -> tuple[WorkerCounts, str]:
    """The worker's counters, and "" or why they could not be read."""
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return parse_metrics(answer.read().decode()), ""
    except (urllib.error.URLError, OSError) as exc:
        return WorkerCounts(), f"metrics not readable yet at {url} ({exc})"


def heading(clock: AcceleratedClock, wall: Instant, seconds_per_year: float) -> str:
    now = clock.at(wall)
    years = (now - clock.start) / 1_000_000 / YEAR_SECONDS
    elapsed = (wall - clock.wall_start) // 1_000_000
    return (
        f"enforcement clock {format_instant(now)[:10]} (+{years:.1f} years; a year every "
        f"{seconds_per_year:g} s)   wall {elapsed // 60}:{elapsed % 60:02d}   Ctrl-C stops"
    )


def run_demo(
    settings: Settings,
    *,
    seconds_per_year: float = DEFAULT_SECONDS_PER_YEAR,
    duration: float | None = None,
    app_id: str | None = None,
    console: Console | None = None,
    say: Callable[[str], None] = print,
) -> int:
    """Run the worker and the summary until Ctrl-C or `duration` seconds; the exit code."""
    speed = demo_speed(seconds_per_year)
    console = console or Console(width=None if sys.stdout.isatty() else 132)
    policy = load_policy(settings.policy_path)
    engine = Engine.compile(policy)
    tables: Sequence[str] = sorted(policy.sources, key=_display_order)
    topics = [source.topic for source in policy.sources.values()]
    from lethe.kafka_clients import client_config

    say("reading the change topics, as the demo's worker will ...")
    wait_quiet(client_config(settings), topics)
    holds = [source.topic for source in policy.sources.values() if source.hold]
    history = read_history(client_config(settings), topics, first=holds)
    started = datetime.now(UTC).replace(microsecond=0)
    app_id = app_id or demo_app_id(started)
    wall_start = int(started.timestamp()) * 1_000_000
    clock = AcceleratedClock(wall_start, wall_start, speed)
    plan = replay(engine, history, clock, wall_start + HORIZON_YEARS * YEAR_SECONDS * 1_000_000)
    say(f"{len(history)} change records: {sum(plan.due_by(wall_start).values())} commands due now")
    with psycopg.connect(settings.pg_dsn, autocommit=True) as conn:
        rows_at_start = row_counts(conn, [table.split(".", 1)[1] for table in tables])
        log_file = settings.stack_dir / "logs" / "demo-worker.log"
        say(f"starting the worker {app_id} (log: {log_file})")
        worker = start_worker(settings, app_id, clock, log_file)
        code = 0
        # Ctrl-C even when started with SIGINT ignored (a background job); SIGTERM alike
        interrupt = signal.signal(signal.SIGINT, signal.default_int_handler)
        terminate = signal.signal(signal.SIGTERM, _interrupt)
        try:
            code = _show(
                console, conn, settings, tables, rows_at_start, plan, clock, worker,
                seconds_per_year, duration,
            )  # fmt: skip
        except KeyboardInterrupt:
            pass
        finally:
            if not console.is_terminal:
                console.line()
            say("stopping the worker (Ctrl-C is ignored until it has stopped) ...")
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            try:
                stopped = worker.stop()
                say(f"worker stopped (exit {stopped}); its log: {log_file}")
                cleanup(settings, app_id, say)
            finally:
                signal.signal(signal.SIGINT, interrupt)
                signal.signal(signal.SIGTERM, terminate)
    return code


def _show(
    console: Console,
    conn: psycopg.Connection[Any],
    settings: Settings,
    tables: Sequence[str],
    rows_at_start: dict[str, int],
    plan: Schedule,
    clock: AcceleratedClock,
    worker: WorkerProcess,
    seconds_per_year: float,
    duration: float | None,
) -> int:
    url = f"http://{settings.web_host}:{settings.web_port}/metrics"
    deadline = None if duration is None else time.monotonic() + duration

    def frame() -> Snapshot:
        counts, problem = read_metrics(url)
        wall = time.time_ns() // 1000
        rows_now = row_counts(conn, [table.split(".", 1)[1] for table in tables])
        return Snapshot(
            tables=tables,
            rows_at_start={f"public.{name}": count for name, count in rows_at_start.items()},
            rows_now={f"public.{name}": count for name, count in rows_now.items()},
            due=plan.due_by(clock.at(wall)),
            counts=counts,
            heading=heading(clock, wall, seconds_per_year),
            status=problem or f"worker pid {worker.process.pid} running",
        )

    with Live(render(frame()), console=console, auto_refresh=False, transient=False) as live:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(1.0)
            if worker.process.poll() is not None:
                status = (
                    f"the worker stopped (exit {worker.process.returncode}); see {worker.log_file}"
                )
                live.update(render(replace(frame(), status=status)), refresh=True)
                return 1
            live.update(render(frame()), refresh=True)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _display_order(table: str) -> tuple[int, str]:
    """Customers first, then the tables about customers, then the others, by name."""
    return (0 if table == "public.customers" else 1, table)


def cleanup(settings: Settings, app_id: str, say: Callable[[str], None] = print) -> None:
    """Delete the demo worker's topics, consumer group and local tables."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    from lethe.kafka_clients import client_config

    admin = AdminClient(client_config(settings))
    try:
        names = [
            name
            for name in admin.list_topics(timeout=10).topics
            if name.startswith(f"{app_id}-") or name == app_id
        ]
        if names:
            for future in admin.delete_topics(names, operation_timeout=30).values():
                future.result()
        for future in admin.delete_consumer_groups([app_id], request_timeout=10).values():
            try:
                future.result()
            except KafkaException as exc:  # a worker that never joined left no group
                if not (exc.args and exc.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND):
                    raise
    except Exception as exc:  # the demo is over either way: say what is left behind
        say(f"could not delete all of the demo worker's topics or group {app_id}: {exc}")
    shutil.rmtree(settings.data_dir / app_id, ignore_errors=True)
