"""Running commands as another user: how the agent reads a user spec, and the real
switch of ids, groups, environment and directory in the processes it starts.

The host's own users stand in for a sandbox's: `nobody` (65534, home /nonexistent) and
`daemon` (1, home /usr/sbin) are in every Debian /etc/passwd.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandlot.agent import errors, users
from sandlot.errors import FileOperationError, InvalidConfigError

from .conftest import RunningAgent, connected

HOST_USERS = ("nobody", "daemon")


@pytest.fixture(scope="module", autouse=True)
def host_users() -> None:
    for name in HOST_USERS:
        try:
            pwd.getpwnam(name)
        except KeyError:
            pytest.skip(f"this host's /etc/passwd has no {name!r} to run as")


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")


# -- reading a spec ----------------------------------------------------------------------


def test_a_name_takes_the_passwd_entry_and_its_groups() -> None:
    nobody = pwd.getpwnam("nobody")
    run_as = users.resolve("nobody")
    assert run_as == users.RunAs(
        name="nobody",
        uid=nobody.pw_uid,
        gid=nobody.pw_gid,
        groups=tuple(os.getgrouplist("nobody", nobody.pw_gid)),
        home=nobody.pw_dir,
    )
    assert run_as.environment() == {"HOME": nobody.pw_dir, "USER": "nobody", "LOGNAME": "nobody"}


def test_a_uid_with_an_entry_is_that_user() -> None:
    daemon = pwd.getpwnam("daemon")
    assert users.resolve(str(daemon.pw_uid)) == users.resolve("daemon")


def test_a_group_after_the_colon_replaces_the_primary_group() -> None:
    nobody = pwd.getpwnam("nobody")
    run_as = users.resolve(f"daemon:{nobody.pw_gid}")
    assert run_as is not None
    assert (run_as.name, run_as.gid) == ("daemon", nobody.pw_gid)
    assert nobody.pw_gid in run_as.groups
    by_name = users.resolve("daemon:root")
    assert by_name is not None and by_name.gid == 0


def test_a_uid_without_an_entry_runs_with_its_number_as_group_and_slash_as_home() -> None:
    unused = next(uid for uid in range(4242, 5000) if not _has_uid(uid))
    assert users.resolve(str(unused)) == users.RunAs(
        name=str(unused), uid=unused, gid=unused, groups=(), home="/"
    )
    assert users.resolve(f"{unused}:{unused + 1}") == users.RunAs(
        name=str(unused), uid=unused, gid=unused + 1, groups=(), home="/"
    )


def test_root_and_no_spec() -> None:
    root = users.resolve("root")
    assert root is not None and (root.uid, root.gid) == (0, 0)
    assert root.environment() == {}, "root keeps the agent's own HOME"
    assert users.resolve(None) is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("bob-not-here", "no user 'bob-not-here' in the sandbox's /etc/passwd"),
        ("nobody:no-such-group", "no group 'no-such-group' in the sandbox's /etc/group"),
        ("nobody:", "NAME, UID, NAME:GROUP or UID:GID"),
        (":0", "NAME, UID, NAME:GROUP or UID:GID"),
        ("", "name or uid of 1 to 64 characters"),
        ("x" * 65, "name or uid of 1 to 64 characters"),
        (1000, "name or uid of 1 to 64 characters"),
        ("4294967295", "not a user or group id"),
    ],
)
def test_bad_specs_are_invalid_arguments(spec: object, message: str) -> None:
    with pytest.raises(errors.AgentError) as raised:
        users.resolve(spec)
    assert raised.value.code == errors.INVALID_CONFIG
    assert message in raised.value.message


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory anyone may enter (pytest's own temporary directories are private)."""
    path = Path(tempfile.mkdtemp(prefix="sandlot-users-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_can_enter_needs_search_permission_on_every_directory(open_dir: Path) -> None:
    nobody = users.resolve("nobody")
    assert nobody is not None
    inner = open_dir / "outer" / "inner"
    inner.mkdir(parents=True)
    (open_dir / "outer").chmod(0o711)
    inner.chmod(0o755)
    if not nobody.can_enter(str(open_dir)):
        pytest.skip(f"{open_dir} sits below a directory nobody may not enter")
    assert nobody.can_enter(str(inner))
    (open_dir / "outer").chmod(0o700)
    assert not nobody.can_enter(str(inner)), "a closed directory above blocks the way"
    assert not nobody.can_enter(str(open_dir / "missing"))
    root = users.resolve("root")
    assert root is not None and root.can_enter(str(inner)), "root enters anything"
    (open_dir / "file").write_text("")
    assert not nobody.can_enter(str(open_dir / "file"))


def _is_dir(path: str) -> bool:
    return os.path.isdir(path)


def _has_uid(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


# -- the switch, in the real agent ---------------------------------------------------------


@needs_root
@pytest.mark.asyncio
async def test_exec_as_a_user_switches_ids_groups_environment_and_directory(
    agent: RunningAgent,
) -> None:
    daemon = pwd.getpwnam("daemon")
    script = 'id -u; id -g; id -G; echo "$HOME $USER $LOGNAME"; pwd'
    async with connected(agent) as client:
        result = await client.exec(script, user="daemon")
    groups = " ".join(str(g) for g in sorted(set(os.getgrouplist("daemon", daemon.pw_gid))))
    uid, gid, got_groups, env, cwd = result.stdout.decode().splitlines()
    assert (uid, gid) == (str(daemon.pw_uid), str(daemon.pw_gid)), result.stderr
    assert " ".join(sorted(got_groups.split(), key=int)) == groups
    assert env == f"{daemon.pw_dir} daemon daemon"
    # The agent's workdir is a private temporary directory: the user starts at home.
    assert stat.S_IMODE(agent.workdir.stat().st_mode) & 0o001 == 0
    assert cwd == daemon.pw_dir


@needs_root
@pytest.mark.asyncio
async def test_a_home_that_does_not_exist_leaves_slash(agent: RunningAgent) -> None:
    assert not _is_dir(pwd.getpwnam("nobody").pw_dir)
    async with connected(agent) as client:
        result = await client.exec("id -un; pwd", user="nobody")
    assert result.stdout == b"nobody\n/\n", result.stderr


@needs_root
@pytest.mark.asyncio
async def test_the_callers_env_wins_over_the_users(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        result = await client.exec(
            'echo "$HOME $USER"', user="nobody", env={"HOME": "/tmp", "USER": "someone"}
        )
    assert result.stdout == b"/tmp someone\n"


@needs_root
@pytest.mark.asyncio
async def test_root_stays_the_default(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        result = await client.exec("id -u; pwd")
    assert result.stdout.decode() == f"0\n{agent.workdir}\n"


@needs_root
@pytest.mark.asyncio
async def test_the_user_may_reopen_its_own_output(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        result = await client.exec("echo out > /dev/stdout; echo err > /dev/stderr", user="nobody")
    assert (result.stdout, result.stderr, result.exit_code) == (b"out\n", b"err\n", 0)


@needs_root
@pytest.mark.asyncio
async def test_a_directory_the_user_may_not_enter_is_refused(agent: RunningAgent) -> None:
    async with connected(agent) as client:
        with pytest.raises(FileOperationError, match="permission denied for user nobody"):
            await client.exec("pwd", user="nobody", cwd=str(agent.workdir))
        with pytest.raises(InvalidConfigError, match="no user 'bob-not-here'"):
            await client.exec("pwd", user="bob-not-here")
        with pytest.raises(InvalidConfigError, match="no user 'bob-not-here'"):
            await client.start_process("pwd", user="bob-not-here")


@needs_root
@pytest.mark.asyncio
async def test_a_terminal_belongs_to_its_user(agent: RunningAgent) -> None:
    script = 'id -un; stat -c %U "$(tty)"; echo "$HOME"'
    async with connected(agent) as client:
        info = await client.start_process(["sh", "-c", script], pty=(80, 24), user="nobody")
        attachment = await client.attach(info["process_id"])
        output = b"".join([data async for _, data in attachment])
    assert output.split() == [b"nobody", b"nobody", b"/nonexistent"]
    assert attachment.result is not None and attachment.result.exit_code == 0
