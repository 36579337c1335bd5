"""`lethe simulate` under the enforcement clock of the LETHE_CLOCK* settings (hand-worked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lethe.cli import main
from tests.unit.conftest import DEMO_POLICY, checked_identity, cmd, record

# A ticket whose last message is at the first event, and a survey submitted ten wall
# minutes later: 600 wall seconds, 600 days at a day a second.
STREAM = [
    record("support_tickets", "c", "2024-01-01T00:00:00Z",
           {"id": 7, "customer_id": 42, "last_message_at": "2024-01-01T00:00:00Z"}),
    record("satisfaction_surveys", "c", "2024-01-01T00:10:00Z",
           {"id": 3, "customer_id": 42, "submitted_at": "2024-01-01T00:10:00Z"}),
]  # fmt: skip

A_DAY_A_SECOND = {
    "LETHE_CLOCK": "accelerated",
    "LETHE_CLOCK_START": "2024-01-01T00:00:00Z",
    "LETHE_CLOCK_WALL_START": "2024-01-01T00:00:00Z",
    "LETHE_CLOCK_SPEED": "86400",
}
MANUAL = {"LETHE_CLOCK": "manual", "LETHE_CLOCK_START": "2024-01-01T00:00:00Z"}
SURVEY_FIELDS = ["customer_id", "respondent_email", "comments", "submitted_at"]


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(STREAM) + "\n", encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def no_clock_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("LETHE_CLOCK", "LETHE_CLOCK_START", "LETHE_CLOCK_WALL_START",
                     "LETHE_CLOCK_SPEED"):  # fmt: skip
        monkeypatch.delenv(variable, raising=False)


def simulate(
    events: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, list[dict[str, object]], str]:
    code = main(["simulate", "--policy", str(DEMO_POLICY), "--events", str(events), *extra])
    out, err = capsys.readouterr()
    return code, [checked_identity(json.loads(line)) for line in out.splitlines()], err


def test_on_the_wall_clock_nothing_is_due_ten_minutes_in(
    events: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert simulate(events, capsys) == (0, [], "")


def test_a_day_a_second_makes_the_year_old_ticket_due_ten_wall_minutes_in(
    events: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The survey comes at 2024-01-01 + 600 days = 2025-08-23 on the enforcement clock: the
    ticket's archive (2025-01-01) was issued before it, and the survey, due a year after its
    wall-time submitted_at, is overdue when first seen."""
    for variable, value in A_DAY_A_SECOND.items():
        monkeypatch.setenv(variable, value)
    assert simulate(events, capsys) == (
        0,
        [
            cmd("2025-01-01T00:00:00Z", "2025-01-01T00:00:00Z", "archive", "support_tickets", 7,
                "customer:42", ["support"]),
            cmd("2025-08-23T00:00:00Z", "2025-01-01T00:10:00Z", "anonymise",
                "satisfaction_surveys", 3, "customer:42", ["satisfaction_surveys"],
                SURVEY_FIELDS),
        ],
        "",
    )  # fmt: skip


def test_until_is_an_instant_of_the_enforcement_clock(
    events: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable, value in A_DAY_A_SECOND.items():
        monkeypatch.setenv(variable, value)
    code, commands, _ = simulate(events, capsys, "--until", "2029-01-01T00:00:00Z")
    assert code == 0
    assert commands[-1] == cmd(
        "2029-01-01T00:00:00Z", "2029-01-01T00:00:00Z", "delete", "support_tickets", 7,
        "customer:42", ["support"],
    )  # fmt: skip
    code, commands, err = simulate(events, capsys, "--until", "2025-01-01T00:00:00Z")
    assert (code, commands) == (2, [])
    assert "is before the last event (2025-08-23T00:00:00Z)" in err


def test_the_manual_clock_moves_at_the_listed_advances(
    events: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """At wall 00:05 the clock goes to 2025-02-01: the ticket's archive is issued; the survey
    (wall 00:10) is applied at 2025-02-01, overdue; the advance at 00:20 issues nothing more."""
    for variable, value in MANUAL.items():
        monkeypatch.setenv(variable, value)
    advances = tmp_path / "advances.txt"
    advances.write_text(
        "# wall time          advanced to\n"
        "2024-01-01T00:05:00Z 2025-02-01T00:00:00Z\n"
        "\n"
        "2024-01-01T00:20:00Z 2025-03-01T00:00:00Z  # the last one\n",
        encoding="utf-8",
    )
    assert simulate(events, capsys, "--clock-advances", str(advances)) == (
        0,
        [
            cmd("2025-01-01T00:00:00Z", "2025-01-01T00:00:00Z", "archive", "support_tickets", 7,
                "customer:42", ["support"]),
            cmd("2025-02-01T00:00:00Z", "2025-01-01T00:10:00Z", "anonymise",
                "satisfaction_surveys", 3, "customer:42", ["satisfaction_surveys"],
                SURVEY_FIELDS),
        ],
        "",
    )  # fmt: skip


def test_without_advances_the_manual_clock_stands_at_its_start(
    events: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable, value in MANUAL.items():
        monkeypatch.setenv(variable, value)
    assert simulate(events, capsys) == (0, [], "")
    code, commands, _ = simulate(events, capsys, "--until", "2025-01-01T00:00:00Z")
    assert (code, [command["action"] for command in commands]) == (0, ["archive"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2024-01-01T00:05:00Z\n", "advances.txt:1: write `WALL_INSTANT INSTANT`"),
        ("2024-01-01T00:05:00Z soon\n", "advances.txt:1: 'soon' is not an ISO-8601 instant"),
        (
            "2024-01-01T00:05:00Z 2025-02-01\n2024-01-01T00:06:00Z 2025-01-01\n",
            "advances.txt:2: the clock stands at 2025-02-01T00:00:00Z; it never moves back",
        ),
        (
            "2024-01-01T00:05:00Z 2025-02-01\n2024-01-01T00:04:00Z 2025-03-01\n",
            "advances.txt:2: wall time 2024-01-01T00:04:00Z is before the line above's",
        ),
    ],
)
def test_a_bad_advances_file_names_its_line(
    events: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    text: str,
    message: str,
) -> None:
    for variable, value in MANUAL.items():
        monkeypatch.setenv(variable, value)
    advances = tmp_path / "advances.txt"
    advances.write_text(text, encoding="utf-8")
    code, commands, err = simulate(events, capsys, "--clock-advances", str(advances))
    assert (code, commands) == (2, [])
    assert message in err


def test_advances_are_for_the_manual_clock_only(
    events: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    advances = tmp_path / "advances.txt"
    advances.write_text("2024-01-01T00:05:00Z 2025-02-01T00:00:00Z\n", encoding="utf-8")
    code, commands, err = simulate(events, capsys, "--clock-advances", str(advances))
    assert (code, commands) == (2, [])
    assert "--clock-advances is for the manual clock, but LETHE_CLOCK is wall" in err
