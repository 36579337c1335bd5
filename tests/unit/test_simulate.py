"""`lethe simulate`: the fixed command-line interface others script against."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lethe.cli import main
from tests.unit.conftest import DEMO_POLICY, ROOT, checked_identity, record, tombstone

STREAM = [
    # wrapped key and value (JsonConverter with schemas)
    json.dumps({
        "topic": "hosting.public.support_tickets",
        "key": {"schema": {"type": "struct", "fields": [{"type": "int64", "field": "id"}]},
                "payload": {"id": 10}},
        "value": {
            "schema": {"type": "struct", "fields": [
                {"type": "struct", "field": "after", "fields": [
                    {"type": "int64", "field": "id"},
                    {"type": "int64", "field": "last_message_at",
                     "name": "io.debezium.time.MicroTimestamp"}]}]},
            "payload": {"op": "c", "ts_ms": 1704067200000, "before": None,
                        "after": {"id": 10, "customer_id": 42,
                                  "last_message_at": 1704067200000000}}},
    }),
    "{this is not json",
    record("support_tickets", "c", "2024-01-01T00:00:00Z",
           {"id": 7, "customer_id": 42, "last_message_at": "2024-01-01T00:00:00Z"}),
    record("data_breaches", "c", "2024-01-01T00:00:00Z",
           {"id": 1, "detected_at": "2019-01-01T00:00:00Z"}),
    tombstone("support_tickets", 99),
    json.dumps({"topic": "hosting.public.unknown", "key": {"id": 1},
                "value": {"op": "c", "ts_ms": 1, "after": {"id": 1}}}),
    record("satisfaction_surveys", "c", "2024-03-01T00:00:00Z",
           {"id": 3, "customer_id": 42, "submitted_at": "2024-03-01T00:00:00Z"}),
]  # fmt: skip

EXPECTED = [
    {"issued_at": "2024-01-01T00:00:00Z", "due_at": "2024-01-01T00:00:00Z", "action": "delete",
     "table": "public.data_breaches", "key": {"id": 1}, "subject": None,
     "purposes": ["breach_handling"]},
    {"issued_at": "2025-01-01T00:00:00Z", "due_at": "2025-01-01T00:00:00Z", "action": "archive",
     "table": "public.support_tickets", "key": {"id": 7}, "subject": "customer:42",
     "purposes": ["support"]},
    {"issued_at": "2025-01-01T00:00:00Z", "due_at": "2025-01-01T00:00:00Z", "action": "archive",
     "table": "public.support_tickets", "key": {"id": 10}, "subject": "customer:42",
     "purposes": ["support"]},
    {"issued_at": "2025-03-01T00:00:00Z", "due_at": "2025-03-01T00:00:00Z",
     "action": "anonymise", "table": "public.satisfaction_surveys", "key": {"id": 3},
     "subject": "customer:42", "purposes": ["satisfaction_surveys"],
     "fields": ["customer_id", "respondent_email", "comments", "submitted_at"]},
]  # fmt: skip


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(STREAM) + "\n", encoding="utf-8")
    return path


def _lines(text: str) -> list[dict[str, object]]:
    return [checked_identity(json.loads(line)) for line in text.splitlines()]


def test_commands_in_order_and_bad_lines_reported(events: Path, capsys: pytest.CaptureFixture):
    code = main(["simulate", "--policy", str(DEMO_POLICY), "--events", str(events),
                 "--until", "2025-06-01T00:00:00Z"])  # fmt: skip
    out, err = capsys.readouterr()
    assert _lines(out) == EXPECTED
    # exact key order of each output line is part of the interface
    assert list(json.loads(out.splitlines()[0])) == [
        "command_id", "issued_at", "due_at", "action", "stage", "table", "key", "subject",
        "purposes",
    ]  # fmt: skip
    assert f"{events}:2: not JSON" in err
    assert f"{events}:6: " in err and "not a source" in err
    assert code == 1


def test_until_defaults_to_the_last_event(events: Path, capsys: pytest.CaptureFixture):
    main(["simulate", "--policy", str(DEMO_POLICY), "--events", str(events)])
    out, _ = capsys.readouterr()
    assert _lines(out) == EXPECTED[:1]  # only the breach was due by 2024-03-01


def test_clean_stream_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture):
    path = tmp_path / "clean.jsonl"
    path.write_text(STREAM[2] + "\n", encoding="utf-8")
    assert main(["simulate", "--policy", str(DEMO_POLICY), "--events", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_bad_until_is_a_usage_error(events: Path, capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit) as exit_info:
        main(["simulate", "--events", str(events), "--until", "next tuesday"])
    assert exit_info.value.code == 2
    assert "2031-01-01T00:00:00Z" in capsys.readouterr().err


def test_missing_events_file(tmp_path: Path, capsys: pytest.CaptureFixture):
    code = main(["simulate", "--policy", str(DEMO_POLICY), "--events", str(tmp_path / "no")])
    assert code == 2
    assert "cannot read" in capsys.readouterr().err


def test_as_a_subprocess(events: Path):
    done = subprocess.run(
        [sys.executable, "-m", "lethe", "simulate", "--policy", str(DEMO_POLICY),
         "--events", str(events), "--until", "2025-06-01T00:00:00Z"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert _lines(done.stdout) == EXPECTED
    assert f"{events}:2:" in done.stderr


def test_invalid_policy_lists_errors_and_exits_2(
    events: Path, tmp_path: Path, capsys: pytest.CaptureFixture
):
    policy = tmp_path / "policy.yaml"
    policy.write_text(DEMO_POLICY.read_text().replace("after: P10Y", "after: ten years", 1))
    assert main(["simulate", "--policy", str(policy), "--events", str(events)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert "policy.yaml:" in err and "ten years" in err


def test_until_before_the_last_event_is_a_usage_error(events: Path, capsys: pytest.CaptureFixture):
    code = main(["simulate", "--policy", str(DEMO_POLICY), "--events", str(events),
                 "--until", "2024-02-01T00:00:00Z"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    # the last event is the survey of 2024-03-01
    assert "--until 2024-02-01T00:00:00Z is before the last event (2024-03-01T00:00:00Z)" in err
    assert "pass --until 2024-03-01T00:00:00Z or later" in err


SAMPLE = ROOT / "docs" / "sample" / "hosting-6y.jsonl"


def test_sample_stream_hand_checked_lines(capsys: pytest.CaptureFixture):
    """A few commands of the documented sample, worked out by hand from its input lines."""
    code = main(["simulate", "--policy", str(DEMO_POLICY), "--events", str(SAMPLE),
                 "--until", "2026-01-01T00:00:00Z"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    commands = _lines(out)
    customer_account = ["business_management", "customer_account", "litigation_evidence"]

    def line(issued: str, due: str, action: str, table: str, key: int, subject: str,
             purposes: list[str], **fields: list[str]) -> dict[str, object]:  # fmt: skip
        return {"issued_at": issued, "due_at": due, "action": action, "table": f"public.{table}",
                "key": {"id": key}, "subject": subject, "purposes": purposes, **fields}  # fmt: skip

    expected = [
        # line 2: snapshot (ts_ms 1578297600000 = 2020-01-06 08:00) of customer 2, closed
        # 2019-03-31 17:00: archived at closed_at, overdue: sent at the snapshot
        line("2020-01-06T08:00:00Z", "2019-03-31T17:00:00Z", "archive", "customers", 2,
             "customer:2", customer_account),
        # line 3: snapshot of customer 3, closed 2014-06-30 12:00: delete at + the limitation
        # period P5Y = 2019-06-30 12:00, overdue: sent at the snapshot (not its archive)
        line("2020-01-06T08:00:00Z", "2019-06-30T12:00:00Z", "delete", "customers", 3,
             "customer:3", customer_account),
        # line 74: objected = true at ts_ms 1612366200000 = 2021-02-03 15:30: at once
        line("2021-02-03T15:30:00Z", "2021-02-03T15:30:00Z", "delete", "call_recordings", 2,
             "customer:2", ["support_training"]),
        # line 24: submitted 2020-02-29 11:00 + P1Y = 2021-02-28 11:00 (line 77 is the sink's
        # update coming back: no second command)
        line("2021-02-28T11:00:00Z", "2021-02-28T11:00:00Z", "anonymise", "satisfaction_surveys",
             1, "customer:1", ["satisfaction_surveys"],
             fields=["customer_id", "respondent_email", "comments", "submitted_at"]),
        # line 10: expires_on 18870 days = 2021-08-31 (00:00 UTC) + P13M = 2022-09-31 -> 09-30
        line("2022-09-30T00:00:00Z", "2022-09-30T00:00:00Z", "delete", "payment_methods", 1,
             "customer:1", ["payment_management"]),
        # line 111: recorded 2021-12-01 10:00 + P6M = 2022-06-01 10:00, during the hold of
        # lines 114-138 on customer 5: sent at its release, ts_ms 1664553600000 = 2022-09-30 16:00
        line("2022-09-30T16:00:00Z", "2022-06-01T10:00:00Z", "delete", "call_recordings", 3,
             "customer:5", ["support_training"]),
        # lines 87, 109, 173: customer 4 closed at ts_ms 1622484000000 = 2021-05-31 18:00
        # (archived then), reopened 2021-11-15 09:00, closed again at 1698775200000 =
        # 2023-10-31 18:00: archived again, a second command
        line("2021-05-31T18:00:00Z", "2021-05-31T18:00:00Z", "archive", "customers", 4,
             "customer:4", customer_account),
        line("2023-10-31T18:00:00Z", "2023-10-31T18:00:00Z", "archive", "customers", 4,
             "customer:4", customer_account),
        # line 58: answered at ts_ms 1600164000000 = 2020-09-15 10:00: archived then
        line("2020-09-15T10:00:00Z", "2020-09-15T10:00:00Z", "archive", "dpo_requests", 1,
             "customer:5", ["dpo_requests"]),
        # line 152: purchase consent withdrawn 2023-01-31 10:00 + P13M = 2024-02-31 -> 02-29
        line("2024-02-29T10:00:00Z", "2024-02-29T10:00:00Z", "delete", "payment_methods", 2,
             "customer:4", ["payment_management"]),
        # lines 78, 146, 179: kept for purchases; consent withdrawn 2022-11-30 09:00 while the
        # subscription runs; cancelled at ts_ms 1706702400000 = 2024-01-31 12:00: + P13M =
        # 2025-02-31 -> 02-28 (not 2022-11-30 + P13M = 2023-12-30)
        line("2025-02-28T12:00:00Z", "2025-02-28T12:00:00Z", "delete", "payment_methods", 3,
             "customer:1", ["payment_management"]),
        # lines 60, 135: consent basis, the person objects at ts_ms 1660572000000 =
        # 2022-08-15 14:00 (consent never withdrawn): at once
        line("2022-08-15T14:00:00Z", "2022-08-15T14:00:00Z", "delete", "marketing_contacts", 5,
             "email:uma@example.org", ["prospecting", "mailing_lists"]),
    ]  # fmt: skip
    for command in expected:
        assert command in commands
    for table, key in (("public.satisfaction_surveys", 1), ("public.call_recordings", 3)):
        assert sum(c["table"] == table and c["key"] == {"id": key} for c in commands) == 1
    # customer 4: the 2021 delete (2026-05-31) was cancelled by the reopening; the new one
    # (2023-10-31 + P5Y = 2028-10-31) is after --until
    assert [c["action"] for c in commands if c["table"] == "public.customers"
            and c["key"] == {"id": 4}] == ["archive", "archive"]  # fmt: skip
    # support ticket 3 (line 52, last message 2020-08-01), deleted by the business on
    # 2020-12-01 (line 65, then its tombstone) before its archive: no command ever
    assert not [c for c in commands if c["table"] == "public.support_tickets" and
                c["key"] == {"id": 3}]  # fmt: skip
