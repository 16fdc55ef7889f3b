"""The sandbox backends Sandlot has, whether this host can run each, and what each can do
here: the server's answer to `GET /v1/runtimes`, found without starting any of them."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from sandlot.domain.host_values import Capabilities
from sandlot.runtime.criu import find_criu
from sandlot.runtime.oci import oci_capabilities
from sandlot.runtime.runsc import runsc_capabilities, runsc_version


@dataclass(frozen=True)
class RuntimeInfo:
    name: str
    available: bool
    """Its binary is installed here."""
    default: bool
    """New sandboxes run on it."""
    offered: bool
    """A sandbox may ask for it at create."""
    version: str | None
    checkpoint: bool
    memory_snapshots: bool
    hardware_isolation: bool
    isolation: str
    checkpoint_problem: str | None

    @classmethod
    def of(
        cls, name: str, caps: Capabilities, version: str | None, offered: tuple[str, ...]
    ) -> RuntimeInfo:
        return cls(
            name=name,
            available=version is not None,
            default=offered[:1] == (name,),
            offered=name in offered,
            version=version,
            checkpoint=caps.checkpoint,
            memory_snapshots=caps.checkpoint,
            hardware_isolation=caps.hardware_isolation,
            isolation=caps.isolation,
            checkpoint_problem=caps.checkpoint_problem,
        )


def describe_runtimes(
    offered: tuple[str, ...],
    *,
    network: bool,
    runsc_platform: str,
    oci_binary: str,
    criu: str | None,
) -> list[RuntimeInfo]:
    return [
        RuntimeInfo.of(
            "oci", oci_capabilities(find_criu(criu)), _runc_version(oci_binary), offered
        ),
        RuntimeInfo.of(
            "runsc",
            runsc_capabilities(network, runsc_platform),
            runsc_version(),
            offered,
        ),
    ]


def _runc_version(binary: str) -> str | None:
    """The version on `runc --version`'s first line ("1.1.5+ds1"), or None if missing."""
    if shutil.which(binary) is None:
        return None
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    first = (out.stdout.splitlines() or [""])[0]
    return first.rsplit(" ", 1)[-1] or None
