"""Installing Debian packages for the stack leaves no distro service on the stack's ports."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lethe.stack.install import disable_service, services_held_back


def test_apt_runs_with_services_held_back_and_the_policy_goes_afterwards(tmp_path: Path) -> None:
    policy = tmp_path / "policy-rc.d"
    with services_held_back(policy):
        assert os.access(policy, os.X_OK)
        assert subprocess.run([str(policy), "prometheus", "start"], check=False).returncode == 101
    assert not policy.exists()


def test_the_policy_goes_also_when_apt_fails(tmp_path: Path) -> None:
    policy = tmp_path / "policy-rc.d"
    with pytest.raises(RuntimeError), services_held_back(policy):
        raise RuntimeError("apt-get failed")
    assert not policy.exists()


def test_a_policy_the_machine_has_is_left_alone(tmp_path: Path) -> None:
    policy = tmp_path / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 0\n")
    with services_held_back(policy):
        pass
    assert policy.read_text() == "#!/bin/sh\nexit 0\n"


def test_an_enabled_running_distro_service_is_disabled_and_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stand-in systemctl that says the unit is enabled and active records what it is told."""
    calls = tmp_path / "calls"
    fake = tmp_path / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexit 0\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")

    disable_service("prometheus.service")

    assert calls.read_text().splitlines() == [
        "is-enabled --quiet prometheus.service",
        "disable --quiet prometheus.service",
        "is-active --quiet prometheus.service",
        "stop prometheus.service",
    ]
    out = capsys.readouterr().out
    assert "disabled prometheus.service" in out
    assert "stopped prometheus.service" in out
