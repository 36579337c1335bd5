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
7. `worker-e-cut-hop`, `worker-e-cut-decode`, `worker-e-cut-drive`: 4b with stage E cut short
   (`bench/cut_worker.py`): the forwards read and dropped, then also decoded, then also fed
   to the driver over the worker's store; with 4 and 4b, the cost ladder of stage E.
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

This module holds the bench's main loop and report; the contenders and how each is started
are in `bench/ingest_contenders.py`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from confluent_kafka import KafkaException

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest_contenders import (  # noqa: E402
    Bench,
    run_bare,
    run_confluent,
    run_worker,
    write_buffer_contender,
)
from bench.ingest_report import Result, profile_summary, rate_text, table  # noqa: E402
from bench.ingest_stream import (  # noqa: E402
    admin,
    bench_policy,
    change_records,
    create_topic,
    produce,
    topics_of,
)
from policy.sink_records import sink_topic  # noqa: E402

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
                **{
                    f"worker-e-cut-{cut}": (
                        f"lethe worker, tuned, stages A and E, E cut after {cut}",
                        partial(run_worker, bench, True, enforce=True, cut=cut),
                    )
                    for cut in ("hop", "decode", "drive")
                },
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
