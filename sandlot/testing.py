"""A real Sandlot server in a subprocess, for tests and benchmarks.

It runs `sandlot serve` on a free loopback port with a data directory of its own and
shares the (expensive) base template with the host's default data directory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from sandlot.runtime.bundle import USERNS_HOST_BASE
from sandlot.templates.store import TemplateStore

SHARED_DATA_DIR = Path(os.environ.get("SANDLOT_SHARED_DATA_DIR", "/var/lib/sandlot"))
TEMPLATE_DIR = SHARED_DATA_DIR / "templates"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    """One `sandlot serve`, restartable, killable, on its own data directory."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    ssh_port: int = field(default_factory=free_port)
    """The SSH gateway's port, kept across restarts like the API's."""
    proc: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_key(self) -> str:
        return (self.data_dir / "admin-key").read_text().strip()

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SANDLOT_TEMPLATE_DIR": str(TEMPLATE_DIR),
            "SANDLOT_BUILD_DEFAULT_TEMPLATE": "false",
            "SANDLOT_SSH_PORT": str(self.ssh_port),
            "XDG_CONFIG_HOME": str(self.data_dir / "config"),
            **self.extra_env,
        }

    def start(self) -> None:
        with open(self.data_dir / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "sandlot",
                    "serve",
                    "--port",
                    str(self.port),
                    "--data-dir",
                    str(self.data_dir),
                    "--log-level",
                    "warning",
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError(f"server did not become healthy:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)
        self.proc = None

    def destroy_all(self) -> None:
        """Leave the host clean even if a caller forgot a sandbox."""
        headers = {"X-API-Key": self.api_key}
        page = httpx.get(f"{self.url}/v1/sandboxes?limit=1000", headers=headers, timeout=30).json()
        for sbx in page.get("data", []):
            if sbx["status"] != "terminated":
                httpx.delete(f"{self.url}/v1/sandboxes/{sbx['id']}", headers=headers, timeout=60)
        # Volumes too: each is a loop mount on the host until deleted.
        volumes = httpx.get(f"{self.url}/v1/volumes", headers=headers, timeout=30).json()
        for volume in volumes.get("data", []):
            httpx.delete(
                f"{self.url}/v1/volumes/{volume['name']}",
                params={"force": True},
                headers=headers,
                timeout=60,
            )

    def ssh_known_hosts(self) -> str:
        """A known_hosts line pinning the SSH gateway's host key (made on first start)."""
        key_file = self.data_dir / "ssh_host_ed25519_key"
        public = subprocess.run(
            ["ssh-keygen", "-y", "-f", str(key_file)], capture_output=True, text=True, check=True
        ).stdout.split()
        return f"[127.0.0.1]:{self.ssh_port} {public[0]} {public[1]}\n"

    def log_tail(self) -> str:
        return (self.data_dir / "server.log").read_text(errors="replace")[-4000:]


def ensure_base_template() -> None:
    ensure_template("base")


def ensure_template(recipe: str) -> None:
    """Build one of Sandlot's recipes into the shared template directory, once."""
    if (TEMPLATE_DIR / recipe / "current").exists():
        return
    subprocess.run(
        [
            sys.executable,
            "-m",
            "sandlot",
            "template",
            "build",
            recipe,
            "--data-dir",
            str(SHARED_DATA_DIR),
        ],
        check=True,
    )


def process_memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of a process from /proc (VmRSS now, VmHWM its peak), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise LookupError(f"/proc/{pid}/status has no {field}")


def base_layers() -> tuple[Path, ...]:
    """What a sandbox of the shared base template stacks, the agent layer on top: for
    benchmarks that run bare runc on exactly what a sandbox runs on."""
    store = TemplateStore(TEMPLATE_DIR)
    return (store.agent_layer(USERNS_HOST_BASE), *store.get("base").layers)
