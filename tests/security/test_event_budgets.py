"""Stored events are budgeted in bytes: a sandbox logging as fast as the host lets it
keeps at most its own budget in the store (its newest lines), its organisation at most
the organisation's, and another organisation's history is not touched.

The server here has small budgets (1 MiB a sandbox, 2 MiB an organisation) so the test
reaches them in seconds; the defaults are 64 MiB and 1 GiB.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import statistics
import time
from collections.abc import Iterator

import pytest

from sandlot import Sandbox, Sandlot
from sandlot.testing import ServerProcess, ensure_base_template
from tests.security.probes import exec_p50, other_org_key

MIB = 1 << 20

LOG = (
    'python3 -c "import syslog, sys, time\n'
    "for i in range(int(sys.argv[1])):\n"
    "    [syslog.syslog(f'{i:05d} ' + 'x' * 1000) for _ in range(200)]; time.sleep(1)\n"
    "syslog.syslog('the last line')\" "
)


@pytest.fixture(scope="module")
def budget_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    if os.geteuid() != 0:
        pytest.skip("needs root: sandboxes use namespaces, mounts and cgroups")
    ensure_base_template()
    srv = ServerProcess(
        tmp_path_factory.mktemp("sandlot-budgets"),
        extra_env={
            "SANDLOT_EVENT_STORAGE_SANDBOX_MB": "1",
            "SANDLOT_EVENT_STORAGE_ORG_MB": "2",
            "SANDLOT_WARM_POOL_SIZE": "0",
        },
    )
    srv.start()
    yield srv
    srv.destroy_all()
    srv.stop()


def stored(server: ServerProcess, column: str, value: str) -> tuple[int, int]:
    """(bytes, events) the store holds for one sandbox or organisation, read from the
    server's own database."""
    with sqlite3.connect(server.data_dir / "sandlot.db") as db:
        size, count = db.execute(
            f"SELECT coalesce(sum(size), 0), count(*) FROM events WHERE {column} = ?", (value,)
        ).fetchone()
    return int(size), int(count)


def log_lines(server: ServerProcess, sandbox_id: str) -> list[str]:
    with sqlite3.connect(server.data_dir / "sandlot.db") as db:
        rows = db.execute(
            "SELECT json_extract(data, '$.line') FROM events "
            "WHERE sandbox_id = ? AND type = 'log' ORDER BY id",
            (sandbox_id,),
        ).fetchall()
    return [line for (line,) in rows]


def flood(sbx: Sandbox, seconds: int) -> None:
    sbx.commands.run(LOG + str(seconds), timeout=120)


def test_a_sandbox_keeps_its_newest_events_within_its_budget(
    budget_server: ServerProcess,
) -> None:
    with Sandlot(budget_server.url, budget_server.api_key) as admin:
        bystander_key = other_org_key(admin)
    with (
        Sandlot(budget_server.url, budget_server.api_key) as client,
        Sandbox.create(client=client) as sbx,
        Sandlot(budget_server.url, bystander_key) as other,
        Sandbox.create(client=other) as bystander,
    ):
        idle = exec_p50(bystander, 15)
        logging = sbx.commands.run(LOG + "10", background=True)  # ~2 MiB: twice the budget
        paces = []
        during = time.monotonic() + 8  # the flood runs for 10 s
        while time.monotonic() < during:
            paces.append(exec_p50(bystander, 3))
        logging.wait(timeout=60)
        time.sleep(2)
        size, _ = stored(budget_server, "sandbox_id", sbx.id)
        lines = log_lines(budget_server, sbx.id)
    assert statistics.median(paces) < max(3 * idle, 0.05), (idle, paces)
    assert 0.5 * MIB < size <= MIB, size
    assert lines[-1] == "the last line"
    assert not any(line.startswith("00000 ") for line in lines), "the oldest lines stayed"


def test_an_organisation_keeps_its_events_within_its_budget_and_others_keep_theirs(
    budget_server: ServerProcess,
) -> None:
    with Sandlot(budget_server.url, budget_server.api_key) as admin:
        org = admin.orgs.create(f"budget-{secrets.token_hex(4)}")
        key = admin.keys.create(org.id, name="k").key
        bystander_key = other_org_key(admin)
    with Sandlot(budget_server.url, bystander_key) as other, Sandbox.create(client=other) as quiet:
        flood(quiet, 2)
        time.sleep(1)
        kept_before = stored(budget_server, "sandbox_id", quiet.id)
        with Sandlot(budget_server.url, key) as tenant:
            for _ in range(3):  # each ~0.9 MiB, within its own budget; 2.7 MiB together
                with Sandbox.create(client=tenant) as sbx:
                    flood(sbx, 4)
            time.sleep(2)
        org_size, _ = stored(budget_server, "org_id", org.id)
        kept_after = stored(budget_server, "sandbox_id", quiet.id)
    assert 1 * MIB < org_size <= 2 * MIB, org_size
    assert kept_after[0] >= kept_before[0] > 300_000, (kept_before, kept_after)
