"""PostgreSQL: Lethe's own cluster, holding the demo database `hosting`.

The cluster (data, socket, server log) lives in `.stack/postgres`. PostgreSQL refuses
to run as root, so as root it belongs to the `postgres` system user and every server
command runs through `runuser -u postgres --`. That user must be able to reach
`.stack/`; when it cannot (a clone under `/root`, mode 700), the cluster lives in the
postgres user's home instead, `/var/lib/postgresql/lethe-<hash of the stack dir>`,
and no permission outside the stack's own directories is changed. `lethe stack up`
and `status` print where the cluster is; `lethe stack down --wipe` deletes it there too.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import stat
from pathlib import Path

from lethe.errors import StackError
from lethe.settings import Settings
from lethe.stack.base import Part, PartStatus
from lethe.stack.install import postgres_bin_dir
from lethe.stack.process import run, wait_until

SERVER_USER = "postgres"
ROLE_PASSWORD_VARIABLE = "LETHE_ROLE_PASSWORD"
"""The environment variable that hands the demo role's password to psql (`\\getenv`, psql 15+)."""


class Postgres(Part):
    """The cluster. Healthy when the demo user can log into the demo database."""

    name = "postgres"
    start_timeout = 60.0

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        server = _server_user() if os.geteuid() == 0 else None
        self.dir = cluster_home(settings.stack_dir, server)
        self.relocated = self.dir != settings.stack_dir / self.name
        if self.relocated:
            self.log_file = self.dir / "postgres.log"
        self.data_dir = self.dir / "data"
        self.socket_dir = self.dir / "run"
        demo = settings.config_dir / "demo"
        self.demo_sql = (demo / "hosting-schema.sql", demo / "hosting-data.sql")
        self.heartbeat_sql = demo / "source-heartbeat.sql"

    def status(self) -> PartStatus:
        found = super().status()
        return PartStatus(
            found.name,
            found.running,
            found.healthy,
            found.pid,
            found.endpoint,
            found.log_file,
            data_dir=self.data_dir,
        )

    @property
    def host(self) -> str:
        return self.settings.pg_host

    @property
    def port(self) -> int:
        return self.settings.pg_port

    def _bin(self, tool: str) -> str:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise StackError("PostgreSQL server binaries not found under /usr/lib/postgresql")
        return str(bin_dir / tool)

    def _as_server_user(self) -> list[str]:
        return ["runuser", "-u", SERVER_USER, "--"] if os.geteuid() == 0 else []

    def pid(self) -> int | None:
        from lethe.stack.process import pid_alive

        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def healthy(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.settings.pg_dsn, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def accepting(self) -> bool:
        done = _quiet_run([self._bin("pg_isready"), "-q", "-h", self.host, "-p", str(self.port)])
        return done == 0

    def up(self) -> bool:
        started = False
        if self.pid() is None:
            self._refuse_foreign_port()
            self.start()
            started = True
        wait_until(
            self.accepting,
            timeout=self.start_timeout,
            what=self.name,
            log_file=self.log_file,
            alive=lambda: self.pid() is not None,
        )
        self.bootstrap()
        self.wait_healthy()
        return started

    def _refuse_foreign_port(self) -> None:
        from lethe.stack.process import port_open

        if port_open(self.host, self.port):
            raise StackError(
                f"postgres: port {self.endpoint} is taken by a server this stack did not start "
                f"(e.g. Debian's own cluster: `pg_ctlcluster <version> main stop`); "
                f"stop it or set LETHE_PG_PORT"
            )

    def start(self) -> None:
        owner = _server_uid_gid() if os.geteuid() == 0 else None
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.touch()
        if owner is not None:
            for path in (self.dir, self.socket_dir, self.log_file):
                os.chown(path, *owner)
        if not (self.data_dir / "PG_VERSION").exists():
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir.mkdir(mode=0o700)
            if owner is not None:
                os.chown(self.data_dir, *owner)
            run(
                [
                    *self._as_server_user(),
                    self._bin("initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--auth-local=peer",
                    "--auth-host=scram-sha-256",
                ],
                what="postgres initdb",
                cwd=Path("/"),
                log_file=self.log_file,
                timeout=120,
            )
        conf = self.data_dir / "postgresql.conf"
        include = "include_if_exists = 'lethe.conf'\n"
        if include not in conf.read_text():
            with conf.open("a") as handle:
                handle.write("\n" + include)
        lethe_conf = self.data_dir / "lethe.conf"
        lethe_conf.write_text(
            "# Written by `lethe stack up`: a local, throwaway demo cluster.\n"
            f"listen_addresses = '{self.host}'\n"
            f"port = {self.port}\n"
            f"unix_socket_directories = '{self.socket_dir}'\n"
            "wal_level = logical\n"
            "max_wal_senders = 10\n"
            "max_replication_slots = 10\n"
            "max_connections = 100\n"
            "shared_buffers = 128MB\n"
            "fsync = off\n"
            "synchronous_commit = off\n"
            "full_page_writes = off\n"
            "timezone = 'UTC'\n"
            "log_timezone = 'UTC'\n"
        )
        if owner is not None:
            os.chown(lethe_conf, *owner)
        run(
            [
                *self._as_server_user(),
                self._bin("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(int(self.start_timeout)),
                "start",
            ],
            what="postgres start (pg_ctl)",
            cwd=Path("/"),
            timeout=self.start_timeout + 10,
        )

    def _superuser_psql(
        self, *args: str, sql: str | None = None, env: dict[str, str] | None = None
    ) -> str:
        return run(
            [
                *self._as_server_user(),
                self._bin("psql"),
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-tA",
                *args,
            ],
            what="postgres bootstrap (psql as postgres)",
            cwd=Path("/"),
            log_file=self.log_file,
            env=None if env is None else {**os.environ, **env},
            input_text=sql,
            timeout=120,
        )

    def bootstrap(self) -> None:
        """Create the demo role and database when missing; load schema and seed rows once;
        create Lethe's source heartbeat table when missing (`source-heartbeat.sql`, on every
        start, so a database made before it gets it too).

        The password reaches psql in the environment (ROLE_PASSWORD_VARIABLE, PGPASSWORD),
        never on its command line, which `run` writes to the log.
        """
        s = self.settings
        password = s.pg_password.reveal()
        self._superuser_psql(
            "-d",
            "postgres",
            "-v",
            f"role={s.pg_user}",
            env={ROLE_PASSWORD_VARIABLE: password},
            sql=(
                f"\\getenv password {ROLE_PASSWORD_VARIABLE}\n"
                "SELECT format('CREATE ROLE %I', :'role')"
                " WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \\gexec\n"
                "SELECT format('ALTER ROLE %I LOGIN REPLICATION PASSWORD %L', :'role', :'password')"
                " \\gexec\n"
            ),
        )
        exists = self._superuser_psql(
            "-d",
            "postgres",
            "-v",
            f"db={s.pg_database}",
            sql="SELECT count(*) FROM pg_database WHERE datname = :'db';\n",
        ).strip()
        if exists != "1":
            self._create_database()
        self._load(self.heartbeat_sql)

    def _create_database(self) -> None:
        """Create the demo database; load its schema and seed rows."""
        s = self.settings
        self._superuser_psql(
            "-d",
            "postgres",
            "-v",
            f"db={s.pg_database}",
            "-v",
            f"role={s.pg_user}",
            sql="SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role') \\gexec\n",
        )
        for sql_file in self.demo_sql:
            self._load(sql_file)

    def _load(self, sql_file: Path) -> None:
        """Run `sql_file` in the demo database as the demo role."""
        s = self.settings
        run(
            [
                self._bin("psql"),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                s.pg_user,
                "-d",
                s.pg_database,
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-f",
                str(sql_file),
            ],
            what=f"postgres load {sql_file.name}",
            log_file=self.log_file,
            env={**os.environ, "PGPASSWORD": s.pg_password.reveal()},
            timeout=120,
        )

    def stop(self) -> bool:
        if self.pid() is None:
            return False
        try:
            run(
                [
                    *self._as_server_user(),
                    self._bin("pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    "30",
                    "stop",
                ],
                what="postgres stop (pg_ctl)",
                cwd=Path("/"),
                timeout=45,
            )
        except StackError:
            pid = self.pid()
            if pid is not None:
                from lethe.stack.process import stop_pid

                stop_pid(pid, timeout=5)
        return True


def _server_user() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        return None


def _server_uid_gid() -> tuple[int, int]:
    entry = _server_user()
    if entry is None:
        raise StackError(
            f"no `{SERVER_USER}` system user (it comes with Debian's postgresql package): "
            "install it with `apt-get install -y postgresql`"
        )
    return entry.pw_uid, entry.pw_gid


def cluster_home(stack_dir: Path, server: pwd.struct_passwd | None) -> Path:
    """Where the cluster lives: `<stack_dir>/postgres`, or, when the server runs as `server`
    and that user cannot reach `stack_dir` (or a cluster is already there), a folder of
    its own in the server user's home."""
    own = stack_dir / "postgres"
    if server is None:
        return own
    tag = hashlib.sha256(str(stack_dir.resolve()).encode()).hexdigest()[:12]
    home = Path(server.pw_dir or "/var/lib/postgresql") / f"lethe-{tag}"
    if (home / "data" / "PG_VERSION").exists() or not can_reach(stack_dir, server):
        return home
    return own


def can_reach(path: Path, user: pwd.struct_passwd) -> bool:
    """Whether `user` may search (x) every existing directory from / down to `path`.

    Mode bits only (owner, group, others); the folders still missing will be made
    by `lethe stack up` with the usual umask.
    """
    groups = {user.pw_gid, *os.getgrouplist(user.pw_name, user.pw_gid)}
    for directory in reversed([path, *path.parents]):
        try:
            info = directory.stat()
        except FileNotFoundError:
            continue
        if info.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif info.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def _quiet_run(argv: list[str]) -> int:
    import subprocess

    try:
        return subprocess.run(argv, capture_output=True, check=False, timeout=10).returncode
    except (OSError, subprocess.TimeoutExpired):
        return -1
