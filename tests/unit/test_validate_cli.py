"""`lethe validate [POLICY]`: exit codes and output, in-process and as the installed command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lethe.cli import main

REPO = Path(__file__).resolve().parents[2]
LETHE = Path(sys.executable).parent / "lethe"
"""The console script installed next to the interpreter running the tests."""
ERROR_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<message>.+) \((?P<hint>.+)\)$")

VALID_SUMMARY = "config/policy.yaml: valid: 24 purposes, 18 sources, 21 rules, 7 parameters\n"

BROKEN = """\
policy: broken
topic_prefix: shop
purposes:
  accounting:
    row: 12
    section: "4"
    title: accounting
    legal_basis: [6.1c]
    data_categories: [orders]
    recipients: [finance]
    retention: 10 years
sources:
  public.orders:
    primary_key: [id]
    subject: [{kind: customer, column: customer_id}]
    columns: {id: bigint, customer_id: bigint, ordered_at: timestamptz}
    rules:
      - purpose: acounting
        stages:
          - {action: delete, due: {after: P10Y, from: ordered_on}}
          - {action: anonymise, due: {after: P1Y, from: ordered_at}, fields: [id]}
"""


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("LETHE_POLICY", raising=False)


def test_shipped_policy_is_valid_one_line(
    in_repo: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "config/policy.yaml"]) == 0
    out, err = capsys.readouterr()
    assert out == VALID_SUMMARY
    assert err == ""


def test_default_path_is_the_shipped_policy(
    in_repo: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate"]) == 0
    assert capsys.readouterr().out == VALID_SUMMARY


def test_default_path_follows_lethe_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN)
    monkeypatch.setenv("LETHE_POLICY", str(broken))
    assert main(["validate"]) == 1
    assert str(broken) in capsys.readouterr().err


def test_every_error_on_stderr_with_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("broken.yaml").write_text(BROKEN)
    assert main(["validate", "broken.yaml"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    *errors, last = err.splitlines()
    parsed = [ERROR_LINE.match(line) for line in errors]
    assert all(parsed), errors
    assert [(m["file"], int(m["line"])) for m in parsed if m] == [
        ("broken.yaml", 18),  # unknown purpose 'acounting'
        ("broken.yaml", 20),  # column 'ordered_on' the table lacks
        ("broken.yaml", 21),  # anonymising the primary key
    ]
    assert "'acounting'" in errors[0] and "did you mean 'accounting'" in errors[0]
    assert "'ordered_on'" in errors[1]
    assert "primary key" in errors[2]
    assert last == "lethe validate: 3 errors in broken.yaml; nothing loaded"


def test_missing_file(in_repo: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["validate", str(missing)]) == 1
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith(f"{missing}:1: no such policy file")


def test_yaml_syntax_error(
    in_repo: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("policy: x\npurposes:\n  a: [1, 2\nsources: {}\n")
    assert main(["validate", str(bad)]) == 1
    first = capsys.readouterr().err.splitlines()[0]
    match = ERROR_LINE.match(first)
    assert match and match["file"] == str(bad)
    assert "YAML syntax error" in match["message"] and "line 3" in match["message"]


def test_not_utf8(in_repo: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("policy: x\ntopic_prefix: caf\xe9\n".encode("latin-1"))
    assert main(["validate", str(bad)]) == 1
    assert capsys.readouterr().err.startswith(f"{bad}:2: the policy file is not UTF-8")


def test_installed_command_exit_codes(tmp_path: Path) -> None:
    assert LETHE.exists(), f"{LETHE} is missing: install the project (pip install -e .)"
    ok = subprocess.run(
        [str(LETHE), "validate", "config/policy.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (ok.returncode, ok.stdout, ok.stderr) == (0, VALID_SUMMARY, "")
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN)
    failed = subprocess.run(
        [str(LETHE), "validate", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.startswith(f"{broken}:18: rule of public.orders names unknown purpose")


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- policy: x\n- sources: {}\n", "a list"), ("just words\n", "a string")],
)
def test_a_file_that_is_not_a_mapping_says_how_to_fix_it(
    in_repo: None, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, kind: str
) -> None:
    bad = tmp_path / "top.yaml"
    bad.write_text(text)
    assert main(["validate", str(bad)]) == 1
    first, last = capsys.readouterr().err.splitlines()
    match = ERROR_LINE.match(first)
    assert match, first
    assert (match["file"], match["line"]) == (str(bad), "1")
    assert match["message"] == f"the policy file must be a mapping, not {kind}"
    assert "policy:, topic_prefix:, purposes: and sources:" in match["hint"]
    assert last == f"lethe validate: 1 error in {bad}; nothing loaded"
