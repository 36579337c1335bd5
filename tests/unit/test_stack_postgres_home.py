"""Where the stack's PostgreSQL cluster lives when the server runs as the `postgres` user."""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest

from lethe.stack.postgres import can_reach, cluster_home


def server_user(home: Path, uid: int, gid: int) -> pwd.struct_passwd:
    """A stand-in for Debian's `postgres` user."""
    return pwd.struct_passwd(("lethe-test-server", "x", uid, gid, "", str(home), "/bin/false"))


@pytest.fixture
def owner(tmp_path: Path) -> pwd.struct_passwd:
    """A server user that owns tmp_path and everything made in it."""
    return server_user(tmp_path / "pg-home", os.getuid(), os.getgid())


@pytest.fixture
def private(tmp_path: Path) -> Iterator[Path]:
    """A folder its owner cannot search either (mode 600), restored afterwards for cleanup."""
    folder = tmp_path / "private"
    (folder / "lethe" / ".stack").mkdir(parents=True)
    folder.chmod(0o600)
    yield folder
    folder.chmod(0o700)


def test_mode_bits_decide_for_owner_group_and_others(tmp_path: Path) -> None:
    stranger = server_user(tmp_path, 65000, 65000)
    assert can_reach(Path("/tmp"), stranger)  # / 755, /tmp 1777
    (tmp_path / "open").mkdir(mode=0o755)
    tmp_path.chmod(0o700)
    assert not can_reach(tmp_path / "open", stranger)
    assert can_reach(tmp_path / "open" / "missing", server_user(tmp_path, os.getuid(), 65000))


def test_a_reachable_stack_keeps_its_cluster(tmp_path: Path, owner: pwd.struct_passwd) -> None:
    stack = tmp_path / "repo" / ".stack"
    stack.mkdir(parents=True)
    assert cluster_home(stack, owner) == stack / "postgres"


def test_an_unreachable_stack_puts_the_cluster_in_the_server_home_and_changes_no_mode(
    tmp_path: Path, owner: pwd.struct_passwd, private: Path
) -> None:
    stack = private / "lethe" / ".stack"

    home = cluster_home(stack, owner)

    assert home.parent == tmp_path / "pg-home"
    assert home.name.startswith("lethe-")
    assert cluster_home(private / "other" / ".stack", owner) != home, "one cluster per stack"
    assert private.stat().st_mode & 0o777 == 0o600


def test_a_cluster_once_moved_stays_where_it_is(owner: pwd.struct_passwd, private: Path) -> None:
    stack = private / "lethe" / ".stack"
    home = cluster_home(stack, owner)
    (home / "data").mkdir(parents=True)
    (home / "data" / "PG_VERSION").write_text("15\n")

    private.chmod(0o755)

    assert cluster_home(stack, owner) == home


def test_without_a_separate_server_user_the_cluster_is_in_the_stack(tmp_path: Path) -> None:
    assert cluster_home(tmp_path / ".stack", None) == tmp_path / ".stack" / "postgres"
