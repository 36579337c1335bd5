"""Row 5 of the fault matrix, the pure part: every malformed record the poison generator
(tests/poison.py) makes is refused by the decoder with the reason written there by hand, and
none makes it raise; the good records it is mixed with decode."""

from __future__ import annotations

import random
from collections import Counter

import orjson
import pytest

from policy.decoding import decode_raw
from policy.engine import Engine
from policy.envelope import Rejection
from policy.events import ChangeEvent, Op
from tests import poison

SOURCES = {
    "hosting.public.connection_logs": poison.CONNECTION_LOGS,
    "hosting.public.satisfaction_surveys": poison.SATISFACTION_SURVEYS,
}
TS_MS = 1_764_500_000_000


@pytest.mark.parametrize("topic", sorted(SOURCES))
def test_every_malformed_record_is_refused_with_its_reason(demo_engine: Engine, topic: str) -> None:
    records = poison.malformed(random.Random(5), SOURCES[topic], 3_000, TS_MS)
    assert set(poison.KINDS) <= {record.kind for record in records}, "every kind is made"
    wrong: Counter[tuple[str, str, str]] = Counter()
    for record in records:
        outcome = decode_raw(demo_engine.decoding, topic, record.key, record.value)
        got = outcome.reason.value if isinstance(outcome, Rejection) else type(outcome).__name__
        if got != record.reason:
            wrong[(record.kind, record.reason, got)] += 1
    assert not wrong, f"(kind, wanted, got): count {dict(wrong)}"


def test_an_oversized_record_is_refused_as_not_json(demo_engine: Engine) -> None:
    records = poison.malformed(random.Random(7), poison.CONNECTION_LOGS, 30, TS_MS, oversized=2)
    huge = [record for record in records if record.kind == "oversized"]
    assert len(records) == 30 and len(huge) == 2
    for record in huge:
        assert record.value is not None and len(record.value) > poison.HUGE_BYTES
        outcome = decode_raw(
            demo_engine.decoding, "hosting.public.connection_logs", record.key, record.value
        )
        assert isinstance(outcome, Rejection) and outcome.reason.value == "not_json"


def test_the_good_records_decode(demo_engine: Engine) -> None:
    row = poison.good_row(poison.CONNECTION_LOGS, 41, 987, "2024-06-15T08:30:00Z")
    outcome = decode_raw(
        demo_engine.decoding,
        "hosting.public.connection_logs",
        orjson.dumps({"id": 41}),
        orjson.dumps(poison.envelope("c", None, row, TS_MS)),
    )
    assert isinstance(outcome, ChangeEvent)
    assert (outcome.table, outcome.key, outcome.op) == (
        "public.connection_logs",
        (("id", 41),),
        Op.CREATE,
    )
