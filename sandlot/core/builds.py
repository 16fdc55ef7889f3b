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
import re
import shutil
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from sandlot.beneath import Beneath, FileTooLarge
from sandlot.core.build_log import BUILD_LOG_MAX_BYTES, CappedLog
from sandlot.core.build_steps import STEP_TEMPLATE_PREFIX, BuildFailed, BuildSteps, Recipe
from sandlot.core.catalog import Catalog
from sandlot.core.host import Host
from sandlot.core.incidents import internal_error, public_reason
from sandlot.domain import ids
from sandlot.domain.host_values import BackendError
from sandlot.errors import (
    BuildNotFoundError,
    InvalidConfigError,
    InvalidStateError,
    SandlotError,
    TemplateNotFoundError,
)
from sandlot.store import builds as build_rows
from sandlot.store.database import Database
from sandlot.store.tables import TemplateBuildRow
from sandlot.templates import sandlotfile as sf
from sandlot.templates.context import (
    ContextError,
    unpack_context,
)
from sandlot.templates.importer import ImportRejected, import_image
from sandlot.templates.store import COLLECT_GRACE_SECONDS, Template, TemplateStore

SANDLOTFILE_MAX_BYTES = 1 << 20
"""A recipe is text a person wrote; a larger one is a mistake or an attack."""
TEMPLATE_NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"
FINISHED = ("ready", "failed")


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


@dataclass(eq=False, kw_only=True)
class TemplateBuilds:
    db: Database
    catalog: Catalog
    templates: TemplateStore
    host: Host
    steps: BuildSteps
    _tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict, init=False)

    @property
    def logs_root(self) -> Path:
        return self.templates.root / ".builds"

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
            self.catalog.visible(org_id, instructions[0].text.strip())
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
        work = self._build(Recipe(view.id, org_id, name, instructions, context, no_cache))
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
        with self.db.session() as s:
            row = build_rows.get(s, org_id, build_id)
            if row is None:
                raise BuildNotFoundError(
                    f"build {build_id} does not exist", details={"buildId": build_id}
                )
            return BuildView.of(row)

    def list_builds(self, org_id: str) -> list[BuildView]:
        with self.db.session() as s:
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
        with self.db.session() as s:
            for row in build_rows.unfinished(s):
                row.status = "failed"
                row.error = "interrupted by a server restart; start the build again"
                row.finished_at = datetime.now(UTC)
            steps = [(r.org_id, r.id) for r in build_rows.step_sandboxes(s, STEP_TEMPLATE_PREFIX)]
        for org_id, sandbox_id in steps:
            with contextlib.suppress(SandlotError):
                await self.steps.sandboxes.destroy(org_id, sandbox_id)
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
        template = self.catalog.visible(org_id, name)
        if template.owner is None and org_id is not None:
            raise InvalidStateError(
                f"template {name!r} is built in and cannot be deleted by an organisation"
            )
        users = self.catalog.users(template)
        if users and not force:
            raise InvalidStateError(
                f"template {name!r} is used by {len(users)} sandboxes or snapshots "
                f"({', '.join(users[:5])}); remove them first or delete with force",
                details={"template": name, "usedBy": users},
            )
        self.templates.remove(name, template.owner)
        self.templates.collect(self.catalog.layers_in_use().union(*self.steps.held.values()))

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
        with self.db.session() as s:
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
        with self.db.session() as s:
            row = build_rows.get(s, None, build_id)
            if row is not None:
                for key, value in changes.items():
                    setattr(row, key, value)

    async def _build(self, recipe: Recipe) -> None:
        build_id, name = recipe.build_id, recipe.name
        with contextlib.closing(
            CappedLog.open(self._log_path(build_id), BUILD_LOG_MAX_BYTES)
        ) as out:
            try:
                template, state = await self.steps.run(
                    recipe,
                    out,
                    lambda state: self._update(
                        build_id, steps=state.steps, cached_steps=state.cached
                    ),
                )
                self.templates.install(
                    self.templates.staging_dir(name, template.digest, recipe.org_id), template
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
                self.steps.held.pop(build_id, None)

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
                    uid_offset=self.host.uid_offset,
                    on_progress=lambda line: print(line, file=out),
                )
                template = self.steps.finished(
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
