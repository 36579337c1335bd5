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


def test_internal_topics_have_8_partitions_unless_set_to_at_least_1() -> None:
    assert Settings().internal_partitions == 8
    assert Settings.from_env({"LETHE_INTERNAL_PARTITIONS": "12"}).internal_partitions == 12
    with pytest.raises(ConfigError, match="LETHE_INTERNAL_PARTITIONS=0 is less than 1"):
        Settings.from_env({"LETHE_INTERNAL_PARTITIONS": "0"})
    with pytest.raises(ConfigError, match=r"LETHE_INTERNAL_PARTITIONS='eight'.*such as 8"):
        Settings.from_env({"LETHE_INTERNAL_PARTITIONS": "eight"})


def test_the_consumer_reads_4_mib_per_fetch_without_a_poll_limit_unless_set() -> None:
    settings = Settings()
    assert (settings.consumer_max_fetch_bytes, settings.max_poll_records) == (4194304, None)
    assert settings.stream_buffer_maxsize == 4096
    tuned = Settings.from_env(
        {
            "LETHE_CONSUMER_MAX_FETCH_BYTES": "8388608",
            "LETHE_MAX_POLL_RECORDS": "5000",
            "LETHE_STREAM_BUFFER_MAXSIZE": "32768",
        }
    )
    assert (tuned.consumer_max_fetch_bytes, tuned.max_poll_records) == (8388608, 5000)
    assert tuned.stream_buffer_maxsize == 32768
    with pytest.raises(ConfigError, match="LETHE_MAX_POLL_RECORDS=0 is less than 1"):
        Settings.from_env({"LETHE_MAX_POLL_RECORDS": "0"})
    with pytest.raises(ConfigError, match=r"LETHE_MAX_POLL_RECORDS='many' is not a whole"):
        Settings.from_env({"LETHE_MAX_POLL_RECORDS": "many"})
    with pytest.raises(ConfigError, match="LETHE_STREAM_BUFFER_MAXSIZE=-1 is less than 1"):
        Settings.from_env({"LETHE_STREAM_BUFFER_MAXSIZE": "-1"})


def test_rocksdb_memtables_are_256_kib_unless_set_to_at_least_64_kib() -> None:
    assert Settings().rocksdb_write_buffer_bytes == 262144
    env = {"LETHE_ROCKSDB_WRITE_BUFFER_BYTES": "8388608"}
    assert Settings.from_env(env).rocksdb_write_buffer_bytes == 8388608
    env = {"LETHE_ROCKSDB_WRITE_BUFFER_BYTES": "65536"}
    assert Settings.from_env(env).rocksdb_write_buffer_bytes == 65536
    with pytest.raises(
        ConfigError,
        match=r"LETHE_ROCKSDB_WRITE_BUFFER_BYTES=65535 is less than RocksDB's smallest memtable "
        r"\(65536 bytes\); set a number of bytes such as 262144",
    ):
        Settings.from_env({"LETHE_ROCKSDB_WRITE_BUFFER_BYTES": "65535"})
    with pytest.raises(
        ConfigError, match=r"LETHE_ROCKSDB_WRITE_BUFFER_BYTES='8MiB' is not a whole number"
    ):
        Settings.from_env({"LETHE_ROCKSDB_WRITE_BUFFER_BYTES": "8MiB"})


ACCELERATED = {
    "LETHE_CLOCK": "accelerated",
    "LETHE_CLOCK_WALL_START": "2026-11-30T09:00:00Z",
    "LETHE_CLOCK_SPEED": "86400",
}


def test_the_clock_is_the_wall_clock_unless_set() -> None:
    assert Settings.from_env({}).clock.describe() == "wall clock"


def test_an_accelerated_clock_starts_at_its_wall_start_unless_told_otherwise() -> None:
    assert Settings.from_env(ACCELERATED).clock.describe() == (
        "accelerated clock: 2026-11-30T09:00:00Z at wall 2026-11-30T09:00:00Z, speed 86400"
    )
    shifted = Settings.from_env({**ACCELERATED, "LETHE_CLOCK_START": "2026-01-01"})
    assert shifted.clock.describe() == (
        "accelerated clock: 2026-01-01T00:00:00Z at wall 2026-11-30T09:00:00Z, speed 86400"
    )


def test_a_manual_clock_starts_at_its_start() -> None:
    settings = Settings.from_env({"LETHE_CLOCK": "manual", "LETHE_CLOCK_START": "2026-01-01"})
    assert settings.clock.describe() == (
        "manual clock: 2026-01-01T00:00:00Z (its start, never advanced)"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LETHE_CLOCK": "fast"}, "LETHE_CLOCK='fast' is not a clock mode; set it to wall"),
        ({**ACCELERATED, "LETHE_CLOCK_SPEED": "0"}, "LETHE_CLOCK_SPEED='0' is not more than 0"),
        ({**ACCELERATED, "LETHE_CLOCK_SPEED": "x2"}, "LETHE_CLOCK_SPEED='x2' is not a number"),
        (
            {**ACCELERATED, "LETHE_CLOCK_WALL_START": "now"},
            "LETHE_CLOCK_WALL_START='now' is not an ISO-8601 instant; write it like 2026-01-01",
        ),
        (
            {"LETHE_CLOCK": "accelerated", "LETHE_CLOCK_SPEED": "86400"},
            "LETHE_CLOCK=accelerated needs LETHE_CLOCK_WALL_START",
        ),
        (
            {"LETHE_CLOCK": "accelerated", "LETHE_CLOCK_WALL_START": "2026-11-30T09:00:00Z"},
            "LETHE_CLOCK=accelerated needs LETHE_CLOCK_SPEED",
        ),
        ({"LETHE_CLOCK": "manual"}, "LETHE_CLOCK=manual needs LETHE_CLOCK_START"),
        (
            {"LETHE_CLOCK_SPEED": "86400"},
            "LETHE_CLOCK_SPEED is set but LETHE_CLOCK is wall; .* unset LETHE_CLOCK_SPEED",
        ),
        (
            {"LETHE_CLOCK": "manual", "LETHE_CLOCK_START": "2026-01-01", "LETHE_CLOCK_SPEED": "2"},
            "LETHE_CLOCK_SPEED is set but LETHE_CLOCK is manual",
        ),
    ],
)
def test_a_clock_setting_that_makes_no_clock_names_its_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_the_enforcer_sweeps_every_second_unless_set_to_more_than_0() -> None:
    assert Settings().tick_interval == 1.0
    assert Settings.from_env({"LETHE_TICK_INTERVAL": "0.25"}).tick_interval == 0.25
    with pytest.raises(ConfigError, match=r"LETHE_TICK_INTERVAL=0\.0 is not more than 0"):
        Settings.from_env({"LETHE_TICK_INTERVAL": "0"})
    with pytest.raises(ConfigError, match=r"LETHE_TICK_INTERVAL='soon'.*such as 1"):
        Settings.from_env({"LETHE_TICK_INTERVAL": "soon"})


def test_a_dead_worker_is_taken_over_after_60_s_unless_set_within_the_brokers_bounds() -> None:
    assert Settings().session_timeout == 45.0
    assert Settings.from_env({"LETHE_SESSION_TIMEOUT": "10"}).session_timeout == 10.0
    with pytest.raises(ConfigError, match=r"LETHE_SESSION_TIMEOUT=5\.0 is outside .*\(6 to 1800 s"):
        Settings.from_env({"LETHE_SESSION_TIMEOUT": "5"})
    with pytest.raises(ConfigError, match=r"LETHE_SESSION_TIMEOUT=3600\.0 is outside"):
        Settings.from_env({"LETHE_SESSION_TIMEOUT": "3600"})


def test_the_worker_enforces_unless_switched_off() -> None:
    assert Settings.from_env({}).enforce is True
    assert Settings.from_env({"LETHE_ENFORCE": "off"}).enforce is False
    assert Settings.from_env({"LETHE_ENFORCE": "On"}).enforce is True
    with pytest.raises(ConfigError, match=r"LETHE_ENFORCE='maybe' is neither on nor off"):
        Settings.from_env({"LETHE_ENFORCE": "maybe"})


def test_the_confirm_timeout_is_wall_seconds_made_enforcement_time_by_the_clock_mode():
    assert Settings().confirm_timeout == 300.0
    assert Settings().confirm_after == 300_000_000  # wall: the same 300 s, in µs
    wall = Settings.from_env({"LETHE_CONFIRM_TIMEOUT": "2.5"})
    assert wall.confirm_after == 2_500_000
    accelerated = Settings.from_env(
        {
            "LETHE_CONFIRM_TIMEOUT": "2",
            "LETHE_CLOCK": "accelerated",
            "LETHE_CLOCK_WALL_START": "2026-11-30T09:00:00Z",
            "LETHE_CLOCK_SPEED": "86400",
        }
    )
    assert accelerated.confirm_after == 2 * 86_400 * 1_000_000  # two wall seconds: two days
    manual = Settings.from_env(
        {
            "LETHE_CONFIRM_TIMEOUT": "60",
            "LETHE_CLOCK": "manual",
            "LETHE_CLOCK_START": "2026-01-01T00:00:00Z",
        }
    )
    assert manual.confirm_after == 60_000_000
    with pytest.raises(ConfigError, match=r"LETHE_CONFIRM_TIMEOUT=0\.0 is not more than 0"):
        Settings.from_env({"LETHE_CONFIRM_TIMEOUT": "0"})
    with pytest.raises(ConfigError, match=r"LETHE_CONFIRM_TIMEOUT='later'"):
        Settings.from_env({"LETHE_CONFIRM_TIMEOUT": "later"})
