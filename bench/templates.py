"""Template builds and sandboxes from custom templates.

Figures: a Sandlotfile build from scratch and again with every step cached; what one
RUN step costs beside bare runc starting a container on the same layers and running
one command in it; and create-to-first-command from the built template (seven layers)
beside the base template (one) and beside bare runc on the built template's layers.
"""

from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path

from bench.core import bare_runc_first_exec, create_to_first_command_ms
from bench.stats import UNLIMITED, print_row
from sandlot import Sandlot
from sandlot.runtime.oci import OciRuntime
from sandlot.templates.store import TemplateStore
from sandlot.testing import TEMPLATE_DIR, ServerProcess, base_layers, ensure_base_template

RUN_STEPS = 4
SANDLOTFILE = """\
FROM base
ENV APP=/srv/app
WORKDIR /srv/app
COPY . ./
{runs}
CMD ["sleep", "infinity"]
"""


def sandlotfile(salt: str) -> str:
    runs = [
        f"RUN echo {salt}-{i} > /srv/app/step-{i} && ls /srv/app > /dev/null"
        for i in range(RUN_STEPS)
    ]
    return SANDLOTFILE.format(runs="\n".join(runs))


def run(runs: int) -> None:
    ensure_base_template()
    with tempfile.TemporaryDirectory(prefix="sandlot-bench-templates-") as tmp:
        work = Path(tmp)
        server = ServerProcess(
            work / "data", extra_env={**UNLIMITED, "SANDLOT_WARM_POOL_SIZE": "0"}
        )
        server.data_dir.mkdir()
        server.start()
        context = work / "context"
        context.mkdir()
        for i in range(20):
            (context / f"file-{i}.bin").write_bytes(secrets.token_bytes(1 << 20))
        try:
            with Sandlot(api_url=server.url, api_key=server.api_key) as client:
                measure(client, server, context, runs)
        finally:
            server.destroy_all()
            server.stop()


def measure(client: Sandlot, server: ServerProcess, context: Path, runs: int) -> None:
    runtime = OciRuntime(server.data_dir)
    print(f"Sandlot templates benchmark: {runs} runs, {RUN_STEPS} RUN steps, 20 MiB context")
    first, cached = [], []
    name = "bench-built"
    for _ in range(runs):
        text = sandlotfile(secrets.token_hex(4))  # new steps: nothing cached
        start = time.perf_counter()
        client.templates.build(name, text, context)
        first.append((time.perf_counter() - start) * 1000)
        start = time.perf_counter()
        again = client.templates.build(name, text, context)
        cached.append((time.perf_counter() - start) * 1000)
        assert again.cached_steps == again.steps, again
    bare_base = [bare_runc_first_exec(runtime, base_layers(), 1000 + i) for i in range(runs)]
    per_step = [ms / (RUN_STEPS + 2) for ms in first]  # RUNs, WORKDIR and COPY
    print_row("build from scratch", first, bare_base, "bare runc run + exec", tail=None)
    print_row("build, per step", per_step, bare_base, "bare runc run + exec", tail=None)
    print_row("build again, all cached", cached, first, "build from scratch", tail=None)

    store = TemplateStore(TEMPLATE_DIR)
    built = store.get(name)
    layers = (store.agent_layer(runtime.uid_offset), *built.layers)
    custom, base, bare = [], [], []
    for i in range(runs):
        custom.append(create_to_first_command_ms(client, name))
        base.append(create_to_first_command_ms(client))
        bare.append(bare_runc_first_exec(runtime, layers, 2000 + i))
    print_row(
        f"create → command, {len(built.layers)} layers",
        custom,
        bare,
        "bare runc, same layers",
        tail=None,
    )
    print_row(
        f"create → command, {len(built.layers)} layers", custom, base, "create from base", tail=None
    )
    client.templates.delete(name, force=True)
