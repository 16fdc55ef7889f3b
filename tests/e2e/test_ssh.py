"""The SSH gateway with the real OpenSSH tools: ssh, scp, sftp, rsync, port forwarding.

Every client pins the gateway's host key in a known_hosts file the test writes from the
key on disk (StrictHostKeyChecking=yes), logs in with a key made by ssh-keygen (or a
password through sshpass), and runs in BatchMode so that nothing ever waits for a person.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import PIPE

import httpx
import pytest

from sandlot import Sandbox, Sandlot
from sandlot.testing import ServerProcess, free_port

from .terminal import type_keys, wait_for_screen
from .test_cli import sandlot as run_cli

TOOLS = ("ssh", "scp", "sftp", "rsync", "ssh-keygen", "sshpass", "curl")
missing = [tool for tool in TOOLS if shutil.which(tool) is None]
pytestmark = pytest.mark.skipif(
    bool(missing), reason=f"needs {', '.join(missing)} (scripts/setup installs them)"
)

PASSWORD = "mypass123"
BIG = 50 * 1024 * 1024


def make_key(directory: Path, name: str = "id_ed25519") -> Path:
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True
    )
    return key


def write_known_hosts(server: ServerProcess, path: Path) -> Path:
    path.write_text(server.ssh_known_hosts())
    return path


@dataclass
class Gateway:
    """How to reach the gateway of one server with OpenSSH."""

    server: ServerProcess
    known_hosts: Path
    key: Path

    def pinned(self) -> list[str]:
        """Trust exactly the gateway's host key."""
        return [
            "-o", "StrictHostKeyChecking=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "ConnectTimeout=20",
        ]  # fmt: skip

    def options(self, key: Path | None = None) -> list[str]:
        """Log in with `key` only, never asking anything."""
        return [
            *self.pinned(),
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-i", str(key or self.key),
        ]  # fmt: skip

    def ssh(self, sandbox_id: str, *args: str, key: Path | None = None) -> list[str]:
        port = ["-p", str(self.server.ssh_port)]
        return ["ssh", *port, *self.options(key), f"{sandbox_id}@127.0.0.1", *args]

    def run(
        self, sandbox_id: str, command: str, *, input: bytes | None = None, key: Path | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self.ssh(sandbox_id, command, key=key), input=input, capture_output=True, timeout=120
        )


@pytest.fixture(scope="module")
def gateway(
    server: ServerProcess, client: Sandlot, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    home = tmp_path_factory.mktemp("ssh")
    key = make_key(home)
    registered = client.ssh_keys.add("e2e-laptop", key.with_suffix(".pub").read_text())
    yield Gateway(server, write_known_hosts(server, home / "known_hosts"), key)
    client.ssh_keys.delete(registered.id)


@pytest.fixture(scope="module")
def sbx(client: Sandlot) -> Iterator[Sandbox]:
    sandbox = client.sandboxes.create(password=PASSWORD)
    yield sandbox
    sandbox.kill()


# -- logging in ----------------------------------------------------------------------


def test_key_login_runs_a_command_with_its_exit_status(gateway: Gateway, sbx: Sandbox) -> None:
    r = gateway.run(sbx.id, "uname -n; echo to-stderr >&2; exit 7")
    assert r.returncode == 7, r.stderr
    assert r.stdout.decode().strip() == sbx.id  # the sandbox's hostname: it ran inside
    assert r.stderr.decode().strip().endswith("to-stderr")
    assert gateway.run(sbx.id, "true").returncode == 0


def test_stdin_reaches_the_command_until_eof(gateway: Gateway, sbx: Sandbox) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    r = gateway.run(sbx.id, "sha256sum", input=data)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
    # A command that exits before reading all its input still reports its own status.
    early = gateway.run(sbx.id, "head -c 5; exit 4", input=data)
    assert (early.returncode, early.stdout) == (4, data[:5])


def test_shell_without_a_terminal_reads_stdin_and_gets_the_locale(
    gateway: Gateway, sbx: Sandbox
) -> None:
    r = subprocess.run(
        gateway.ssh(sbx.id, "-T", "-o", "SendEnv=LANG"),
        input=b"echo $((6*7)) $LANG; tty; exit 5\n",
        capture_output=True,
        timeout=60,
        env={**os.environ, "LANG": "C.UTF-8"},
    )
    assert r.returncode == 5, r.stderr
    assert r.stdout == b"42 C.UTF-8\nnot a tty\n"


def test_a_signal_death_comes_back_as_exit_signal(gateway: Gateway, sbx: Sandbox) -> None:
    """OpenSSH does not show exit-signal, so a second real client (asyncssh) checks it."""
    import asyncssh

    async def run() -> asyncssh.SSHCompletedProcess:
        async with asyncssh.connect(
            "127.0.0.1",
            gateway.server.ssh_port,
            username=sbx.id,
            client_keys=[str(gateway.key)],
            known_hosts=str(gateway.known_hosts),
        ) as conn:
            return await conn.run("kill -TERM $$", check=False)

    result = asyncio.run(run())
    assert result.exit_signal is not None and result.exit_signal[0] == "TERM"
    assert result.exit_status == -1
    assert gateway.run(sbx.id, "kill -KILL $$").returncode == 255  # OpenSSH's "no status"


def test_password_login(gateway: Gateway, sbx: Sandbox) -> None:
    def with_password(password: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [
                "sshpass", "-p", password,
                "ssh", "-p", str(gateway.server.ssh_port), *gateway.pinned(),
                "-o", "PubkeyAuthentication=no",
                "-o", "PreferredAuthentications=password",
                "-o", "NumberOfPasswordPrompts=1",
                f"{sbx.id}@127.0.0.1", "echo logged-in-by-password",
            ],
            capture_output=True,
            timeout=60,
        )  # fmt: skip

    r = with_password(PASSWORD)
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"logged-in-by-password\n"
    wrong = with_password("not-the-password")
    assert wrong.returncode != 0 and b"logged-in" not in wrong.stdout


def test_unregistered_key_is_refused(gateway: Gateway, sbx: Sandbox, tmp_path: Path) -> None:
    stranger = make_key(tmp_path, "stranger")
    r = gateway.run(sbx.id, "echo in", key=stranger)
    assert r.returncode == 255
    assert b"Permission denied" in r.stderr and r.stdout == b""


def test_another_organisations_sandbox_is_refused(
    gateway: Gateway, sbx: Sandbox, client: Sandlot, server: ServerProcess, tmp_path: Path
) -> None:
    org = client.orgs.create("ssh-other-org")
    secret = client.keys.create(org.id, ["sandboxes:read", "sandboxes:write"]).key
    with Sandlot(api_url=server.url, api_key=secret) as other:
        their_key = make_key(tmp_path, "theirs")
        other.ssh_keys.add("theirs", their_key.with_suffix(".pub").read_text())
        with other.sandboxes.create() as theirs:
            # Their key opens their sandbox, and nothing of ours; ours nothing of theirs.
            assert gateway.run(theirs.id, "echo ok", key=their_key).stdout == b"ok\n"
            refused = gateway.run(sbx.id, "echo in", key=their_key)
            assert refused.returncode == 255 and b"Permission denied" in refused.stderr
            refused = gateway.run(theirs.id, "echo in")
            assert refused.returncode == 255 and b"Permission denied" in refused.stderr
        assert [k.name for k in other.ssh_keys.list()] == ["theirs"]
    assert "theirs" not in [k.name for k in client.ssh_keys.list()]


def test_dropped_client_hangs_up_and_destroyed_sandbox_ends_session(
    gateway: Gateway, client: Sandlot
) -> None:
    with client.sandboxes.create() as own:
        dropped = subprocess.Popen(gateway.ssh(own.id, "echo up; exec sleep 300"), stdout=PIPE)
        assert dropped.stdout is not None and dropped.stdout.readline() == b"up\n"
        dropped.kill()  # the client vanishes without closing the channel
        dropped.wait()
        gone = own.commands.run(
            "for i in $(seq 100); do pgrep -x sleep >/dev/null || exit 0; sleep 0.1; done; exit 1"
        )
        assert gone.exit_code == 0, "the session's process outlived its client"

        running = subprocess.Popen(
            gateway.ssh(own.id, "echo up; exec sleep 300"), stdout=PIPE, stderr=PIPE
        )
        assert running.stdout is not None and running.stdout.readline() == b"up\n"
        own.kill()
        _, err = running.communicate(timeout=30)
        assert running.returncode == 255
        assert b"sandlot:" in err


# -- an interactive shell ------------------------------------------------------------


def test_interactive_shell_with_resize(gateway: Gateway, sbx: Sandbox, tmux: str) -> None:
    type_keys(tmux, " ".join(gateway.ssh(sbx.id)) + "; echo local-exit=$?")
    type_keys(tmux, "echo ready-$((6*7))")
    wait_for_screen(tmux, "ready-42")
    type_keys(tmux, "stty size")
    wait_for_screen(tmux, "30 100")
    subprocess.run(["tmux", "resize-window", "-t", tmux, "-x", "120", "-y", "40"], check=True)
    # The window-change message crosses the connection on its own: ask until it landed.
    for attempt in range(10):
        type_keys(tmux, "clear; stty size")
        try:
            wait_for_screen(tmux, "40 120", timeout=1)
            break
        except AssertionError:
            assert attempt < 9, "the terminal never took the new size"
    type_keys(tmux, "exit 3")
    wait_for_screen(tmux, "local-exit=3")


# -- files ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("big") / "big.bin"
    data = os.urandom(BIG)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_scp_round_trip_of_50_mib(
    gateway: Gateway, sbx: Sandbox, big_file: tuple[Path, str], tmp_path: Path
) -> None:
    local, digest = big_file
    assert gateway.run(sbx.id, "mkdir -p /workspace").returncode == 0
    port = ["-P", str(gateway.server.ssh_port), *gateway.options()]
    up = subprocess.run(
        ["scp", *port, str(local), f"{sbx.id}@127.0.0.1:/workspace/"],
        capture_output=True,
        timeout=300,
    )
    assert up.returncode == 0, up.stderr
    inside = gateway.run(sbx.id, "sha256sum /workspace/big.bin").stdout.split()[0].decode()
    assert inside == digest
    back = tmp_path / "back.bin"
    down = subprocess.run(
        ["scp", *port, f"{sbx.id}@127.0.0.1:/workspace/big.bin", str(back)],
        capture_output=True,
        timeout=300,
    )
    assert down.returncode == 0, down.stderr
    assert sha256_of(back) == digest


def test_sftp_round_trip_of_50_mib(
    gateway: Gateway, sbx: Sandbox, big_file: tuple[Path, str], tmp_path: Path
) -> None:
    local, digest = big_file
    back = tmp_path / "back.bin"
    batch = tmp_path / "batch"
    batch.write_text(
        f"mkdir /tmp/sftp\nput {local} /tmp/sftp/big.bin\nls -l /tmp/sftp\n"
        f"get /tmp/sftp/big.bin {back}\nrename /tmp/sftp/big.bin /tmp/sftp/moved.bin\n"
    )
    r = subprocess.run(
        [
            "sftp",
            "-P",
            str(gateway.server.ssh_port),
            *gateway.options(),
            "-b",
            str(batch),
            f"{sbx.id}@127.0.0.1",
        ],
        capture_output=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert b"big.bin" in r.stdout
    assert sha256_of(back) == digest
    moved = sbx.commands.run("sha256sum /tmp/sftp/moved.bin").stdout.split()[0]
    assert moved == digest


def test_rsync_over_ssh(gateway: Gateway, sbx: Sandbox, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("alpha\n")
    (tree / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    shell = " ".join(["ssh", "-p", str(gateway.server.ssh_port), *gateway.options()])

    def sync() -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["rsync", "-a", "--delete", "-e", shell, f"{tree}/", f"{sbx.id}@127.0.0.1:/tmp/tree/"],
            capture_output=True,
            timeout=120,
        )

    first = sync()
    assert first.returncode == 0, first.stderr
    listing = sbx.commands.run("cd /tmp/tree && find . -type f | sort && cat a.txt").stdout
    assert listing == "./a.txt\n./sub/b.bin\nalpha\n"
    (tree / "a.txt").write_text("changed\n")
    (tree / "sub" / "b.bin").unlink()
    second = sync()
    assert second.returncode == 0, second.stderr
    listing = sbx.commands.run("cd /tmp/tree && find . -type f | sort && cat a.txt").stdout
    assert listing == "./a.txt\nchanged\n"


# -- port forwarding ------------------------------------------------------------------


def test_local_forward_reaches_a_server_inside(gateway: Gateway, sbx: Sandbox) -> None:
    sbx.files.write("/tmp/www/hello.txt", "served from inside the sandbox\n")
    web = sbx.commands.run(
        "python3 -m http.server 3000 --bind 127.0.0.1", cwd="/tmp/www", background=True
    )
    sbx.commands.run(
        "for i in $(seq 100); do curl -s localhost:3000/ >/dev/null && exit 0; sleep 0.1; done"
    )
    local = free_port()
    closed = free_port()
    tunnel = subprocess.Popen(
        [
            *gateway.ssh(sbx.id, "-N", "-o", "ExitOnForwardFailure=yes"),
            "-L",
            f"{local}:localhost:3000",
            "-L",
            f"{closed}:localhost:3999",
        ],
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(local)
        got = subprocess.run(
            ["curl", "-sS", "--max-time", "20", f"http://127.0.0.1:{local}/hello.txt"],
            capture_output=True,
            timeout=30,
        )
        assert got.returncode == 0, got.stderr
        assert got.stdout == b"served from inside the sandbox\n"
        # Many at once: each is its own channel and its own connection inside.
        fetches = [
            subprocess.Popen(
                ["curl", "-sS", "--max-time", "20", f"http://127.0.0.1:{local}/hello.txt"],
                stdout=subprocess.PIPE,
            )
            for _ in range(8)
        ]
        assert all(f.communicate(timeout=30)[0].startswith(b"served") for f in fetches)
        # Nothing listens on 3999 inside: the channel is refused and curl sees it close.
        refused = subprocess.run(
            ["curl", "-sS", "--max-time", "20", f"http://127.0.0.1:{closed}/"],
            capture_output=True,
            timeout=30,
        )
        assert refused.returncode != 0
    finally:
        tunnel.terminate()
        tunnel.wait(timeout=10)
        web.kill()


def wait_for_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


# -- the API, SDK and CLI around it ---------------------------------------------------


def test_ssh_info_and_key_validation(
    gateway: Gateway, sbx: Sandbox, client: Sandlot, server: ServerProcess
) -> None:
    info = sbx.get_ssh()
    assert (info.host, info.port, info.username) == ("127.0.0.1", server.ssh_port, sbx.id)
    assert info.command == f"ssh -p {server.ssh_port} {sbx.id}@127.0.0.1"
    assert "password" not in str(sbx.refresh().to_api()).lower()
    headers = {"X-API-Key": server.api_key}
    bad = httpx.post(
        f"{server.url}/v1/ssh-keys",
        headers=headers,
        json={"name": "bad", "publicKey": "ssh-ed25519 bm90IGEga2V5"},
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "INVALID_CONFIG"
    again = httpx.post(
        f"{server.url}/v1/ssh-keys",
        headers=headers,
        json={"name": "e2e-laptop", "publicKey": gateway.key.with_suffix(".pub").read_text()},
    )
    assert again.status_code == 409 and again.json()["error"]["code"] == "INVALID_STATE"
    short = httpx.post(f"{server.url}/v1/sandboxes", headers=headers, json={"password": "short"})
    assert short.status_code == 400
    gone = httpx.delete(f"{server.url}/v1/ssh-keys/no-such-key", headers=headers)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "SSH_KEY_NOT_FOUND"

    async def listed() -> list[str]:
        from sandlot import AsyncSandbox, AsyncSandlot

        async with AsyncSandlot(api_url=server.url, api_key=server.api_key) as aclient:
            asbx = await AsyncSandbox.get(sbx.id, client=aclient)
            assert (await asbx.get_ssh()).port == server.ssh_port
            return [k.name for k in await aclient.ssh_keys.list()]

    assert "e2e-laptop" in asyncio.run(listed())


def test_cli_ssh_keys_and_sandbox_ssh(
    gateway: Gateway, sbx: Sandbox, api_env: dict[str, str], tmp_path: Path
) -> None:
    key = make_key(tmp_path, "cli")
    added = run_cli(
        api_env, "ssh-key", "add", "cli-key", "--public-key", str(key.with_suffix(".pub"))
    )
    assert added.returncode == 0, added.stderr
    fingerprint = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(key.with_suffix(".pub"))], capture_output=True, text=True
    ).stdout.split()[1]
    assert added.stdout.split()[1].decode() == fingerprint
    assert b"cli-key" in run_cli(api_env, "ssh-key", "list").stdout
    options = ["-o", "BatchMode=yes", *gateway.pinned()]
    ran = run_cli(api_env, "sandbox", "ssh", sbx.id, "-i", str(key), *options, "--", "uname", "-n")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.decode().strip() == sbx.id
    assert run_cli(api_env, "ssh-key", "rm", "cli-key").returncode == 0
    refused = run_cli(api_env, "sandbox", "ssh", sbx.id, "-i", str(key), *options, "--", "true")
    assert refused.returncode == 255
    created = run_cli(api_env, "sandbox", "create", "--password", "another-pass-1")
    assert created.returncode == 0, created.stderr
    assert run_cli(api_env, "sandbox", "destroy", created.stdout.decode().strip()).returncode == 0


# -- a server of its own: restarts and failed logins ------------------------------------


def test_host_key_is_stable_across_restarts_and_failures_are_throttled(
    fresh_server: ServerProcess, tmp_path: Path
) -> None:
    srv = fresh_server
    host_key = srv.data_dir / "ssh_host_ed25519_key"
    assert host_key.stat().st_mode & 0o777 == 0o600
    gateway = Gateway(srv, write_known_hosts(srv, tmp_path / "known_hosts"), make_key(tmp_path))
    with Sandlot(api_url=srv.url, api_key=srv.api_key) as c:
        c.ssh_keys.add("k", gateway.key.with_suffix(".pub").read_text())
        sandbox = c.sandboxes.create()
        assert gateway.run(sandbox.id, "echo before").stdout == b"before\n"
        before = host_key.read_bytes()
        srv.stop()
        srv.start()
        assert host_key.read_bytes() == before
        after = gateway.run(sandbox.id, "echo after")  # known_hosts written before the restart
        assert after.returncode == 0, after.stderr
        assert after.stdout == b"after\n"

        # A client holding several keys offers each in turn: that is not guessing.
        others = [make_key(tmp_path, f"other{i}") for i in range(5)]
        keys = [arg for k in [*others, gateway.key] for arg in ("-i", str(k))]  # ours last
        argv = ["ssh", "-p", str(srv.ssh_port), *gateway.pinned(), "-o", "BatchMode=yes"]
        argv += ["-o", "IdentitiesOnly=yes", "-v", *keys, f"{sandbox.id}@127.0.0.1", "echo many"]
        for _ in range(4):
            r = subprocess.run(argv, capture_output=True, timeout=60)
            assert r.stdout == b"many\n", r.stderr
        assert r.stderr.count(b"Offering public key") == 6

        stranger = make_key(tmp_path, "stranger")
        for _ in range(12):
            assert gateway.run(sandbox.id, "true", key=stranger).returncode == 255
        throttled = gateway.run(sandbox.id, "echo in")  # the right key, from a throttled address
        assert throttled.returncode == 255 and b"Permission denied" in throttled.stderr
        sandbox.kill()
