"""Commands, background processes and terminals run as a user created inside the sandbox."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from sandlot import AsyncSandbox, AsyncSandlot, Sandbox, Sandlot
from sandlot.errors import InvalidConfigError
from sandlot.testing import ServerProcess

ALICE_UID = 1000
DEVS_GID = 1500
NO_BOB = "no user 'bob' in the sandbox's /etc/passwd"


@pytest.fixture(scope="module")
def box(client: Sandlot) -> Iterator[Sandbox]:
    """A sandbox with a user `alice` (uid 1000, home /home/alice) who is also in `devs`."""
    sbx = Sandbox.create(template="base", client=client)
    try:
        tools = sbx.commands.run("command -v useradd groupadd usermod")
        if tools.exit_code == 0:
            setup = (
                f"useradd -m -u {ALICE_UID} -s /bin/bash alice"
                f" && groupadd -g {DEVS_GID} devs && usermod -aG devs alice"
            )
        else:  # no passwd tools in the template: write the entries by hand
            setup = (
                f"echo 'alice:x:{ALICE_UID}:{ALICE_UID}::/home/alice:/bin/bash' >> /etc/passwd"
                f" && echo 'alice:x:{ALICE_UID}:' >> /etc/group"
                f" && echo 'devs:x:{DEVS_GID}:alice' >> /etc/group"
                f" && mkdir -p /home/alice && chown {ALICE_UID}:{ALICE_UID} /home/alice"
            )
        made = sbx.commands.run(setup)
        assert made.exit_code == 0, made.stderr
        yield sbx
    finally:
        sbx.kill()


def test_a_command_runs_as_the_user_with_its_home(box: Sandbox) -> None:
    r = box.commands.run('id -un; echo "$HOME $USER $LOGNAME"; pwd', user="alice")
    assert (r.stdout, r.exit_code) == ("alice\n/home/alice alice alice\n/home/alice\n", 0), r.stderr


def test_the_users_groups_come_along(box: Sandbox) -> None:
    r = box.commands.run("id -g; id -Gn", user="alice")
    primary, names = r.stdout.splitlines()
    assert primary == str(ALICE_UID)
    assert set(names.split()) == {"alice", "devs"}


def test_numeric_uid_and_gid(box: Sandbox) -> None:
    r = box.commands.run("id -u; id -g; echo $HOME", user=f"{ALICE_UID}:{DEVS_GID}")
    assert r.stdout == f"{ALICE_UID}\n{DEVS_GID}\n/home/alice\n", r.stderr


def test_a_uid_without_a_passwd_entry(box: Sandbox) -> None:
    r = box.commands.run("id -u; id -g; echo $HOME; pwd", user="4242")
    assert r.stdout == "4242\n4242\n/\n/\n", r.stderr


def test_files_the_user_creates_are_the_users(box: Sandbox) -> None:
    made = box.commands.run("echo hi > mine.txt && echo err > /dev/stderr", user="alice")
    assert (made.exit_code, made.stderr) == (0, "err\n")
    owner = box.commands.run("stat -c %U:%G /home/alice/mine.txt")
    assert owner.stdout == "alice:alice\n"
    refused = box.commands.run("touch /root/nope", user="alice")
    assert refused.exit_code != 0 and "Permission denied" in refused.stderr


def test_root_stays_the_default(box: Sandbox) -> None:
    r = box.commands.run('id -un; echo "$HOME"; pwd')
    assert r.stdout == "root\n/root\n/root\n"


def test_a_background_process_runs_as_the_user(box: Sandbox) -> None:
    handle = box.commands.run("sleep 60", background=True, user="alice")
    with handle:
        seen = box.commands.run(f"ps -o user= -p {handle.pid}")
        assert seen.stdout.strip() == "alice"
        handle.kill()


def test_a_foreground_command_with_callbacks_runs_as_the_user(box: Sandbox) -> None:
    lines: list[str] = []
    r = box.commands.run("id -un", user="alice", on_stdout=lines.append)
    assert lines == ["alice"] and r.exit_code == 0


async def test_async_commands_run_as_the_user(box: Sandbox, server: ServerProcess) -> None:
    async with AsyncSandlot(api_url=server.url, api_key=server.api_key) as aclient:
        sbx = await AsyncSandbox.get(box.id, client=aclient)
        r = await sbx.commands.run("id -un", user="alice")
        handle = await sbx.commands.run("id -un", background=True, user="alice")
        result = await handle.wait()
    assert r.stdout == "alice\n"
    assert result.stdout == "alice\n"


def test_a_terminal_runs_a_login_shell_as_the_user(box: Sandbox) -> None:
    screen: list[bytes] = []
    term = box.pty.create(user="alice", on_output=screen.append)

    def wait_for(text: bytes, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while text not in b"".join(screen):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} never appeared in {b''.join(screen)[-400:]!r}")
            term.pump(0.1)

    with term:
        wait_for(b"alice@")  # the prompt: \u@\h:\w\$
        term.send('echo "id=$(id -un) home=$HOME"; ls -l "$(tty)" | cut -d" " -f3\n')
        wait_for(b"id=alice home=/home/alice")
        wait_for(b"\r\nalice\r\n")
        term.send("exit 5\n")
        assert term.wait(timeout=30).exit_code == 5


def test_an_unknown_user_is_invalid_config(box: Sandbox) -> None:
    with pytest.raises(InvalidConfigError, match=NO_BOB) as run:
        box.commands.run("true", user="bob")
    assert run.value.code == "INVALID_CONFIG"
    with pytest.raises(InvalidConfigError, match=NO_BOB):
        box.commands.run("true", user="bob", background=True)
    with pytest.raises(InvalidConfigError, match=NO_BOB):
        box.pty.create(user="bob")
    with pytest.raises(InvalidConfigError, match="no group 'nogroup-here'"):
        box.commands.run("true", user="alice:nogroup-here")


def test_a_uid_outside_the_sandboxs_user_namespace_is_invalid_config(box: Sandbox) -> None:
    # runc maps 65536 ids into the sandbox; gVisor (runsc) maps them all.
    if box.info.runtime != "oci":
        pytest.skip(f"{box.info.runtime} maps every uid into the sandbox")
    with pytest.raises(InvalidConfigError, match="cannot run as user 70000"):
        box.commands.run("true", user="70000")


@pytest.mark.parametrize("user", ["al ice", "alice;id", "a" * 65, "alice:", ""])
def test_malformed_users_are_refused_by_the_api(
    box: Sandbox, server: ServerProcess, user: str
) -> None:
    headers = {"X-API-Key": server.api_key}
    for route in ("exec", "processes"):
        url = f"{server.url}/v1/sandboxes/{box.id}/{route}"
        r = httpx.post(url, json={"command": "true", "user": user}, headers=headers)
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_CONFIG", r.text


def test_the_openapi_document_describes_user(server: ServerProcess) -> None:
    schemas = httpx.get(f"{server.url}/openapi.json").json()["components"]["schemas"]
    for model in ("ExecIn", "StartProcessIn"):
        field = schemas[model]["properties"]["user"]
        assert "/etc/passwd" in field["description"]


def test_cli_exec_as_a_user(box: Sandbox, api_env: dict[str, str]) -> None:
    args = ["sandbox", "exec", box.id, "--user", "alice", "--", "id -un; pwd"]
    done = subprocess.run(
        [sys.executable, "-m", "sandlot", *args], env=api_env, capture_output=True, timeout=120
    )
    assert (done.returncode, done.stdout) == (0, b"alice\n/home/alice\n"), done.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "sandlot", "sandbox", "exec", box.id, "-u", "bob", "--", "true"],
        env=api_env,
        capture_output=True,
        timeout=120,
    )
    assert bad.returncode != 0 and NO_BOB.encode() in bad.stderr
