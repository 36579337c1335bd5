"""The alert rules (config/prometheus/rules/lethe.yml) as Prometheus loads them: `promtool check
rules` accepts them, and each alert's unit tests (config/prometheus/tests/, run by `promtool
test rules`) show it firing when it should and silent when it should not. Every alert has a
summary, a description and a runbook section in docs/runbook.md."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "prometheus" / "rules" / "lethe.yml"
RULE_TESTS = sorted((ROOT / "config" / "prometheus" / "tests").glob("*.test.yml"))
RUNBOOK = ROOT / "docs" / "runbook.md"

promtool = pytest.mark.usefixtures("promtool_installed")
"""promtool comes with Debian's prometheus package (`lethe stack up` installs it); without
it these tests fail, never skip."""


def alerts() -> list[dict[str, object]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


def run(*args: str) -> str:
    done = subprocess.run(["promtool", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@promtool
def test_promtool_accepts_the_rules():
    assert "SUCCESS: 12 rules found" in run("check", "rules", str(RULES))


@promtool
@pytest.mark.parametrize("tests", RULE_TESTS, ids=lambda path: path.name)
def test_each_alert_fires_when_it_should_and_is_silent_otherwise(tests: Path):
    run("test", "rules", str(tests))


def test_every_alert_has_its_unit_tests_with_a_firing_and_a_silent_case():
    tested: dict[str, list[bool]] = {}
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                tested.setdefault(check["alertname"], []).append(bool(check["exp_alerts"]))
    names = {str(rule["alert"]) for rule in alerts()}
    assert names == {
        "LetheBacklogGrowing", "LetheOverdueTooLong", "LetheCommandsUnconfirmed",
        "LetheConsumerLagHigh", "LetheSourceSilent", "LetheDeadLetters", "LetheUnclassifiedTable",
        "LetheWorkerDown", "LetheUnreadablePartition", "LetheWorkerRestarting",
        "LetheConnectorTaskFailed", "LetheConnectUnreachable",
    }  # fmt: skip
    for name in names:
        assert sorted(set(tested.get(name, []))) == [False, True], name


def test_every_alert_says_what_happened_and_links_its_runbook_section():
    headings = {
        match.group(1).lower()
        for match in re.finditer(r"^## (\w+)\s*$", RUNBOOK.read_text(), flags=re.MULTILINE)
    }
    for rule in alerts():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert annotations["summary"] and annotations["description"], rule["alert"]
        anchor = str(rule["alert"]).lower()
        assert annotations["runbook"] == f"docs/runbook.md#{anchor}"
        assert anchor in headings, f"docs/runbook.md has no section ## {rule['alert']}"
