"""SSH gateway figures: an exec round trip through OpenSSH beside the SDK and the CLI.

`ssh … true` over a ControlMaster connection measures the gateway's own cost (a session
channel, an agent process, its exit) without the key exchange; a fresh `ssh` adds the
connection setup and is printed apart. The SDK's `commands.run("true")` on the same
sandbox is the baseline every ratio is taken against; `sandlot sandbox exec` shows what a
command line tool pays for starting Python. File transfer: scp of a file beside the
SDK's streamed upload of the same bytes.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.stats import UNLIMITED, print_row, print_throughput, summary
from sandlot import Sandbox, Sandlot
from sandlot.testing import ServerProcess, ensure_base_template


def timed_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def run(runs: int, file_mib: int) -> None:
    ensure_base_template()
    with tempfile.TemporaryDirectory(prefix="sandlot-bench-ssh-") as tmp:
        work = Path(tmp)
        server = ServerProcess(work / "data", extra_env=UNLIMITED)
        server.data_dir.mkdir()
        server.start()
        try:
            with Sandlot(api_url=server.url, api_key=server.api_key) as client:
                measure(server, client, work, runs, file_mib)
        finally:
            server.destroy_all()
            server.stop()


def measure(server: ServerProcess, client: Sandlot, work: Path, runs: int, file_mib: int) -> None:
    key = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    client.ssh_keys.add("bench", key.with_suffix(".pub").read_text())
    known_hosts = work / "known_hosts"
    known_hosts.write_text(server.ssh_known_hosts())
    options = [
        "-p", str(server.ssh_port),
        "-i", str(key),
        "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={known_hosts}",
    ]  # fmt: skip
    control = ["-o", f"ControlPath={work / 'mux'}"]
    print(f"Sandlot SSH benchmark: {runs} runs, gateway on port {server.ssh_port}")

    with Sandbox.create(client=client) as sbx:
        target = f"{sbx.id}@127.0.0.1"
        master = subprocess.Popen(
            ["ssh", *options, *control, "-o", "ControlMaster=yes", "-N", target]
        )
        try:
            wait_for_master(options, control, target)
            ssh_mux = [
                timed_ms(
                    lambda: subprocess.run(["ssh", *options, *control, target, "true"], check=True)
                )
                for _ in range(runs * 5)
            ]
        finally:
            master.terminate()
            master.wait()
        ssh_fresh = [
            timed_ms(lambda: subprocess.run(["ssh", *options, target, "true"], check=True))
            for _ in range(runs)
        ]
        sdk = [timed_ms(lambda: sbx.commands.run("true")) for _ in range(runs * 5)]
        cli_argv = [sys.executable, "-m", "sandlot", "sandbox", "exec", sbx.id, "--", "true"]
        cli_env = {**server.env, "SANDLOT_API_URL": server.url, "SANDLOT_API_KEY": server.api_key}
        cli = [
            timed_ms(lambda: subprocess.run(cli_argv, env=cli_env, check=True)) for _ in range(runs)
        ]
        print_row("ssh `true`, ControlMaster", ssh_mux, sdk, "SDK commands.run")
        print_row("ssh `true`, new connection", ssh_fresh, sdk, "SDK commands.run")
        print_row("sandlot sandbox exec `true`", cli, sdk, "SDK commands.run")
        setup = summary(ssh_fresh)[0] - summary(ssh_mux)[0]
        print(f"ssh connection setup (key exchange, auth), p50: {setup:.2f} ms")

        size = file_mib * 1024 * 1024
        source = work / "payload.bin"
        source.write_bytes(b"\xa5" * size)
        scp = timed_ms(
            lambda: subprocess.run(
                ["scp", "-P", *options[1:], str(source), f"{target}:/tmp/scp.bin"], check=True
            )
        )
        upload = timed_ms(lambda: sbx.files.upload("/tmp/sdk.bin", io.BytesIO(source.read_bytes())))
        print_throughput(f"scp {file_mib} MiB in", size, scp, upload, "SDK files.upload")


def wait_for_master(options: list[str], control: list[str], target: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        check = subprocess.run(
            ["ssh", *options, *control, "-O", "check", target], capture_output=True
        )
        if check.returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError("the SSH control master did not come up")
