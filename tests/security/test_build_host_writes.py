"""Template builds run as root on the host and write what a tenant's Sandlotfile and
context say: every way found to make them write or read host files, through the real
server. Each attack names a host directory made for the test (root-owned, mode 0700,
holding a 0600 file) and checks afterwards that nothing there changed, and where the
build still succeeds, that what it wrote landed inside the template instead.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import shutil
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sandlot import Sandbox, Sandlot
from sandlot.core.build_log import BUILD_LOG_MAX_BYTES
from sandlot.errors import BuildFailedError
from sandlot.testing import ServerProcess


@dataclass(frozen=True)
class HostDir:
    path: Path
    secret: Path

    def state(self) -> tuple[object, ...]:
        """Everything an attack could change: entries, owners, modes, content."""
        seen: list[object] = []
        for entry in sorted(self.path.rglob("*")):
            st = entry.lstat()
            seen.append((str(entry), st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)))
        st = self.path.lstat()
        seen.append((st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)))
        seen.append(hashlib.sha256(self.secret.read_bytes()).hexdigest())
        return tuple(seen)


@pytest.fixture
def host_dir() -> Iterator[HostDir]:
    path = Path("/var/tmp") / f"sandlot-build-target-{secrets.token_hex(4)}"
    path.mkdir(mode=0o700)
    secret = path / "x"
    secret.write_text("rootsecret host-only content\n")
    secret.chmod(0o600)
    yield HostDir(path, secret)
    shutil.rmtree(path)


def tar_of(members: dict[str, bytes | str]) -> bytes:
    """A context archive: bytes are files, `-> target` strings are symlinks, and names
    ending in / directories."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name.rstrip("/"))
            if name.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(body, str):
                info.type, info.linkname = tarfile.SYMTYPE, body.removeprefix("-> ")
                tar.addfile(info)
            else:
                info.size, info.mode = len(body), 0o644
                tar.addfile(info, io.BytesIO(body))
    return out.getvalue()


def build(
    server: ServerProcess, members: dict[str, bytes | str], file: str = "Sandlotfile"
) -> tuple[int, dict[str, object]]:
    """Start a build over HTTP with a hand-made context: 202 and the build's id and
    name, or the refusal's status and error."""
    name = f"attack-{secrets.token_hex(4)}"
    headers = {"Authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=120) as http:
        answer = http.post(
            "/v1/templates/builds", params={"name": name, "file": file}, content=tar_of(members)
        )
        body = answer.json()
        if answer.status_code != 202:
            return answer.status_code, body["error"]
    return 202, {"id": body["data"]["id"], "name": name}


def build_failure(server: ServerProcess, client: Sandlot, members: dict[str, bytes | str]) -> str:
    """Why a build of `members`, accepted, then failed."""
    status, started = build(server, members)
    assert status == 202, started
    outcome, why = finished(client, str(started["id"]))
    assert outcome == "failed" and why is not None, (outcome, why)
    return why


def finished(client: Sandlot, build_id: str) -> tuple[str, str | None]:
    try:
        info = client.templates.wait(build_id)
    except BuildFailedError as exc:
        return "failed", str(exc)
    return info.status, None


@pytest.mark.parametrize(
    ("recipe", "lands"),
    [
        ("FROM base\nCOPY payload /../../../../../../../..{dir}/\n", "payload"),
        ("FROM base\nCOPY payload /../../../../../../../..{dir}/x\n", "x"),
        ("FROM base\nWORKDIR /../../../../../../../..{dir}\nCOPY payload x\n", "x"),
        ("FROM base\nWORKDIR /../../../../../../../..{dir}/made\n", "made"),
        ("FROM base\nADD payload.tar /../../../../../../../..{dir}/\n", "x"),
    ],
    ids=["copy-into-dir", "copy-to-file", "workdir-then-copy", "workdir-makes", "add-archive"],
)
def test_dotdot_destinations_stay_inside_the_layer(
    server: ServerProcess, client: Sandlot, host_dir: HostDir, recipe: str, lands: str
) -> None:
    before = host_dir.state()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo("x")
        info.size = 9
        tar.addfile(info, io.BytesIO(b"attacker\n"))
    members: dict[str, bytes | str] = {
        "Sandlotfile": recipe.format(dir=host_dir.path).encode(),
        "payload": b"attacker\n",
        "payload.tar": archive.getvalue(),
    }
    status, started = build(server, members)
    assert status == 202, started
    outcome, why = finished(client, str(started["id"]))
    assert outcome == "ready", why
    assert host_dir.state() == before
    # `..` stops at the template's root, as it does inside a sandbox.
    with Sandbox.create(template=str(started["name"]), client=client) as sbx:
        assert sbx.commands.run(f"ls -A {host_dir.path}").stdout.split() == [lands]
        if lands != "made":
            assert sbx.files.read(f"{host_dir.path}/{lands}") == "attacker\n"
    client.templates.delete(str(started["name"]), force=True)


@pytest.mark.parametrize("target", ["{dir}", "/"], ids=["host-dir", "host-root"])
def test_a_symlink_placed_by_a_copy_is_never_followed_by_a_later_write(
    server: ServerProcess, client: Sandlot, host_dir: HostDir, target: str
) -> None:
    before = host_dir.state()
    root_before = os.lstat("/")
    members: dict[str, bytes | str] = {
        "Sandlotfile": b"FROM base\nCOPY a b /dest/\n",
        "a/": b"",
        "a/lnk": "-> " + target.format(dir=host_dir.path),
        "b/": b"",
        "b/lnk/": b"",
        "b/lnk/f": b"planted\n",
    }
    why = build_failure(server, client, members)
    assert "/dest/lnk is not a directory" in why, why
    assert host_dir.state() == before
    assert not (host_dir.path / "f").exists() and not Path("/f").exists()
    now = os.lstat("/")
    assert (now.st_uid, now.st_gid, now.st_mode) == (
        root_before.st_uid,
        root_before.st_gid,
        root_before.st_mode,
    )


def test_a_source_through_a_symlinked_directory_is_refused(
    server: ServerProcess, client: Sandlot, host_dir: HostDir
) -> None:
    members: dict[str, bytes | str] = {
        "Sandlotfile": b"FROM base\nCOPY sub/x /stolen\n",
        "sub": f"-> {host_dir.path}",
    }
    why = build_failure(server, client, members)
    assert "goes through a symlink in the build context" in why, why
    assert "rootsecret" not in why


def test_the_sandlotfile_is_read_beneath_the_context_and_bounded(
    server: ServerProcess, client: Sandlot, host_dir: HostDir
) -> None:
    status, error = build(server, {"sub": f"-> {host_dir.path}"}, file="sub/x")
    assert status == 400 and error["code"] == "INVALID_CONFIG", error
    assert "rootsecret" not in str(error) and "no Sandlotfile at 'sub/x'" in str(error["message"])
    huge = {"Sandlotfile": b"FROM base\n" + b"# padding\n" * 200_000}
    status, error = build(server, huge)
    assert status == 400 and error["code"] == "INVALID_CONFIG", error
    assert "larger than 1048576 bytes" in str(error["message"])
    fifo = {"Sandlotfile": "-> /dev/stdin"}
    status, error = build(server, fifo)
    assert status == 400 and error["code"] == "INVALID_CONFIG", error


def test_one_organisations_build_cache_is_never_another_s(
    server: ServerProcess, client: Sandlot, tmp_path: Path
) -> None:
    """What one org's RUN step left in its layer (here: whatever it wrote, standing in
    for a file planted by exec-ing into the step's sandbox) never reaches another org's
    identical build: the other org runs the step itself."""
    recipe = f"FROM base\nRUN echo {secrets.token_hex(8)} > /from-run\n"
    first = client.templates.build(f"mine-{secrets.token_hex(4)}", recipe, tmp_path)
    again = client.templates.build(f"mine-{secrets.token_hex(4)}", recipe, tmp_path)
    assert (first.cached_steps, again.cached_steps) == (0, 1)
    org = client.orgs.create(f"other-{secrets.token_hex(4)}")
    key = client.keys.create(org.id, name="k").key
    with Sandlot(server.url, key) as other:
        theirs = other.templates.build(f"theirs-{secrets.token_hex(4)}", recipe, tmp_path)
        assert (theirs.steps, theirs.cached_steps) == (1, 0)
        assert theirs.digest != first.digest
        other.templates.delete(theirs.template, force=True)
    for built in (first, again):
        client.templates.delete(built.template, force=True)


def test_a_step_that_prints_without_end_leaves_a_bounded_log(
    server: ServerProcess, client: Sandlot
) -> None:
    """12 MB of RUN output: the host's build log keeps 8 MiB and says it was cut, and
    the build goes on to its end."""
    sandlotfile = b"FROM base\nRUN yes sandlot | head -c 12000000\nRUN echo after-the-flood\n"
    status, started = build(server, {"Sandlotfile": sandlotfile})
    assert status == 202, started
    outcome, error = finished(client, str(started["id"]))
    headers = {"Authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
        log = http.get(f"/v1/templates/builds/{started['id']}/logs").content
    client.templates.delete(str(started["name"]), force=True)
    assert outcome == "ready", error
    assert BUILD_LOG_MAX_BYTES <= len(log) < BUILD_LOG_MAX_BYTES + 8192, len(log)
    assert b"[log cut at" in log and b"after-the-flood" not in log
    assert log.rstrip().splitlines()[-1].startswith(b"Template"), log[-300:]
