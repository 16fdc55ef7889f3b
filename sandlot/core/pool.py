"""Warm sandboxes: started ahead of demand so `create` only has to hand one over.

Starting a sandbox costs an OCI runtime run plus the agent's interpreter start-up
(tens of milliseconds); handing over a warm one costs a cgroup update. A warm sandbox
has the template's root filesystem, default limits and no owner; on hand-over the
service applies the caller's limits and records it in the store. Warm sandboxes are not
in the store, so after a crash reconciliation removes them as leftovers, and they
reserve no capacity until handed over.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from sandlot.core.host import Host
from sandlot.core.session import SandboxSession
from sandlot.domain import ids
from sandlot.domain.host_values import BackendError, SandboxSpec
from sandlot.domain.resources import DEFAULT_DISK_MB, DEFAULT_MEMORY_MB, DEFAULT_VCPUS, Resources
from sandlot.templates.store import Template, TemplateStore

log = logging.getLogger(__name__)

WARM_RESOURCES = Resources(
    vcpus=DEFAULT_VCPUS, memory_mb=DEFAULT_MEMORY_MB, disk_mb=DEFAULT_DISK_MB
)


@dataclass(frozen=True)
class WarmSandbox:
    sandbox_id: str
    template_digest: str
    session: SandboxSession


def with_agent(template: Template, agent: Path) -> Template:
    """The template as a sandbox stands on it: the agent layer above its own layers.
    A sandbox records this whole stack, so it always comes back on the same agent."""
    return dataclasses.replace(template, layers=(agent, *template.layers))


def template_spec(
    template: Template, sandbox_id: str, resources: Resources, cpus: str | None = None
) -> SandboxSpec:
    """`template` as `with_agent` gives it."""
    return SandboxSpec(
        sandbox_id=sandbox_id,
        layers=template.layers,
        resources=resources,
        env=template.env,
        workdir=template.workdir,
        cpus=cpus,
    )


class WarmPool:
    def __init__(
        self,
        *,
        host: Host,
        templates: TemplateStore,
        uid_offset: int,
        size: int,
        template_names: tuple[str, ...],
    ) -> None:
        self.host = host
        self.templates = templates
        self._uid_offset = uid_offset
        self.size = size
        self.template_names = template_names
        self._ready: dict[str, deque[WarmSandbox]] = {name: deque() for name in template_names}
        self._filling: dict[str, asyncio.Task[None]] = {}
        self._discarding: set[asyncio.Task[None]] = set()  # held so they are not collected

    def take(self, template: Template, wanted: Resources) -> WarmSandbox | None:
        """A warm sandbox of exactly this template version, if one is ready and has the
        wanted disk size (CPU, memory and pids can change on hand-over; a disk cannot)."""
        if wanted.disk_mb != WARM_RESOURCES.disk_mb:
            return None
        ready = self._ready.get(template.name)
        while ready:
            warm = ready.popleft()
            if warm.template_digest == template.digest and not warm.session.closed:
                self.refill(template.name)
                return warm
            task = asyncio.get_running_loop().create_task(self._discard(warm))
            self._discarding.add(task)
            task.add_done_callback(self._discarding.discard)
        self.refill(template.name)
        return None

    def put_back(self, template: Template, warm: WarmSandbox) -> None:
        """Return a sandbox taken for a create that was then refused."""
        self._ready.setdefault(template.name, deque()).appendleft(warm)

    def refill(self, name: str | None = None) -> None:
        """Top the pool up in the background; does nothing if it is full or filling."""
        for template_name in [name] if name else list(self._ready):
            if template_name not in self._ready or self.size <= 0:
                continue
            task = self._filling.get(template_name)
            if task is None or task.done():
                self._filling[template_name] = asyncio.get_running_loop().create_task(
                    self._fill(template_name)
                )

    async def _fill(self, name: str) -> None:
        ready = self._ready[name]
        while len(ready) < self.size:
            try:
                template = self.templates.get(name)
                agent = self.templates.agent_layer(self._uid_offset)
                spec = template_spec(
                    with_agent(template, agent), ids.new_sandbox_id(), WARM_RESOURCES
                )
                session = await self.host.start(spec)
            except Exception:
                log.exception("could not warm a %s sandbox; the pool stays short", name)
                return
            ready.append(WarmSandbox(spec.sandbox_id, template.digest, session))

    async def _discard(self, warm: WarmSandbox) -> None:
        """Destroy a warm sandbox; one the host fails to destroy is logged and left for
        the next start's reconciliation, never raised into a hand-over or a shutdown."""
        await warm.session.close()
        try:
            await self.host.destroy(warm.sandbox_id)
        except (BackendError, OSError) as exc:
            log.warning("warm sandbox %s not destroyed: %s", warm.sandbox_id, exc)

    async def close(self) -> None:
        """Stop filling and destroy every warm sandbox."""
        for task in self._filling.values():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.gather(*self._discarding, return_exceptions=True)
        for ready in self._ready.values():
            while ready:
                await self._discard(ready.popleft())
