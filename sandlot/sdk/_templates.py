"""`client.templates`: list, build (from a Sandlotfile and a context directory), import
(a `docker save` archive or an OCI image layout) and delete templates.

A build uploads the context as a tar, leaving out what `.dockerignore` names, then
follows the build's log until it ends: `on_log` sees each line as the server writes it.
"""

from __future__ import annotations

import builtins
import io
import os
import tarfile
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import quote

from pydantic import TypeAdapter

from sandlot.dockerignore import IGNORE_FILE, IgnoreRules
from sandlot.errors import BuildFailedError
from sandlot.sdk._http import AsyncTransport, Call, SyncTransport
from sandlot.sdk._models import _Model

LogCallback = Callable[[str], None]
INLINE_SANDLOTFILE = ".sandlot-build/Sandlotfile"
"""Where a Sandlotfile given as text, or from outside the context, travels in the tar."""


class TemplateInfo(_Model):
    name: str
    digest: str
    source: str
    """`debian` (built in), `build` (a Sandlotfile) or `import` (an image archive)."""
    built_in: bool
    layers: int
    size_bytes: int
    env: dict[str, str]
    workdir: str
    user: str
    start_command: list[str]
    ready_command: str | None = None
    ports: list[int]
    created_at: str


class BuildInfo(_Model):
    id: str
    template: str
    kind: str
    status: str
    """`running`, then `ready` or `failed`."""
    error: str | None = None
    digest: str | None = None
    steps: int
    cached_steps: int
    created_at: datetime
    finished_at: datetime | None = None


_TEMPLATES = TypeAdapter(list[TemplateInfo])
_BUILDS = TypeAdapter(list[BuildInfo])


def _template_path(name: str, suffix: str = "") -> str:
    return f"/v1/templates/{quote(name, safe='')}{suffix}"


def _list_call() -> Call[list[TemplateInfo]]:
    return Call("GET", "/v1/templates", parse=_TEMPLATES.validate_python)


def _get_call(name: str) -> Call[TemplateInfo]:
    return Call("GET", _template_path(name), parse=TemplateInfo.model_validate)


def _delete_call(name: str, force: bool) -> Call[TemplateInfo]:
    params = {"force": force}
    return Call("DELETE", _template_path(name), parse=TemplateInfo.model_validate, params=params)


def _build_call(name: str, file: str, no_cache: bool) -> Call[BuildInfo]:
    params: dict[str, str | bool] = {"name": name, "file": file, "noCache": no_cache}
    return Call("POST", "/v1/templates/builds", parse=BuildInfo.model_validate, params=params)


def _import_call(name: str) -> Call[BuildInfo]:
    return Call(
        "POST", "/v1/templates/imports", parse=BuildInfo.model_validate, params={"name": name}
    )


def _build_get_call(build_id: str) -> Call[BuildInfo]:
    path = f"/v1/templates/builds/{quote(build_id, safe='')}"
    return Call("GET", path, parse=BuildInfo.model_validate)


def _builds_call() -> Call[list[BuildInfo]]:
    return Call("GET", "/v1/templates/builds", parse=_BUILDS.validate_python)


def _logs_call(build_id: str) -> Call[None]:
    path = f"/v1/templates/builds/{quote(build_id, safe='')}/logs"
    return Call("GET", path, parse=lambda _: None, read_timeout=None)


def context_archive(
    context: str | os.PathLike[str], sandlotfile: str | os.PathLike[str]
) -> tuple[IO[bytes], str]:
    """The context directory as a tar (in a temporary file) and the Sandlotfile's path
    inside it. `sandlotfile` is a path (inside the context or not) or the file's text."""
    root = Path(context).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"build context {root} is not a directory")
    rules = IgnoreRules.read(root / IGNORE_FILE)
    text, inside = _sandlotfile(root, sandlotfile)
    spool = tempfile.TemporaryFile()  # noqa: SIM115  (the caller closes it)
    with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(root):
            base = Path(dirpath)
            kept = []
            for name in sorted(dirnames):
                relative = (base / name).relative_to(root).as_posix()
                if not rules.ignored(relative):
                    kept.append(name)
                    tar.add(base / name, arcname=relative, recursive=False)
            dirnames[:] = kept
            for name in sorted(filenames):
                relative = (base / name).relative_to(root).as_posix()
                if not rules.ignored(relative) or relative == inside:
                    tar.add(base / name, arcname=relative, recursive=False)
        if text is not None:
            data = text.encode()
            info = tarfile.TarInfo(INLINE_SANDLOTFILE)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    spool.seek(0)
    return cast(IO[bytes], spool), inside if text is None else INLINE_SANDLOTFILE


def _sandlotfile(root: Path, sandlotfile: str | os.PathLike[str]) -> tuple[str | None, str]:
    """(text to send inline, or None if the file is in the context; its path in the tar)."""
    if isinstance(sandlotfile, str) and (
        "\n" in sandlotfile or sandlotfile.lstrip().upper().startswith("FROM ")
    ):
        return sandlotfile, INLINE_SANDLOTFILE
    path = Path(sandlotfile)
    path = path if path.is_absolute() else Path.cwd() / path
    if not path.is_file():
        raise FileNotFoundError(f"Sandlotfile {path} does not exist")
    resolved = path.resolve()
    if resolved.is_relative_to(root):
        return None, resolved.relative_to(root).as_posix()
    return resolved.read_text(), INLINE_SANDLOTFILE


def image_archive(source: str | os.PathLike[str]) -> IO[bytes]:
    """A `docker save` / OCI archive file as it is, or an OCI layout directory as a tar."""
    path = Path(source)
    if path.is_file():
        return path.open("rb")
    if not (path / "index.json").is_file():
        raise FileNotFoundError(
            f"{path} is neither an image archive nor an OCI image layout (no index.json)"
        )
    spool = tempfile.TemporaryFile()  # noqa: SIM115  (the caller closes it)
    with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in sorted(path.iterdir()):
            tar.add(entry, arcname=entry.name)
    spool.seek(0)
    return cast(IO[bytes], spool)


class _LineSink(io.RawIOBase):
    """Hands each complete line of a streamed log to a callback."""

    def __init__(self, on_line: LogCallback) -> None:
        self._on_line = on_line
        self._pending = b""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        for line in lines:
            self._on_line(line.decode(errors="replace"))
        return len(chunk)

    def flush_pending(self) -> None:
        if self._pending:
            self._on_line(self._pending.decode(errors="replace"))
            self._pending = b""


def _outcome(build: BuildInfo) -> BuildInfo:
    if build.status == "failed":
        raise BuildFailedError(
            f"{build.kind} of template {build.template} failed: {build.error}",
            details={"buildId": build.id},
        )
    return build


class Templates:
    def __init__(self, transport: SyncTransport) -> None:
        self._transport = transport

    def list(self) -> builtins.list[TemplateInfo]:
        return self._transport.send(_list_call())

    def get(self, name: str) -> TemplateInfo:
        return self._transport.send(_get_call(name))

    def delete(self, name: str, *, force: bool = False) -> TemplateInfo:
        """Refused (INVALID_STATE) while sandboxes or snapshots use it, unless `force`."""
        return self._transport.send(_delete_call(name, force))

    def build(
        self,
        name: str,
        dockerfile: str | os.PathLike[str] = "Sandlotfile",
        context: str | os.PathLike[str] = ".",
        *,
        on_log: LogCallback | None = None,
        wait: bool = True,
        no_cache: bool = False,
    ) -> BuildInfo:
        """Build `name` from a Sandlotfile (a path, or its text) and a context directory.
        With `wait`, returns once it is ready and raises BuildFailedError if it failed;
        `no_cache` runs every step again."""
        archive, inside = context_archive(context, dockerfile)
        with archive:
            build = self._transport.upload(_build_call(name, inside, no_cache), archive)
        return self.wait(build.id, on_log=on_log) if wait else build

    def import_image(
        self,
        name: str,
        archive: str | os.PathLike[str],
        *,
        on_log: LogCallback | None = None,
        wait: bool = True,
    ) -> BuildInfo:
        """Import a `docker save` archive, an OCI image archive or an OCI layout directory."""
        with image_archive(archive) as body:
            build = self._transport.upload(_import_call(name), body)
        return self.wait(build.id, on_log=on_log) if wait else build

    def wait(self, build_id: str, *, on_log: LogCallback | None = None) -> BuildInfo:
        """Follow the build's log until it ends."""
        sink = _LineSink(on_log or (lambda line: None))
        self._transport.download(_logs_call(build_id), cast(IO[bytes], sink))
        sink.flush_pending()
        return _outcome(self.get_build(build_id))

    def get_build(self, build_id: str) -> BuildInfo:
        return self._transport.send(_build_get_call(build_id))

    def list_builds(self) -> builtins.list[BuildInfo]:
        return self._transport.send(_builds_call())


class AsyncTemplates:
    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport

    async def list(self) -> builtins.list[TemplateInfo]:
        return await self._transport.send(_list_call())

    async def get(self, name: str) -> TemplateInfo:
        return await self._transport.send(_get_call(name))

    async def delete(self, name: str, *, force: bool = False) -> TemplateInfo:
        return await self._transport.send(_delete_call(name, force))

    async def build(
        self,
        name: str,
        dockerfile: str | os.PathLike[str] = "Sandlotfile",
        context: str | os.PathLike[str] = ".",
        *,
        on_log: LogCallback | None = None,
        wait: bool = True,
        no_cache: bool = False,
    ) -> BuildInfo:
        archive, inside = context_archive(context, dockerfile)
        with archive:
            build = await self._transport.upload(_build_call(name, inside, no_cache), archive)
        return await self.wait(build.id, on_log=on_log) if wait else build

    async def import_image(
        self,
        name: str,
        archive: str | os.PathLike[str],
        *,
        on_log: LogCallback | None = None,
        wait: bool = True,
    ) -> BuildInfo:
        with image_archive(archive) as body:
            build = await self._transport.upload(_import_call(name), body)
        return await self.wait(build.id, on_log=on_log) if wait else build

    async def wait(self, build_id: str, *, on_log: LogCallback | None = None) -> BuildInfo:
        sink = _LineSink(on_log or (lambda line: None))
        await self._transport.download(_logs_call(build_id), cast(IO[bytes], sink))
        sink.flush_pending()
        return _outcome(await self.get_build(build_id))

    async def get_build(self, build_id: str) -> BuildInfo:
        return await self._transport.send(_build_get_call(build_id))

    async def list_builds(self) -> builtins.list[BuildInfo]:
        return await self._transport.send(_builds_call())
