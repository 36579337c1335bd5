"""Write the sample stream `hosting-6y.jsonl` and its `lethe simulate` output.

Run from the repository root: `.venv/bin/python docs/sample/make_sample.py`

The stream is what Debezium's PostgreSQL connector (topic prefix `hosting`) would
have written for the demo database from an initial snapshot on 2020-01-06 to the
end of 2025: JsonConverter records, with the `{"schema", "payload"}` wrapper on the
topics of customers, payment_methods, support_tickets and legal_holds and without
it elsewhere; snapshot reads, inserts, updates, deletes and tombstones. A scripted
story makes every rule of the default policy fire (see docs/simulate.md), over a
seeded background of connection logs, orders and invoices. Deterministic: the same
files every run.

The scripted story is in `sample_story.py`; this module holds the writer (`Stream`), the
seeded background and `main`.
"""

from __future__ import annotations

import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from sample_story import story  # noqa: E402

from lethe.policy_file import load_policy  # noqa: E402

HERE = Path(__file__).resolve().parent
STREAM = HERE / "hosting-6y.jsonl"
COMMANDS = HERE / "hosting-6y.commands.jsonl"
UNTIL = "2026-01-01T00:00:00Z"
WRAPPED = {"customers", "payment_methods", "support_tickets", "legal_holds"}
POLICY = load_policy(ROOT / "config" / "policy.yaml")
SCHEMA_TYPES = {
    "bigint": ("int64", None),
    "integer": ("int32", None),
    "text": ("string", None),
    "boolean": ("boolean", None),
    "numeric": ("string", None),
    "timestamptz": ("string", "io.debezium.time.ZonedTimestamp"),
    "date": ("int32", "io.debezium.time.Date"),
}


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def z(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


class Stream:
    def __init__(self) -> None:
        self.records: list[tuple[datetime, int, dict[str, Any]]] = []
        self.rows: dict[tuple[str, int], dict[str, Any]] = {}

    def _schema(self, table: str) -> dict[str, Any]:
        columns = POLICY.sources[f"public.{table}"].columns
        fields = []
        for column, kind in columns.items():
            kafka_type, name = SCHEMA_TYPES[kind.value]
            field = {"type": kafka_type, "optional": column != "id", "field": column}
            if name:
                field["name"] = name
                field["version"] = 1
            fields.append(field)
        row = {"type": "struct", "fields": fields, "optional": True,
               "name": f"hosting.public.{table}.Value"}  # fmt: skip
        return {
            "type": "struct",
            "name": f"hosting.public.{table}.Envelope",
            "optional": False,
            "fields": [
                {**row, "field": "before"},
                {**row, "field": "after"},
                {"type": "struct", "optional": False, "field": "source",
                 "name": "io.debezium.connector.postgresql.Source",
                 "fields": [{"type": "int64", "optional": False, "field": "ts_ms"},
                            {"type": "string", "optional": False, "field": "table"}]},
                {"type": "string", "optional": False, "field": "op"},
                {"type": "int64", "optional": True, "field": "ts_ms"},
            ],
        }  # fmt: skip

    def emit(self, at: datetime, table: str, op: str, row_id: int, after: dict | None) -> None:
        ts_ms = int(at.timestamp() * 1000)
        before = {"id": row_id} if op == "d" else None
        value: Any = {
            "before": before,
            "after": after,
            "source": {
                "ts_ms": ts_ms,
                "table": table,
                "snapshot": "true" if op == "r" else "false",
            },
            "op": op,
            "ts_ms": ts_ms,
        }
        key: Any = {"id": row_id}
        if table in WRAPPED:
            value = {"schema": self._schema(table), "payload": value}
            key = {"schema": {"type": "struct", "name": f"hosting.public.{table}.Key",
                              "optional": False,
                              "fields": [{"type": "int64", "optional": False, "field": "id"}]},
                   "payload": key}  # fmt: skip
        line = {"topic": f"hosting.public.{table}", "key": key, "value": value}
        self.records.append((at, len(self.records), line))
        if op == "d":
            # the tombstone for log compaction; it keeps the clock
            tomb = {"topic": f"hosting.public.{table}", "key": key, "value": None}
            self.records.append((at, len(self.records), tomb))

    def put(self, at: str, table: str, row_id: int, op: str = "c", **columns: Any) -> None:
        """Insert (c), snapshot-read (r) or update (u) a row; unnamed columns keep their value."""
        moment = t(at)
        columns_of = POLICY.sources[f"public.{table}"].columns
        row = dict(self.rows.get((table, row_id), dict.fromkeys(columns_of)))
        row["id"] = row_id
        for column, value in columns.items():
            assert column in columns_of, (table, column)
            if isinstance(value, datetime):
                value = z(value)
            row[column] = value
        self.rows[(table, row_id)] = row
        self.emit(moment, table, op, row_id, row)

    def delete(self, at: str, table: str, row_id: int) -> None:
        self.rows.pop((table, row_id), None)
        self.emit(t(at), table, "d", row_id, None)

    def lines(self) -> list[bytes]:
        ordered = sorted(self.records, key=lambda r: (r[0], r[1]))
        return [orjson.dumps(line) for _, _, line in ordered]


def background(s: Stream, seed: int = 20200106) -> None:
    """Connection logs, orders and invoices of customers 1, 4 and 5 over the six years."""
    rng = random.Random(seed)
    moment = t("2020-01-07T00:00:00Z")
    log_id, order_id = 100, 100
    while moment < t("2025-12-20T00:00:00Z"):
        moment += timedelta(days=rng.randrange(10, 25), seconds=rng.randrange(86400))
        customer = rng.choice([1, 4, 5])
        log_id += 1
        s.put(
            z(moment) or "",
            "connection_logs",
            log_id,
            customer_id=customer,
            ip_address=f"198.51.100.{rng.randrange(1, 255)}",
            logged_at=moment,
        )
        if rng.random() < 0.15:
            order_id += 1
            s.put(
                z(moment) or "",
                "orders",
                order_id,
                customer_id=customer,
                service="vps-s",
                amount_cents=599,
                ordered_at=moment,
            )
            s.put(
                z(moment) or "",
                "invoices",
                order_id,
                customer_id=customer,
                order_id=order_id,
                billing_name="-",
                billing_address="-",
                amount_cents=599,
                issued_at=moment,
            )


def main() -> None:
    stream = Stream()
    story(stream)
    background(stream)
    STREAM.write_bytes(b"\n".join(stream.lines()) + b"\n")
    done = subprocess.run(
        [sys.executable, "-m", "lethe", "simulate", "--policy", str(ROOT / "config/policy.yaml"),
         "--events", str(STREAM), "--until", UNTIL],
        cwd=ROOT, capture_output=True, check=True,
    )  # fmt: skip
    COMMANDS.write_bytes(done.stdout)
    print(f"{STREAM.relative_to(ROOT)}: {len(stream.records)} records")
    count = len(done.stdout.splitlines())
    print(f"{COMMANDS.relative_to(ROOT)}: {count} commands")


if __name__ == "__main__":
    main()
