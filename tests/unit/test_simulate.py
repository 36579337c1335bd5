"""`lethe simulate`: the fixed command-line interface others script against."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lethe.cli import main
from tests.unit.conftest import DEMO_POLICY, ROOT, record, tombstone

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
     "fields": ["customer_id", "respondent_email", "submitted_at"]},
]  # fmt: skip


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(STREAM) + "\n", encoding="utf-8")
    return path


def _lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_commands_in_order_and_bad_lines_reported(events: Path, capsys: pytest.CaptureFixture):
    code = main(["simulate", "--policy", str(DEMO_POLICY), "--events", str(events),
                 "--until", "2025-06-01T00:00:00Z"])  # fmt: skip
    out, err = capsys.readouterr()
    assert _lines(out) == EXPECTED
    # exact key order of each output line is part of the interface
    assert list(json.loads(out.splitlines()[0])) == [
        "issued_at", "due_at", "action", "table", "key", "subject", "purposes"
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
