"""What the assign stage writes to `locations` per change event, replayed without a broker.

Run: `.venv/bin/python bench/assign_costs.py [STREAM]` (default docs/sample/hosting-6y.jsonl)

Replays a `lethe simulate` stream (JSON lines `{"topic", "key", "value"}`) through the
agent's decision (`lethe.agents.routing.route`) with a dict for the `locations` table,
and prints per table and in total: change events (tombstones apart), `locations`
changelog records (a write or a removal is one record each), records sent to
`<app id>-subject-events` (events and departs) and moves. The changelog records per event
are what the stage costs on top of a bare agent (docs/design/enforcer.md, "State and its
cost").
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lethe.agents.routing import Kind, route, row_id  # noqa: E402
from lethe.policy_file import load_policy  # noqa: E402
from policy.decoding import decode_record  # noqa: E402
from policy.engine import Engine  # noqa: E402
from policy.envelope import Rejection  # noqa: E402
from policy.events import ChangeEvent  # noqa: E402


def main(stream: Path) -> None:
    engine = Engine.compile(load_policy(ROOT / "config" / "policy.yaml"))
    locations: dict[str, str] = {}
    events: Counter[str] = Counter()
    writes: Counter[str] = Counter()
    sent: Counter[str] = Counter()
    moves: Counter[str] = Counter()
    ops: Counter[str] = Counter()
    skipped = 0
    for line in stream.read_text(encoding="utf-8").splitlines():
        record = orjson.loads(line)
        outcome = decode_record(engine.decoding, record["topic"], record["key"], record["value"])
        if isinstance(outcome, Rejection):
            raise SystemExit(f"{record['topic']}: {outcome.reason.value}: {outcome.detail}")
        if not isinstance(outcome, ChangeEvent):
            skipped += 1
            continue
        table = outcome.table
        events[table] += 1
        ops[outcome.op.value] += 1
        routing = route(engine, locations.get(row_id(table, outcome.key)), outcome)
        for key, subject in routing.writes:
            writes[table] += 1
            if subject is None:
                del locations[key]
            else:
                locations[key] = subject
        sent[table] += len(routing.records)
        moves[table] += sum(1 for r in routing.records if r.kind is Kind.DEPART)
    print(f"{'table':32} {'events':>7} {'writes':>7} {'sent':>7} {'moves':>6} {'w/event':>8}")
    for table in sorted(events):
        print(
            f"{table:32} {events[table]:7} {writes[table]:7} {sent[table]:7} {moves[table]:6} "
            f"{writes[table] / events[table]:8.2f}"
        )
    total_events, total_writes = sum(events.values()), sum(writes.values())
    print(
        f"{'total':32} {total_events:7} {total_writes:7} {sum(sent.values()):7} "
        f"{sum(moves.values()):6} {total_writes / total_events:8.2f}"
    )
    print(f"ops: {dict(sorted(ops.items()))}; tombstones (no write, not sent): {skipped}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "sample" / "hosting-6y.jsonl")
