"""Engine evaluations per second on one core, over a realistic mix of the demo tables.

Run: `.venv/bin/python bench/engine_bench.py [--events N] [--rounds R] [--pin CPU] [--profile]`

Generates the change events in memory first (a seeded mix of inserts, updates,
snapshot reads and deletes across the demo tables), compiles the shipped policy
once (`Engine.compile`), then times only the engine, one thread:
- `engine evaluations (apply + due per event)`, the headline: `apply` and then `due`
  at the event's time on every event;
- `apply per event, due only when already due`: what the live enforcer does per
  event (later dues wait for their timer);
- `decode only`: Kafka record bytes (JsonConverter, no schemas) to `ChangeEvent`;
- `decode + apply + due per event`: the headline path starting from the bytes;
- `simulate driver`: the `Driver` over a `MemoryStore` (row/subject dicts, timer heap, re-arming a
  subject's rows when its activity or holds change).
Target: at least 100,000 engine evaluations per second. `--pin` pins to one CPU.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lethe.policy_file import load_policy  # noqa: E402
from policy.decoding import decode_raw  # noqa: E402
from policy.driver import Driver  # noqa: E402
from policy.engine import Engine, apply, due  # noqa: E402
from policy.events import ChangeEvent  # noqa: E402
from policy.store import MemoryStore  # noqa: E402

# share of each table in the stream (a hosting provider: logs, tickets and billing dominate)
MIX = {
    "connection_logs": 22,
    "support_tickets": 18,
    "orders": 11,
    "invoices": 11,
    "customers": 6,
    "marketing_contacts": 6,
    "call_recordings": 5,
    "payment_methods": 4,
    "satisfaction_surveys": 3,
    "fraud_signals": 3,
    "identity_documents": 2,
    "event_registrations": 2,
    "job_applications": 2,
    "info_requests": 2,
    "dpo_requests": 1,
    "payment_defaults": 1,
    "data_breaches": 0.2,
    "legal_holds": 0.8,
}
START = datetime(2020, 1, 1, tzinfo=UTC)
HEADLINE = "engine evaluations (apply + due per event)"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def make_row(table: str, row_id: int, customer: int, now: datetime, rng: random.Random) -> dict:
    def ago(max_days: int) -> str:
        return iso(now - timedelta(seconds=rng.randrange(max_days * 86400)))

    def maybe(max_days: int, p: float) -> str | None:
        return ago(max_days) if rng.random() < p else None

    email = f"person{customer}@example.org"
    rows: dict[str, Callable[[], dict]] = {
        "connection_logs": lambda: {"customer_id": customer, "ip_address": "198.51.100.7",
                                    "logged_at": ago(2)},
        "support_tickets": lambda: {"customer_id": customer, "subject_line": "VPS down",
                                    "body": "x" * 200, "contact_email": email,
                                    "created_at": ago(90), "last_message_at": ago(30)},
        "orders": lambda: {"customer_id": customer, "service": "vps-s", "amount_cents": 1299,
                           "ordered_at": ago(5)},
        "invoices": lambda: {"customer_id": customer, "order_id": row_id, "billing_name": "A B",
                             "billing_address": "1 Main St", "amount_cents": 1299,
                             "issued_at": ago(5)},
        "customers": lambda: {"nic_handle": f"ab{customer}-ovh", "first_name": "A",
                              "last_name": "B", "email": email, "phone": "+33 1",
                              "postal_address": "1 Main St", "country": "FR",
                              "created_at": ago(2000), "closed_at": maybe(400, 0.2)},
        "marketing_contacts": lambda: {
            "customer_id": customer if rng.random() < 0.6 else None, "email": email,
            "basis": rng.choice(["consent", "legitimate_interest"]),
            "consent_withdrawn_at": maybe(100, 0.1), "objected_at": maybe(100, 0.05),
            "last_contact_at": ago(700)},
        "call_recordings": lambda: {"customer_id": customer, "agent_id": 3,
                                    "audio_ref": "s3://rec/1", "recorded_at": ago(10),
                                    "objected": rng.random() < 0.05},
        "payment_methods": lambda: {"customer_id": customer, "kind": "card", "holder_name": "A B",
                                    "pan_last4": "4242", "iban": None,
                                    "expires_on": (now.date() - datetime(1970, 1, 1).date()).days
                                    + rng.randrange(1000),
                                    "subscription_cancelled_at": maybe(300, 0.2),
                                    "revoked_at": maybe(300, 0.1),
                                    "keep_for_purchases": rng.random() < 0.3,
                                    "purchase_consent_withdrawn_at": maybe(300, 0.1)},
        "satisfaction_surveys": lambda: {"customer_id": customer, "respondent_email": email,
                                         "score": rng.randrange(11), "comments": "ok",
                                         "submitted_at": ago(20)},
        "fraud_signals": lambda: {"customer_id": customer, "ip_address": "203.0.113.9",
                                  "geo": "NL", "score": "0.42", "observed_at": ago(3)},
        "identity_documents": lambda: {"customer_id": customer, "kind": "passport",
                                       "document_ref": "doc", "verified_at": ago(10),
                                       "fraud_suspected": rng.random() < 0.1},
        "event_registrations": lambda: {"event_name": "Summit", "full_name": "A B",
                                        "email": email, "company": "C", "job_title": "CTO",
                                        "event_ends_at": ago(60), "objected_at": maybe(30, 0.1)},
        "job_applications": lambda: {"first_name": "A", "last_name": "B", "email": email,
                                     "cv_text": "cv", "status": "open",
                                     "last_contact_at": ago(60),
                                     "retention_consent": rng.random() < 0.3},
        "info_requests": lambda: {"email": email, "full_name": "A B", "content": "price?",
                                  "received_at": ago(20), "handled_at": maybe(10, 0.7)},
        "dpo_requests": lambda: {"customer_id": customer, "request_text": "access",
                                 "answer_text": "done", "id_proof_ref": "proof",
                                 "received_at": ago(60), "answered_at": maybe(30, 0.8)},
        "payment_defaults": lambda: {"customer_id": customer, "amount_cents": 5000,
                                     "defaulted_at": ago(100)},
        "data_breaches": lambda: {"description": "leak", "affected_subjects": 12,
                                  "detected_at": ago(10)},
        "legal_holds": lambda: {"customer_id": customer, "case_ref": "C-1", "placed_at": ago(1),
                                "released_at": maybe(1, 0.5)},
    }  # fmt: skip
    return {"id": row_id, **rows[table]()}


def generate(count: int, seed: int = 7) -> list[tuple[str, bytes, bytes]]:
    """(topic, key bytes, value bytes) records as JsonConverter (no schemas) writes them."""
    rng = random.Random(seed)
    tables = list(MIX)
    weights = [MIX[t] for t in tables]
    known: dict[str, list[int]] = {t: [] for t in tables}
    now = START
    records = []
    for _ in range(count):
        now += timedelta(seconds=rng.randrange(1, 600))
        table = rng.choices(tables, weights)[0]
        ids = known[table]
        roll = rng.random()
        customer = rng.randrange(1, 20_000)
        if ids and roll < 0.05:
            row_id = ids.pop(rng.randrange(len(ids)))
            op, before, after = "d", {"id": row_id}, None
        else:
            if ids and roll < 0.35:
                row_id = ids[rng.randrange(len(ids))]
                op = "u"
            else:
                row_id = len(ids) + sum(len(v) for v in known.values()) + rng.randrange(10**9)
                ids.append(row_id)
                op = "c" if roll < 0.9 else "r"
            before, after = None, make_row(table, row_id, customer, now, rng)
        ts_ms = int(now.timestamp() * 1000)
        value = {"before": before, "after": after, "op": op, "ts_ms": ts_ms,
                 "source": {"ts_ms": ts_ms, "schema": "public", "table": table}}  # fmt: skip
        records.append(
            (f"hosting.public.{table}", orjson.dumps({"id": row_id}), orjson.dumps(value))
        )
    return records


def run_apply_due(engine: Engine, events: list[ChangeEvent], every: bool = True) -> int:
    """apply on each event; due on each event (`every`) or only when the row is already due."""
    rows: dict = {}
    subjects: dict = {}
    issued = 0
    for event in events:
        where = (event.table, event.key)
        row = rows.get(where)
        subject_key = row.subject if row is not None else None
        step = apply(engine, row, subjects.get(subject_key) if subject_key else None, event)
        if step.subject_key is not None and step.subject is not None:
            subjects[step.subject_key] = step.subject
        new_row = step.row
        if new_row is None:
            rows.pop(where, None)
            continue
        if every or (step.next_due is not None and step.next_due <= event.ts):
            commands, new_row, _ = due(engine, new_row, step.subject, event.ts)
            issued += len(commands)
        rows[where] = new_row
    return issued


def run_decode(engine: Engine, records: list[tuple[str, bytes, bytes]]) -> list[ChangeEvent]:
    decoding = engine.decoding
    events = []
    for topic, key, value in records:
        event = decode_raw(decoding, topic, key, value)
        if isinstance(event, ChangeEvent):
            events.append(event)
    return events


def run_decode_apply_due(engine: Engine, records: list[tuple[str, bytes, bytes]]) -> int:
    return run_apply_due(engine, run_decode(engine, records))


def run_simulator(engine: Engine, events: list[ChangeEvent]) -> int:
    driver = Driver(engine, MemoryStore())
    issued = 0
    for event in events:
        issued += len(driver.feed(event).commands)
    return issued


def timed(fn: Callable[[], int], rounds: int) -> tuple[list[float], list[float], int]:
    """Wall-clock and CPU seconds of each round (CPU time is what other processes can't steal)."""
    fn()  # warm up
    walls, cpus = [], []
    result = 0
    for _ in range(rounds):
        gc.collect()
        started, started_cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - started_cpu)
    return walls, cpus, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="cProfile one apply+due round")
    parser.add_argument("--profile-decode", action="store_true", help="profile with decoding")
    parser.add_argument("--no-gc", action="store_true", help="disable the cyclic GC (comparison)")
    parser.add_argument("--pin", type=int, metavar="CPU", help="pin the process to this CPU")
    args = parser.parse_args()
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})
    policy = load_policy(ROOT / "config" / "policy.yaml")
    engine = Engine.compile(policy)
    records = generate(args.events)
    events = []
    for topic, key, value in records:
        event = decode_raw(engine.decoding, topic, key, value)
        assert isinstance(event, ChangeEvent), event
        events.append(event)
    gc.collect()
    gc.freeze()  # the generated input is not engine work: keep it out of GC scans
    if args.no_gc:
        gc.disable()
    if args.profile or args.profile_decode:
        import cProfile
        import pstats

        target = (
            "run_decode_apply_due(engine, records)"
            if args.profile_decode
            else "run_apply_due(engine, events)"
        )
        cProfile.runctx(target, globals(), locals(), "/tmp/engine.prof")
        pstats.Stats("/tmp/engine.prof").sort_stats("tottime").print_stats(20)
        return

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"nproc: {os.cpu_count()}; one thread on CPUs {sorted(os.sched_getaffinity(0))}; "
        f"load average before: {load}"
    )
    print(f"python {sys.version.split()[0]}, {len(events):,} events, {args.rounds} rounds")
    mix = Counter(e.table.split(".")[1] for e in events)
    ops = Counter(e.op.value for e in events)
    print("mix: " + ", ".join(f"{t} {100 * n / len(events):.1f}%" for t, n in mix.most_common()))
    print("ops: " + ", ".join(f"{op} {100 * n / len(events):.1f}%" for op, n in ops.most_common()))
    print()
    paths = [
        (HEADLINE, lambda: run_apply_due(engine, events)),
        (
            "apply per event, due only when already due",
            lambda: run_apply_due(engine, events, False),
        ),
        ("decode only (Kafka record bytes -> event)", lambda: len(run_decode(engine, records))),
        ("decode + apply + due per event", lambda: run_decode_apply_due(engine, records)),
        ("simulate driver (dicts, timers, re-arming)", lambda: run_simulator(engine, events)),
    ]
    width = max(len(name) for name, _ in paths)
    header = (
        f"{'path':<{width}} {'best ev/s':>10} {'median ev/s':>11} {'µs/event':>8} "
        f"{'best ev/cpu-s':>13} {'result':>7}"
    )
    print(header)
    print("-" * len(header))
    n = len(events)
    for name, fn in paths:
        walls, cpus, result = timed(fn, args.rounds)
        best, median = min(walls), statistics.median(walls)
        print(
            f"{name:<{width}} {n / best:>10,.0f} {n / median:>11,.0f} {1e6 * best / n:>8.2f} "
            f"{n / min(cpus):>13,.0f} {result:>7,}"
        )
    print(
        f"events/s from wall-clock time over {n:,} events (best and median of {args.rounds} "
        "rounds), ev/cpu-s from CPU time; result: commands issued (decode: events decoded)"
    )
    print(f"target: {HEADLINE} >= 100,000 events/s")


if __name__ == "__main__":
    main()
