"""Template builds from a Sandlotfile, and imports of image archives, in the background.

Each RUN runs in a real Sandlot sandbox (the same runtime, limits and network policy
users get) whose writable layer becomes the step's layer; COPY, ADD and WORKDIR write
their layer on the host, reading the context only. Every layer is named by its cache
key (the layers below, the step and what it reads), so an unchanged prefix of a
Sandlotfile is found instead of run: a rebuild of the same file runs nothing.

A build is a row (status, error, steps and cached steps) and a log file that followers
read from any offset; a server that dies mid-build marks it failed when it starts again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import posixpath
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from sandlot.beneath import Beneath, FileTooLarge, inside
from sandlot.core.build_cache import copy_key, first_key, run_key, workdir_key
from sandlot.core.build_cache import layer_id as build_layer_id
from sandlot.core.build_log import BUILD_LOG_MAX_BYTES, CappedLog
from sandlot.core.incidents import internal_error, public_reason
from sandlot.core.models import CreateSandbox, StartProcess
from sandlot.domain import ids
from sandlot.domain.host_values import BackendError
from sandlot.domain.resources import Resources
from sandlot.errors import (
    BuildNotFoundError,
    InvalidConfigError,
    InvalidStateError,
    SandlotError,
    TemplateNotFoundError,
)
from sandlot.store import builds as build_rows
from sandlot.store.tables import TemplateBuildRow
from sandlot.templates import sandlotfile as sf
from sandlot.templates.context import (
    BuildContext,
    ContextError,
    Owner,
    digest,
    place,
    unpack_context,
)
from sandlot.templates.importer import ImportRejected, import_image
from sandlot.templates.layers import LayerStore, cache_key
from sandlot.templates.stack import lookup, make_parents, resolve_owner
from sandlot.templates.store import COLLECT_GRACE_SECONDS, Template

if TYPE_CHECKING:
    from sandlot.core.service import SandboxService


BUILD_RESOURCES = Resources(vcpus=2, memory_mb=2048, disk_mb=10240)
STEP_TIMEOUT = 3600.0
SANDLOTFILE_MAX_BYTES = 1 << 20
"""A recipe is text a person wrote; a larger one is a mistake or an attack."""
TEMPLATE_NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"
FINISHED = ("ready", "failed")
STEP_TEMPLATE_PREFIX = ".build-"
"""What a build step's sandbox records as its template (a name no template can have)."""


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


@dataclass(frozen=True)
class BuildView:
    id: str
    template: str
    kind: str
    status: str
    error: str | None
    digest: str | None
    steps: int
    cached_steps: int
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, row: TemplateBuildRow) -> BuildView:
        return cls(**{f.name: getattr(row, f.name) for f in dataclasses.fields(cls)})


class BuildFailed(Exception):
    """A step failed; the message is what the build's error says."""


class TemplateBuilds:
    def __init__(self, service: SandboxService) -> None:
        self.service = service
        self.templates = service.templates
        self.layers = LayerStore(self.templates.layers_root)
        self.logs_root = self.templates.root / ".builds"
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._held: dict[str, set[Path]] = {}
        """Layers of builds in flight, by build, which template collection must keep."""

    # ---- starting and reading builds ----------------------------------------------

    def uploads_dir(self) -> Path:
        """Where archives sent to the API wait for their build or import."""
        uploads = self.templates.root / ".uploads"
        uploads.mkdir(parents=True, exist_ok=True)
        return uploads

    async def start_build(
        self, org_id: str, name: str, upload: Path, file: str, *, no_cache: bool = False
    ) -> BuildView:
        """Unpack the context (a tar, `upload`, which the build owns) and check its
        Sandlotfile `file` now, so a mistake is a 400 naming the line; then build in the
        background."""
        context = upload.with_name(upload.name + ".context")
        try:
            await asyncio.to_thread(unpack_context, upload, context)
            text = _sandlotfile(context, file)
            instructions = sf.parse(text)
            self._check_name(org_id, name)
            self.service.catalog.visible(org_id, instructions[0].text.strip())
        except sf.SandlotfileError as exc:
            _remove(context)
            raise InvalidConfigError(f"Sandlotfile {exc}", details={"line": exc.line}) from None
        except ContextError as exc:
            _remove(context)
            raise InvalidConfigError(str(exc)) from None
        except BaseException:
            _remove(context)
            raise
        finally:
            _remove(upload)
        view = self._new(org_id, name, "build")
        work = self._build(view.id, org_id, name, instructions, context, no_cache)
        self._spawn(view.id, work, context)
        return view

    def start_import(self, org_id: str, name: str, archive: Path) -> BuildView:
        """Import an image archive in the background; `archive` (a file or an OCI layout
        directory) is owned by the import and removed after."""
        try:
            self._check_name(org_id, name)
        except SandlotError:
            _remove(archive)
            raise
        view = self._new(org_id, name, "import")
        self._spawn(view.id, self._import(view.id, org_id, name, archive), archive)
        return view

    def get(self, org_id: str | None, build_id: str) -> BuildView:
        with self.service.db.session() as s:
            row = build_rows.get(s, org_id, build_id)
            if row is None:
                raise BuildNotFoundError(
                    f"build {build_id} does not exist", details={"buildId": build_id}
                )
            return BuildView.of(row)

    def list_builds(self, org_id: str) -> list[BuildView]:
        with self.service.db.session() as s:
            return [BuildView.of(r) for r in build_rows.of_org(s, org_id)]

    async def follow_log(self, org_id: str, build_id: str) -> AsyncIterator[bytes]:
        """The log from its start, then what is written until the build ends."""
        self.get(org_id, build_id)
        path = self._log_path(build_id)
        offset = 0
        while True:
            finished = self.get(org_id, build_id).status in FINISHED
            chunk = await asyncio.to_thread(_read_from, path, offset)
            offset += len(chunk)
            if chunk:
                yield chunk
            elif finished:
                return
            else:
                await asyncio.sleep(0.1)

    async def settle(self) -> None:
        """Builds a stopped server left running cannot go on: say so, and remove the
        sandboxes their steps were running in."""
        with self.service.db.session() as s:
            for row in build_rows.unfinished(s):
                row.status = "failed"
                row.error = "interrupted by a server restart; start the build again"
                row.finished_at = datetime.now(UTC)
            steps = [(r.org_id, r.id) for r in build_rows.step_sandboxes(s, STEP_TEMPLATE_PREFIX)]
        for org_id, sandbox_id in steps:
            with contextlib.suppress(SandlotError):
                await self.service.destroy(org_id, sandbox_id)
        # Uploads and contexts of requests a dead server was serving; young ones may be
        # another server's (several can share a template directory).
        cutoff = time.time() - COLLECT_GRACE_SECONDS
        for leftover in self.uploads_dir().iterdir():
            if leftover.lstat().st_mtime < cutoff:
                _remove(leftover)

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ---- templates an organisation sees --------------------------------------------

    def delete(self, org_id: str | None, name: str, force: bool) -> None:
        """Refused while sandboxes or snapshots use the template, unless forced; forced,
        the layers they run on stay until nothing uses them."""
        template = self.service.catalog.visible(org_id, name)
        if template.owner is None and org_id is not None:
            raise InvalidStateError(
                f"template {name!r} is built in and cannot be deleted by an organisation"
            )
        users = self.service.catalog.users(template)
        if users and not force:
            raise InvalidStateError(
                f"template {name!r} is used by {len(users)} sandboxes or snapshots "
                f"({', '.join(users[:5])}); remove them first or delete with force",
                details={"template": name, "usedBy": users},
            )
        self.templates.remove(name, template.owner)
        self.templates.collect(self.service.catalog.layers_in_use().union(*self._held.values()))

    # ---- the background work --------------------------------------------------------

    def _check_name(self, org_id: str, name: str) -> None:
        if not re.match(TEMPLATE_NAME, name):
            raise InvalidConfigError(
                f"template name {name!r} must be 1-63 lowercase letters, digits, '.', '_' "
                "or '-', starting with a letter or digit",
                details={"template": name},
            )
        try:
            existing = self.templates.get(name, org_id)
        except TemplateNotFoundError:
            return
        if existing.owner is None:  # the organisation's own would hide the built-in one
            raise InvalidStateError(
                f"template name {name!r} is a built-in template's; choose another",
                details={"template": name},
            )

    def _new(self, org_id: str, name: str, kind: str) -> BuildView:
        row = TemplateBuildRow(
            id=ids.new_build_id(),
            org_id=org_id,
            template=name,
            kind=kind,
            status="running",
            steps=0,
            cached_steps=0,
            created_at=datetime.now(UTC),
        )
        with self.service.db.session() as s:
            s.add(row)
            s.flush()
            view = BuildView.of(row)
        self.logs_root.mkdir(parents=True, exist_ok=True)
        self._log_path(view.id).touch()
        return view

    def _spawn(self, build_id: str, work: Coroutine[Any, Any, None], scratch: Path) -> None:
        async def run() -> None:
            try:
                await work
            finally:
                _remove(scratch)
                self._tasks.pop(build_id, None)

        self._tasks[build_id] = asyncio.get_running_loop().create_task(run())

    def _log(self, build_id: str) -> contextlib.closing[CappedLog]:
        """The build's log, bounded, for a `with` block."""
        return contextlib.closing(CappedLog.open(self._log_path(build_id), BUILD_LOG_MAX_BYTES))

    def _log_path(self, build_id: str) -> Path:
        return self.logs_root / f"{build_id}.log"

    def _finish(self, build_id: str, **changes: Any) -> None:
        self._update(build_id, finished_at=datetime.now(UTC), **changes)

    def _update(self, build_id: str, **changes: Any) -> None:
        with self.service.db.session() as s:
            row = build_rows.get(s, None, build_id)
            if row is not None:
                for key, value in changes.items():
                    setattr(row, key, value)

    async def _build(
        self,
        build_id: str,
        org_id: str,
        name: str,
        instructions: list[sf.Instruction],
        context_dir: Path,
        no_cache: bool,
    ) -> None:
        with contextlib.closing(
            CappedLog.open(self._log_path(build_id), BUILD_LOG_MAX_BYTES)
        ) as out:
            try:
                base = self.service.catalog.visible(org_id, instructions[0].text.strip())
                state = BuildState(
                    build_id=build_id,
                    template=replace(base, name=name, source="build", owner=org_id),
                    key=first_key(base.digest, org_id),
                    entrypoint=[],
                    cmd=list(base.start_command),
                    no_cache=no_cache,
                )
                total = len(instructions)
                out.write(f"Step 1/{total}: FROM {base.name} ({base.digest})\n")
                with contextlib.closing(BuildContext(context_dir)) as context:
                    for number, instruction in enumerate(instructions[1:], start=2):
                        out.write(f"Step {number}/{total}: {instruction.source}\n")
                        await self._step(build_id, org_id, state, instruction, context, out)
                        self._update(build_id, steps=state.steps, cached_steps=state.cached)
                template = self._finished(
                    replace(state.template, start_command=(*state.entrypoint, *state.cmd))
                )
                self.templates.install(
                    self.templates.staging_dir(name, template.digest, org_id), template
                )
                out.close_with(
                    f"Template {name} ready: digest {template.digest}, "
                    f"{len(template.layers)} layers, {state.cached}/{state.steps} steps cached\n"
                )
                self._finish(build_id, status="ready", digest=template.digest)
            except (
                BuildFailed,
                sf.SandlotfileError,
                ContextError,
                SandlotError,
                BackendError,
                OSError,
            ) as exc:
                message = (
                    str(exc)
                    if isinstance(exc, (BuildFailed, sf.SandlotfileError, ContextError))
                    else public_reason(exc, f"build {build_id} of {name}")
                )
                out.close_with(f"Build failed: {message}\n")
                self._finish(build_id, status="failed", error=message)
            except asyncio.CancelledError:
                self._finish(build_id, status="failed", error="cancelled: the server stopped")
                raise
            except Exception as exc:  # a defect: recorded, never a build stuck running
                message = internal_error(exc, f"build {build_id} of {name}").message
                out.close_with(f"Build failed: {message}\n")
                self._finish(build_id, status="failed", error=message)
            finally:
                self._held.pop(build_id, None)

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
        offset = self.service.host.uid_offset
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
        offset = self.service.host.uid_offset
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
        view = await self.service.create(
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
            await self.service.run_command(org_id, view.id, ["sync"], user="0")
            # export_changes kills everything in the step's sandbox before it reads the
            # changes: nothing left running (or exec'd into it) can alter the capture.
            with self.layers.staging(build_layer_id(key, state.build_id, state.no_cache)) as staged:
                await self.service.host.export_changes(view.id, staged)
                found = self._commit(state, staged, key, instruction)
        finally:
            with contextlib.suppress(SandlotError):
                await self.service.destroy(org_id, view.id)
        self._push(state, key, found)

    async def _stream(
        self, org_id: str, sandbox_id: str, argv: list[str], t: Template, out: CappedLog
    ) -> int | str:
        info = await self.service.start_process(
            org_id,
            sandbox_id,
            StartProcess(command=argv, cwd=t.workdir, env=dict(t.env), timeout=STEP_TIMEOUT),
        )
        attachment = await self.service.attach(org_id, sandbox_id, info["process_id"])
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
        self._held.setdefault(state.build_id, set()).add(layer)

    def _finished(self, template: Template) -> Template:
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

    async def _import(self, build_id: str, org_id: str, name: str, archive: Path) -> None:
        with contextlib.closing(
            CappedLog.open(self._log_path(build_id), BUILD_LOG_MAX_BYTES)
        ) as out:
            try:
                out.write(f"Importing {archive.name}\n")
                config, layers = await asyncio.to_thread(
                    import_image,
                    archive,
                    self.templates.layers_root,
                    uid_offset=self.service.host.uid_offset,
                    on_progress=lambda line: print(line, file=out),
                )
                template = self._finished(
                    Template(
                        name=name,
                        digest="",
                        layers=tuple(layers),
                        env=config.env,
                        workdir=config.workdir or "/",
                        user=config.user,
                        start_command=(*config.entrypoint, *config.cmd),
                        ports=tuple(config.ports),
                        source="import",
                        owner=org_id,
                    )
                )
                self.templates.install(
                    self.templates.staging_dir(name, template.digest, org_id), template
                )
                out.close_with(
                    f"Template {name} ready: digest {template.digest}, {len(layers)} layers\n"
                )
                self._finish(build_id, status="ready", digest=template.digest, steps=len(layers))
            except (ImportRejected, OSError) as exc:
                why = str(exc) if isinstance(exc, ImportRejected) else public_reason(exc, name)
                out.close_with(f"Import failed: {why}\n")
                self._finish(build_id, status="failed", error=why)
            except asyncio.CancelledError:
                self._finish(build_id, status="failed", error="cancelled: the server stopped")
                raise


def _sandlotfile(context: Path, file: str) -> str:
    """The recipe named by `file`, read beneath the context by the kernel (a symlinked
    directory on the way resolves inside the context, never on the host) and bounded."""
    relative = PurePosixPath(file)
    if relative.is_absolute() or ".." in relative.parts:
        raise InvalidConfigError(f"the Sandlotfile path {file!r} must be inside the context")
    try:
        with contextlib.closing(Beneath(context)) as tree:
            data = tree.read_bytes(file, SANDLOTFILE_MAX_BYTES)
    except FileTooLarge:
        raise InvalidConfigError(
            f"the Sandlotfile {file!r} is larger than {SANDLOTFILE_MAX_BYTES} bytes",
            details={"file": file, "limit": SANDLOTFILE_MAX_BYTES},
        ) from None
    except (OSError, ValueError):
        raise InvalidConfigError(
            f"the build context has no Sandlotfile at {file!r}; put one there or name "
            "another with `file`",
            details={"file": file},
        ) from None
    return data.decode(errors="replace")


def _absolute(workdir: str, path: str) -> str:
    """`path` as the sandbox resolves it from `workdir`: `..` stops at `/`."""
    joined = "/" + inside(posixpath.join(workdir or "/", path))
    clean = "/" if joined == "/." else joined
    trailing = "/" if path.endswith("/") and clean != "/" else ""
    return clean + trailing


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read(1 << 16)
    except FileNotFoundError:
        return b""


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
