"""`lethe worker` with stage E cut short, for bench/ingest_bench.py's cost ladder (bench only).

    BENCH_CUT=hop|decode|drive python bench/cut_worker.py worker --app-id ID [-l warning]

Runs `lethe.cli.main` with `lethe.agents.enforce.Enforcer.handle_record` replaced for the
change events forwarded to stage E (ticks and departs run as shipped), so that the difference
between two rungs is what the step between them costs in the worker:
- `hop`: the forward is read (its batch and headers) and dropped: what the subject
  repartition costs (stage A's forward, the batch through Kafka, stage E's read);
- `decode`: and its event decoded (`read_subject_record`: a `change` record's
  `policy.event_wire.decode_event`, or an `event` record's Debezium value decoded again);
- `drive`: and fed to the driver over the worker's `FaustStore` (RocksDB reads, writes and
  their changelog records), its outcome dropped: no audit, no command.
The shipped worker (`worker-e`) is the last rung: plus the audit records and commands.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lethe import topics
from lethe.agents import enforce
from lethe.agents.subject_records import ChangeRecord, DecodedChange, read_subject_record
from lethe.cli import main
from policy.decoding import decode_raw
from policy.events import ChangeEvent

CUT = os.environ["BENCH_CUT"]
if CUT not in ("hop", "decode", "drive"):
    raise SystemExit(f"BENCH_CUT must be hop, decode or drive, not {CUT!r}")
shipped = enforce.Enforcer.handle_record


async def cut_short(
    self: enforce.Enforcer,
    message: Any,
    headers: dict[str, bytes],
    value: bytes | None,
    item: Any = None,
) -> None:
    if headers.get(topics.KIND_HEADER) not in (topics.CHANGE_KIND, topics.EVENT_KIND):
        await shipped(self, message, headers, value, item)
        return
    if CUT == "hop":
        return
    record = read_subject_record(headers, value)
    if isinstance(record, DecodedChange):
        decoded: object = record.event
    else:
        assert isinstance(record, ChangeRecord)
        decoded = decode_raw(self.engine.decoding, record.source_topic, None, record.value)
    if CUT == "decode" or not isinstance(decoded, ChangeEvent):
        return
    at = self.clock.event_instant(decoded.ts)
    event = decoded if at == decoded.ts else replace(decoded, ts=at)
    self.driver(message.partition).feed(event, self.bounds.get(message.partition, {}))


enforce.Enforcer.handle_record = cut_short  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main())
