"""Settings come from the LETHE_* variables and the working directory, not the installed code."""

from __future__ import annotations

from pathlib import Path

import pytest

from lethe.errors import ConfigError
from lethe.settings import Settings


def test_paths_default_to_folders_of_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.stack_dir == tmp_path / ".stack"
    assert settings.data_dir == tmp_path / ".stack" / "worker"
    assert settings.cache_dir == tmp_path / ".cache"
    assert settings.config_dir == tmp_path / "config"
    assert settings.policy_path == tmp_path / "config" / "policy.yaml"


def test_relative_and_home_paths_in_variables_become_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    settings = Settings.from_env(
        {"LETHE_STACK_DIR": "run/stack", "LETHE_POLICY": "~/policy.yaml", "LETHE_DATA_DIR": ""}
    )
    assert settings.stack_dir == tmp_path / "run" / "stack"
    assert settings.policy_path == tmp_path / "home" / "policy.yaml"
    assert settings.data_dir == tmp_path / ".stack" / "worker", "an empty variable is unset"


def test_a_malformed_port_names_its_variable() -> None:
    with pytest.raises(ConfigError, match="LETHE_WEB_PORT='sixty'"):
        Settings.from_env({"LETHE_WEB_PORT": "sixty"})
