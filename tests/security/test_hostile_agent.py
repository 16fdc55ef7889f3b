"""The host's agent client under a hostile agent: root inside a sandbox has the real
agent stop listening and serves a fake one at its socket (tests/security/fake_agent.py)
that answers with random and adversarial frames. Under gVisor the host takes it for the
agent (every socket there is the sentry's) and the fuzzing runs; under runc the host
refuses the socket before sending a byte, since the sandbox's init did not make it.
Either way every request to that sandbox ends within the host's own deadline with a
clear error, the server's memory stays within 50 MiB of its start, a sandbox of another
organisation answers at its usual pace throughout, and destroying the victim succeeds at once.
"""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from sandlot import Sandbox, Sandlot
from sandlot.runtime.agent_client import CALL_TIMEOUT
from sandlot.runtime.oci import RUN_BASE
from sandlot.testing import ServerProcess, process_memory_mb
from tests.security.probes import exec_p50

FAKE_AGENT = Path(__file__).with_name("fake_agent.py")
SEED = int(os.environ.get("SANDLOT_FUZZ_SEED", random.randrange(1 << 30)))
ATTACK_SECONDS = 25.0


def poke(server: ServerProcess, sandbox_id: str, n: int) -> tuple[float, int, dict[str, object]]:
    """One request of a rotating kind to the victim: (seconds, status, error)."""
    calls = [
        ("POST", "/exec", {"command": "true", "timeout": 5}),
        ("GET", "/files?path=/etc/hostname", None),
        ("GET", "/files/list?path=/", None),
        ("GET", "/processes", None),
        ("POST", "/files/replace", {"path": "/etc/hosts", "old": "a", "new": "b"}),
    ]
    method, path, body = calls[n % len(calls)]
    headers = {"Authorization": f"Bearer {server.api_key}"}
    started = time.monotonic()
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=CALL_TIMEOUT + 30) as http:
            answer = http.request(method, f"/v1/sandboxes/{sandbox_id}{path}", json=body)
    except httpx.RemoteProtocolError as exc:
        if path.startswith("/files?"):  # a download the agent broke off after it began:
            return time.monotonic() - started, 200, {}  # the body ends short, as it must
        return time.monotonic() - started, -1, {"call": f"{method} {path}", "failed": repr(exc)}
    except httpx.HTTPError as exc:  # recorded: the test fails on it, naming the call
        return time.monotonic() - started, -1, {"call": f"{method} {path}", "failed": repr(exc)}
    took = time.monotonic() - started
    error = answer.json().get("error", {}) if answer.is_error else {}
    return took, answer.status_code, error


def test_a_hostile_agent_costs_only_its_own_sandbox(
    server: ServerProcess, client: Sandlot, bystander: Sandbox, runtime: str
) -> None:
    print(f"fake agent seed {SEED} (SANDLOT_FUZZ_SEED replays it)")
    assert server.proc is not None
    idle = exec_p50(bystander)
    victim = Sandbox.create(client=client, runtime=runtime)
    victim.files.write("/tmp/fake_agent.py", FAKE_AGENT.read_bytes())
    victim.commands.run(
        f"python3 /tmp/fake_agent.py {ATTACK_SECONDS + CALL_TIMEOUT + 20} {SEED}", background=True
    )
    time.sleep(2)
    start_rss = process_memory_mb(server.proc.pid)
    peak_rss = start_rss
    paces: list[float] = []
    outcomes: list[tuple[float, int, dict[str, object]]] = []
    stop = threading.Event()

    def attack() -> None:
        with ThreadPoolExecutor(6) as pool:
            n = 0
            while not stop.is_set():
                batch = [pool.submit(poke, server, victim.id, n + i) for i in range(6)]
                n += 6
                outcomes.extend(f.result() for f in batch)

    attacker = threading.Thread(target=attack)
    attacker.start()
    deadline = time.monotonic() + ATTACK_SECONDS
    while time.monotonic() < deadline:
        paces.append(exec_p50(bystander, 3))
        peak_rss = max(peak_rss, process_memory_mb(server.proc.pid))
        time.sleep(0.2)
    stop.set()
    attacker.join(timeout=CALL_TIMEOUT + 40)
    assert not attacker.is_alive(), "a request to the victim never ended"
    heard = sum(
        len(p.read_text().splitlines()) for p in RUN_BASE.glob(f"*/{victim.id}/host/run/*.heard")
    )
    started = time.monotonic()
    victim.kill()
    assert time.monotonic() - started < 15, "destroying the victim waited on its agent"

    if runtime == "oci":
        assert heard == 0, f"the host spoke to a fake agent on {heard} connections"
    else:
        assert heard > 0, "the host never spoke to the fake agent: nothing was fuzzed"
    assert outcomes, "no request reached the victim"
    codes = sorted({str(error.get("code", status)) for _, status, error in outcomes})
    print(f"{len(outcomes)} requests to the victim answered: {codes}")
    assert max(took for took, _, _ in outcomes) < CALL_TIMEOUT + 10
    for _, status, error in outcomes:
        assert status != -1, error
        if status >= 400:
            assert error.get("code") and isinstance(error.get("retryable"), bool), error
            assert "/run/sandlot" not in str(error) and "/var/lib" not in str(error), error
    assert peak_rss - start_rss < 50, f"server RSS {start_rss:.0f} -> {peak_rss:.0f} MiB"
    assert statistics.median(paces) < max(3 * idle, 0.05), (idle, paces)
