"""Running a Sandlotfile's steps, one layer each: metadata steps change the template
being made, COPY, ADD and WORKDIR fill a layer on the host (beneath its staging
directory, by the kernel), and RUN runs in a throw-away sandbox of the organisation's
whose changes become the layer. Every layer-making step looks in the build cache
first, under a key that chains the organisation, the base and every step before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from sandlot.beneath import inside
from sandlot.core.build_cache import copy_key, first_key, run_key, workdir_key
from sandlot.core.build_cache import layer_id as build_layer_id
from sandlot.core.build_log import CappedLog
from sandlot.core.catalog import Catalog
from sandlot.core.host import Host
from sandlot.core.incidents import public_reason
from sandlot.core.models import CreateSandbox, StartProcess
from sandlot.core.sandboxes import Sandboxes
from sandlot.core.work import Work
from sandlot.domain.resources import Resources
from sandlot.errors import SandlotError
from sandlot.templates import sandlotfile as sf
from sandlot.templates.context import BuildContext, ContextError, Owner, digest, place
from sandlot.templates.layers import LayerStore, cache_key
from sandlot.templates.stack import lookup, make_parents, resolve_owner
from sandlot.templates.store import Template, TemplateStore

BUILD_RESOURCES = Resources(vcpus=2, memory_mb=2048, disk_mb=10240)
STEP_TIMEOUT = 3600.0
STEP_TEMPLATE_PREFIX = ".build-"
"""What a build step's sandbox records as its template (a name no template can have)."""


@dataclass(frozen=True)
class Recipe:
    """A build to run: its id, whose it is, the template it makes, its parsed
    Sandlotfile and the directory its context was unpacked in."""

    build_id: str
    org_id: str
    name: str
    instructions: list[sf.Instruction]
    context_dir: Path
    no_cache: bool


@dataclass
class BuildState:
    """What the steps so far have made: the layers, and how a sandbox will start."""

    build_id: str
    template: Template
    key: str
    steps: int = 0
    cached: int = 0
    no_cache: bool = False
    """Run every step again, replacing the layers the cache holds for them."""
    cmd: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)


class BuildFailed(Exception):
    """A step failed; the message is what the build's error says."""


@dataclass(eq=False, kw_only=True)
class BuildSteps:
    catalog: Catalog
    templates: TemplateStore
    layers: LayerStore
    host: Host
    sandboxes: Sandboxes
    work: Work
    held: dict[str, set[Path]] = field(default_factory=dict, init=False)
    """Layers of builds in flight, by build, which template collection must keep."""

    async def run(
        self, recipe: Recipe, out: CappedLog, on_step: Callable[[BuildState], None]
    ) -> tuple[Template, BuildState]:
        """The template the recipe makes, not yet installed, and what its steps did; its
        layers stay in `held` until the caller drops them once it is installed."""
        base = self.catalog.visible(recipe.org_id, recipe.instructions[0].text.strip())
        state = BuildState(
            build_id=recipe.build_id,
            template=replace(base, name=recipe.name, source="build", owner=recipe.org_id),
            key=first_key(base.digest, recipe.org_id),
            entrypoint=[],
            cmd=list(base.start_command),
            no_cache=recipe.no_cache,
        )
        total = len(recipe.instructions)
        out.write(f"Step 1/{total}: FROM {base.name} ({base.digest})\n")
        with contextlib.closing(BuildContext(recipe.context_dir)) as context:
            for number, instruction in enumerate(recipe.instructions[1:], start=2):
                out.write(f"Step {number}/{total}: {instruction.source}\n")
                await self._step(recipe.build_id, recipe.org_id, state, instruction, context, out)
                on_step(state)
        template = self.finished(
            replace(state.template, start_command=(*state.entrypoint, *state.cmd))
        )
        return template, state

    async def _step(
        self,
        build_id: str,
        org_id: str,
        state: BuildState,
        instruction: sf.Instruction,
        context: BuildContext,
        out: CappedLog,
    ) -> None:
        t = state.template
        keyword = instruction.keyword
        if keyword == "ENV":
            state.template = replace(t, env={**t.env, **sf.env_pairs(instruction, t.env)})
        elif keyword == "USER":
            user = sf.substitute(instruction.text, t.env).strip()
            self._owner(state, user, instruction)  # the user must exist by now
            state.template = replace(t, user=user)
        elif keyword == "EXPOSE":
            ports = sorted({*t.ports, *sf.ports(instruction, t.env)})
            state.template = replace(t, ports=tuple(ports))
        elif keyword == "CMD":
            state.cmd = sf.command(instruction)
        elif keyword == "ENTRYPOINT":
            state.entrypoint = sf.command(instruction)
            state.cmd = []  # as in Docker: a new ENTRYPOINT drops the inherited CMD
        elif keyword == "READY":
            state.template = replace(t, ready_command=instruction.text)
        elif keyword == "WORKDIR":
            path = _absolute(t.workdir, sf.substitute(instruction.text, t.env))
            state.template = replace(t, workdir=path)
            if lookup(t.layers, path) is None:
                key = workdir_key(state.key, path)
                await self._host_layer(state, key, instruction, out, self._mkdirs(state, path))
        elif keyword in ("COPY", "ADD"):
            await self._copy(state, instruction, context, out)
        elif keyword == "RUN":
            await self._run(build_id, org_id, state, instruction, out)

    def _mkdirs(self, state: BuildState, path: str) -> Callable[[Path], None]:
        offset = self.host.uid_offset
        layers = state.template.layers

        def fill(root: Path) -> None:
            os.close(make_parents(root, layers, path, offset))

        return fill

    def _owner(self, state: BuildState, spec: str, instruction: sf.Instruction) -> tuple[int, int]:
        try:
            uid, gid = resolve_owner(state.template.layers, spec)
        except LookupError as exc:
            raise BuildFailed(f"line {instruction.line}: {exc}") from None
        if not (0 <= uid < 65536 and 0 <= gid < 65536):
            raise BuildFailed(f"line {instruction.line}: ids must be below 65536")
        return uid, gid

    async def _copy(
        self, state: BuildState, instruction: sf.Instruction, context: BuildContext, out: CappedLog
    ) -> None:
        t = state.template
        args = sf.copy_args(instruction, t.env)
        destination = _absolute(t.workdir, args.destination)
        if args.destination.endswith("/") and not destination.endswith("/"):
            destination += "/"
        try:
            sources = context.sources(args.sources, destination)
        except ContextError as exc:
            raise BuildFailed(f"line {instruction.line}: {exc}") from None
        uid, gid = self._owner(state, args.chown, instruction) if args.chown else (0, 0)
        inputs = await asyncio.to_thread(digest, context, sources)
        key = copy_key(state.key, instruction.keyword, args, destination, inputs)
        offset = self.host.uid_offset
        layers = t.layers
        into_dir = destination.endswith("/") or any(str(s.target) != "." for s in sources)
        owner = Owner(uid + offset, gid + offset, args.chmod)

        def fill(root: Path) -> None:
            directory = destination if into_dir else str(PurePosixPath(destination).parent)
            host_dir = make_parents(root, layers, directory, offset)
            try:
                place(
                    context,
                    sources,
                    host_dir,
                    at=PurePosixPath(directory),
                    name=None if into_dir else PurePosixPath(destination).name,
                    owner=owner,
                    extract=args.extract,
                    uid_offset=offset,
                    scratch=root.parent,
                )
            finally:
                os.close(host_dir)

        await self._host_layer(state, key, instruction, out, fill)

    async def _host_layer(
        self,
        state: BuildState,
        key: str,
        instruction: sf.Instruction,
        out: CappedLog,
        fill: Callable[[Path], None],
    ) -> None:
        if self._from_cache(state, key, out):
            return
        with self.layers.staging(build_layer_id(key, state.build_id, state.no_cache)) as staged:
            try:
                await asyncio.to_thread(fill, staged)
            except (OSError, LookupError) as exc:
                # Our own refusals name paths inside the template; the system's
                # errors would name the host's.
                ours = isinstance(exc, LookupError) or exc.errno is None
                why = str(exc) if ours else public_reason(exc, instruction.source)
                raise BuildFailed(f"line {instruction.line}: {why}") from None
            found = self._commit(state, staged, key, instruction)
        self._push(state, key, found)

    async def _run(
        self,
        build_id: str,
        org_id: str,
        state: BuildState,
        instruction: sf.Instruction,
        out: CappedLog,
    ) -> None:
        t = state.template
        argv = sf.command(instruction)
        key = run_key(state.key, argv, t.env, t.workdir, t.user)
        if self._from_cache(state, key, out):
            return
        stage = replace(t, name=f"{STEP_TEMPLATE_PREFIX}{build_id}", digest=state.key)
        view = await self.sandboxes.create(
            org_id,
            CreateSandbox(
                template=stage.name,
                resources=BUILD_RESOURCES,
                env=dict(t.env),
                metadata={"sandlot.build": build_id},
            ),
            from_template=stage,
        )
        try:
            exit_code = await self._stream(org_id, view.id, argv, t, out)
            if exit_code != 0:
                raise BuildFailed(
                    f"line {instruction.line}: {instruction.source!r} exited with {exit_code}"
                )
            # What a step wrote may still be in a user-space kernel's cache (gVisor).
            await self.work.run_command(org_id, view.id, ["sync"], user="0")
            # export_changes kills everything in the step's sandbox before it reads the
            # changes: nothing left running (or exec'd into it) can alter the capture.
            with self.layers.staging(build_layer_id(key, state.build_id, state.no_cache)) as staged:
                await self.host.export_changes(view.id, staged)
                found = self._commit(state, staged, key, instruction)
        finally:
            with contextlib.suppress(SandlotError):
                await self.sandboxes.destroy(org_id, view.id)
        self._push(state, key, found)

    async def _stream(
        self, org_id: str, sandbox_id: str, argv: list[str], t: Template, out: CappedLog
    ) -> int | str:
        info = await self.work.start_process(
            org_id,
            sandbox_id,
            StartProcess(command=argv, cwd=t.workdir, env=dict(t.env), timeout=STEP_TIMEOUT),
        )
        attachment = await self.work.attach(org_id, sandbox_id, info["process_id"])
        async for _, data in attachment:
            out.write(data.decode(errors="replace"))
        result = attachment.result
        if result is None:
            return "an unknown status (the process was lost)"
        if result.timed_out:
            return f"a timeout after {STEP_TIMEOUT:.0f} s"
        return result.exit_code if result.exit_code is not None else f"signal {result.signal}"

    def _from_cache(self, state: BuildState, key: str, out: CappedLog) -> bool:
        """Count a layer-making step, and stack the layer the cache holds for it if
        there is one (and the build may use it)."""
        state.steps += 1
        found = None if state.no_cache else self.layers.find(key)
        if found is None:
            return False
        state.cached += 1
        out.write(" ---> cached\n")
        self._push(state, key, found)
        return True

    def _commit(
        self, state: BuildState, staged: Path, key: str, instruction: sf.Instruction
    ) -> Path:
        layer_id = build_layer_id(key, state.build_id, state.no_cache)
        remap = key if layer_id != key else None
        return self.layers.commit(staged, layer_id, instruction.source, key=remap)

    def _push(self, state: BuildState, key: str, layer: Path) -> None:
        state.key = key
        state.template = replace(state.template, layers=(layer, *state.template.layers))
        self.held.setdefault(state.build_id, set()).add(layer)

    def finished(self, template: Template) -> Template:
        """Named by what it is (layers and start settings), so the same build twice
        gives the same digest."""
        meta = template.to_meta(self.templates.root)
        for unnamed in ("digest", "createdAt", "sizeBytes"):
            meta.pop(unnamed)
        return replace(
            template,
            digest=cache_key(meta),
            size_bytes=sum(self.layers.size(p) for p in template.layers),
            created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )


def _absolute(workdir: str, path: str) -> str:
    """`path` as the sandbox resolves it from `workdir`: `..` stops at `/`."""
    joined = "/" + inside(posixpath.join(workdir or "/", path))
    clean = "/" if joined == "/." else joined
    trailing = "/" if path.endswith("/") and clean != "/" else ""
    return clean + trailing
