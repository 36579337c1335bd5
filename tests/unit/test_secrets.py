"""The database password shows in no repr of the settings and in no log of the stack."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from lethe.settings import Secret, Settings
from lethe.stack import postgres
from lethe.stack.postgres import Postgres

PASSWORD = "it's a s3cret \\ pass"


def test_settings_print_no_password() -> None:
    settings = Settings.from_env({"LETHE_PG_PASSWORD": PASSWORD})
    for text in (repr(settings), str(settings), f"{settings}", f"{settings.pg_password}"):
        assert "s3cret" not in text
    assert "s3cret" not in repr(Settings())  # the default password is hidden too
    assert "lethe" not in repr(Settings().pg_password)


def test_the_dsn_hands_the_whole_password_to_libpq() -> None:
    settings = Settings(pg_user="demo user", pg_password=Secret(PASSWORD))
    parsed = psycopg.conninfo.conninfo_to_dict(settings.pg_dsn)
    assert parsed["password"] == PASSWORD
    assert parsed["user"] == "demo user"
    assert parsed["dbname"] == "hosting"


FAKE_PSQL = """#!/bin/sh
cat > /dev/null
printf 'role=%s pg=%s\\n' "${LETHE_ROLE_PASSWORD-}" "${PGPASSWORD-}" >> "SEEN"
echo 0
"""


def test_bootstrap_hands_psql_the_password_in_its_environment_not_its_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run` writes each psql command line to postgres.log: the password must not be on it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "seen"
    psql = bin_dir / "psql"
    psql.write_text(FAKE_PSQL.replace("SEEN", str(seen)))
    psql.chmod(0o755)
    monkeypatch.setattr(postgres, "postgres_bin_dir", lambda: bin_dir)
    monkeypatch.setattr(postgres, "_server_user", lambda: None)
    monkeypatch.setattr(Postgres, "_as_server_user", lambda self: [])
    settings = Settings(stack_dir=tmp_path / "stack", pg_password=Secret(PASSWORD))
    part = Postgres(settings)

    part.bootstrap()  # the fake psql says the database is missing: create it and load the SQL

    log = part.log_file.read_text()
    # role, exists?, create database, three loads (schema, seed rows, the heartbeat table)
    assert log.count("=== postgres") == 6, log
    assert "s3cret" not in log
    calls = seen.read_text().splitlines()
    assert calls[0] == f"role={PASSWORD} pg=", "the role's password comes from the environment"
    assert calls[-3:] == [f"role= pg={PASSWORD}"] * 3, "the loads log in with PGPASSWORD"
