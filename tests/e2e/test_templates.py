"""Custom templates end to end: Sandlotfile builds with every instruction and the layer
cache, image imports (`docker save` and OCI layouts built here), malicious archives,
and templates in use, through the real server, SDK and CLI."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sandlot import Sandbox, Sandlot
from sandlot.errors import (
    BuildFailedError,
    InvalidConfigError,
    InvalidStateError,
    TemplateNotFoundError,
)
from sandlot.testing import ServerProcess, ensure_template
from tests.e2e.test_cleanup_and_restart import doctor_check
from tests.templates.images import (
    OciLayout,
    docker_save,
    file,
    image_config,
    layer_tar,
    tar_directory,
)
from tests.templates.test_importer import CONFIG, base_layer, top_layer

SANDLOTFILE = """\
# every instruction a Sandlotfile knows
FROM base
ENV GREETING="hello world" \\
    APP_HOME=/srv/app
WORKDIR $APP_HOME
COPY app/ ./
COPY --chmod=755 run.sh /usr/local/bin/run-app
ADD data.tar /srv/data/
RUN echo "built $GREETING in $(pwd)" > /srv/built.txt && \\
    useradd -m -u 1234 appuser && chown -R appuser /srv/app
USER appuser
EXPOSE 8123
ENTRYPOINT ["python3", "-m", "http.server"]
CMD ["8123"]
READY curl -sf http://127.0.0.1:8123/ >/dev/null
"""


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@pytest.fixture
def context(tmp_path: Path) -> Path:
    root = tmp_path / "context"
    (root / "app" / "cache").mkdir(parents=True)
    (root / "app" / "main.py").write_text("print('hi')\n")
    (root / "app" / "debug.log").write_text("left out\n")
    (root / "app" / "cache" / "big.bin").write_bytes(b"x" * 1000)
    (root / "run.sh").write_text("#!/bin/sh\necho running as $(id -un)\n")
    (root / ".dockerignore").write_text("**/*.log\napp/cache\n")
    source = tmp_path / "data"
    source.mkdir()
    (source / "d.txt").write_text("unpacked\n")
    with tarfile.open(root / "data.tar", "w") as tar:
        tar.add(source / "d.txt", arcname="d.txt")
    (root / "Sandlotfile").write_text(SANDLOTFILE)
    return root


@pytest.fixture
def template(client: Sandlot, context: Path) -> Iterator[str]:
    name = unique("every")
    lines: list[str] = []
    build = client.templates.build(name, context / "Sandlotfile", context, on_log=lines.append)
    assert build.status == "ready" and build.steps == 5, build  # WORKDIR, COPY x2, ADD, RUN
    assert any(line.startswith("Step 7/12: RUN echo") for line in lines), lines
    yield name
    client.templates.delete(name, force=True)


def test_every_instruction_makes_a_working_template(client: Sandlot, template: str) -> None:
    info = client.templates.get(template)
    assert info.source == "build" and not info.built_in
    assert info.env == {"GREETING": "hello world", "APP_HOME": "/srv/app"}
    assert (info.workdir, info.user, info.ports) == ("/srv/app", "appuser", [8123])
    assert info.start_command == ["python3", "-m", "http.server", "8123"]
    with Sandbox.create(template=template, client=client) as sbx:
        # READY held create until the start command's server answered.
        page = sbx.commands.run("curl -sf http://127.0.0.1:8123/main.py")
        assert page.stdout == "print('hi')\n"
        who = sbx.commands.run("id -un; pwd; echo $GREETING; run-app")
        assert who.stdout.split("\n")[:4] == [
            "appuser",
            "/srv/app",
            "hello world",
            "running as appuser",
        ]
        assert sbx.commands.run("id -un", user="root").stdout == "root\n"
        assert sbx.files.read("/srv/built.txt") == "built hello world in /srv/app\n"
        assert sbx.files.read("/srv/data/d.txt") == "unpacked\n"  # ADD unpacked the tar
        listing = sbx.commands.run("ls -A /srv/app; stat -c '%a %U' /usr/local/bin/run-app")
        assert listing.stdout == "main.py\n755 root\n"  # .dockerignore kept out the rest
        ports = {p.port: p for p in sbx.ports.list()}
        assert ports[8123].automatic


def test_second_build_of_the_same_file_is_cached(client: Sandlot, tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "input.txt").write_text(secrets.token_hex(8))  # a first build, not a cached one
    text = (
        "FROM base\nCOPY input.txt /opt/\n"
        "RUN python3 -c \"import time; time.sleep(1); open('/opt/made','w').write('x')\"\n"
        "RUN sha256sum /opt/input.txt > /opt/sum\n"
    )
    name = unique("cached")
    try:
        start = time.perf_counter()
        first = client.templates.build(name, text, context)
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        second = client.templates.build(name, text, context)
        second_s = time.perf_counter() - start
        print(
            f"\nbuild: first {first_s * 1000:.0f} ms, cached rebuild {second_s * 1000:.0f} ms "
            f"({second_s / first_s:.2f} of the first)"
        )
        assert (first.cached_steps, second.cached_steps, second.steps) == (0, 3, 3)
        assert second.digest == first.digest
        assert second_s < first_s / 3
        (context / "input.txt").write_text(secrets.token_hex(8))
        third = client.templates.build(name, text, context)
        assert third.cached_steps == 0 and third.digest != first.digest  # COPY's input changed
    finally:
        client.templates.delete(name, force=True)


def test_sandlotfile_mistakes_are_clear(client: Sandlot, tmp_path: Path) -> None:
    with pytest.raises(InvalidConfigError, match="line 3: unknown instruction 'FORM'"):
        client.templates.build(unique("bad"), "FROM base\nRUN true\nFORM base\n", tmp_path)
    with pytest.raises(InvalidConfigError, match="line 1: the first instruction must be FROM"):
        client.templates.build(unique("bad"), "RUN true\n", tmp_path)
    with pytest.raises(TemplateNotFoundError, match="'no-such-template'"):
        client.templates.build(unique("bad"), "FROM no-such-template\n", tmp_path)
    with pytest.raises(InvalidConfigError, match="name: String should match pattern"):
        client.templates.build("Bad Name", "FROM base\n", tmp_path)
    lines: list[str] = []
    with pytest.raises(BuildFailedError, match="line 2: 'RUN echo oops >&2; exit 3' exited with 3"):
        client.templates.build(
            unique("fails"), "FROM base\nRUN echo oops >&2; exit 3\n", tmp_path, on_log=lines.append
        )
    assert "oops" in lines
    with pytest.raises(BuildFailedError, match=r"'missing\.txt' matches nothing"):
        client.templates.build(unique("fails"), "FROM base\nCOPY missing.txt /\n", tmp_path)


def test_a_template_in_use_is_not_deleted(client: Sandlot, tmp_path: Path) -> None:
    name = unique("inuse")
    client.templates.build(name, "FROM base\nRUN echo kept > /kept\n", tmp_path)
    sbx = Sandbox.create(template=name, client=client)
    try:
        with pytest.raises(
            InvalidStateError, match=f"used by 1 sandboxes or snapshots \\({sbx.id}\\)"
        ):
            client.templates.delete(name)
        snapshot = sbx.snapshots.create("s1")
    finally:
        sbx.kill()
    with pytest.raises(InvalidStateError, match=snapshot.id):
        client.templates.delete(name)
    client.templates.delete(name, force=True)
    with pytest.raises(TemplateNotFoundError):
        client.templates.get(name)
    # Forced, the layers the snapshot stands on stay: a branch of it still starts.
    with Sandbox.create_from_snapshot(snapshot.id, client=client) as branch:
        assert branch.files.read("/kept") == "kept\n"


def importable_layers() -> list[bytes]:
    return [base_layer(), top_layer()]


def test_import_docker_save_with_whiteouts(client: Sandlot, tmp_path: Path) -> None:
    layers = importable_layers()
    archive = docker_save(tmp_path / "image.tar", layers, image_config(layers, **CONFIG))
    name = unique("imported")
    lines: list[str] = []
    build = client.templates.import_image(name, archive, on_log=lines.append)
    assert build.kind == "import" and build.status == "ready", lines
    try:
        info = client.templates.get(name)
        assert (info.source, info.layers, info.workdir, info.user) == (
            "import",
            2,
            "/data",
            "1000:1000",
        )
        assert info.start_command == ["/bin/sh", "-c", "cat /data/new"]
        assert info.ports == [8080, 9000]
        # No python3 in this image: the agent brings its own.
        with Sandbox.create(template=name, client=client) as sbx:
            seen = sbx.commands.run("ls /data; ls /etc/deleteme; busybox id -u; pwd")
            # The whiteout and the opaque directory of the top layer took effect.
            assert seen.stdout == "new\n1000\n/data\n"
            assert "/etc/deleteme: No such file" in seen.stderr
            assert sbx.commands.run("busybox id -u", user="0").stdout == "0\n"
    finally:
        client.templates.delete(name, force=True)


def test_import_oci_layout_directory_and_tar(client: Sandlot, tmp_path: Path) -> None:
    layers = importable_layers()
    layout = OciLayout(tmp_path / "layout")
    layout.index([layout.image(layers, image_config(layers, Env=["PATH=/bin"], Cmd=["sh"]))])
    for source in (tmp_path / "layout", tar_directory(tmp_path / "layout", tmp_path / "oci.tar")):
        name = unique("oci")
        client.templates.import_image(name, source)
        try:
            with Sandbox.create(template=name, client=client) as sbx:
                assert sbx.commands.run("ls /data").stdout == "new\n"
        finally:
            client.templates.delete(name, force=True)


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ([file("../escape", b"x")], "'..'"),
        ([file("/etc/evil", b"x")], "absolute"),
    ],
)
def test_malicious_archives_are_refused(
    client: Sandlot, tmp_path: Path, members: list[object], message: str
) -> None:
    layer = layer_tar(members)  # type: ignore[arg-type]
    archive = docker_save(tmp_path / "evil.tar", [layer])
    with pytest.raises(BuildFailedError, match=message):
        client.templates.import_image(unique("evil"), archive)


def test_not_an_archive_is_refused(client: Sandlot, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar archive at all" * 100)
    refused = r"import of template junk-\w+ failed: .*(not|neither)"
    with pytest.raises(BuildFailedError, match=refused):
        client.templates.import_image(unique("junk"), junk)


def test_template_names_are_each_organisations_own(
    client: Sandlot, server: ServerProcess, tmp_path: Path
) -> None:
    """Another organisation neither sees a template nor learns its name is used: it
    builds one of the same name, and each organisation starts from its own."""
    name = unique("private")
    (tmp_path / "mine").write_text("first\n")
    client.templates.build(name, "FROM base\nCOPY mine /whose\n", tmp_path)
    org = client.orgs.create(unique("other"))
    key = client.keys.create(org.id, name="k").key
    try:
        with Sandlot(server.url, key) as other:
            assert name not in {t.name for t in other.templates.list()}
            assert "base" in {t.name for t in other.templates.list()}
            with pytest.raises(TemplateNotFoundError):
                other.templates.get(name)
            with pytest.raises(TemplateNotFoundError):
                Sandbox.create(template=name, client=other)
            (tmp_path / "mine").write_text("second\n")
            other.templates.build(name, "FROM base\nCOPY mine /whose\n", tmp_path)
            with Sandbox.create(template=name, client=other) as theirs:
                assert theirs.files.read("/whose") == "second\n"
            with pytest.raises(InvalidStateError, match="built-in"):
                other.templates.build("base", "FROM base\n", tmp_path)
            other.templates.delete(name)
        with Sandbox.create(template=name, client=client) as mine:
            assert mine.files.read("/whose") == "first\n"
    finally:
        client.templates.delete(name, force=True)


def test_build_logs_and_status_over_http(
    server: ServerProcess, context: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "ctx.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(context / "run.sh", arcname="run.sh")
        tar.add(context / "Sandlotfile", arcname="build/Sandlotfile.custom")
    (tmp_path / "Sandlotfile").write_text("FROM base\nCOPY run.sh /x\n")
    headers = {"Authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
        name = unique("http")
        answer = http.post(
            "/v1/templates/builds",
            params={"name": name, "file": "build/Sandlotfile.custom"},
            content=archive.read_bytes(),
        )
        assert answer.status_code == 202, answer.text
        build_id = answer.json()["data"]["id"]
        log = http.get(f"/v1/templates/builds/{build_id}/logs").text
        status = http.get(f"/v1/templates/builds/{build_id}").json()["data"]
        # This context lacks app/: the build fails at its COPY, on line 6 of the file.
        assert status["status"] == "failed" and "line 6: 'app/' matches nothing" in status["error"]
        assert "Step 4/12: COPY app/ ./" in log and "Build failed" in log
        missing = http.post(
            "/v1/templates/builds", params={"name": name}, content=archive.read_bytes()
        )
        assert missing.status_code == 400 and "no Sandlotfile at 'Sandlotfile'" in missing.text
        assert (
            http.get("/v1/templates/builds/bld-nope").json()["error"]["code"] == "BUILD_NOT_FOUND"
        )


def test_cli_build_list_and_rm(api_env: dict[str, str], context: Path) -> None:
    (context / "Simple").write_text('FROM base\nCOPY run.sh /opt/run.sh\nCMD ["sleep", "1000"]\n')
    name = unique("cli")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sandlot", "template", *args],
            env=api_env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    built = cli("build", str(context), "--name", name, "-f", str(context / "Simple"))
    assert built.returncode == 0, built.stderr
    assert "Step 2/3: COPY run.sh /opt/run.sh" in built.stdout
    listed = json.loads(cli("list", "--json").stdout)
    assert name in {t["name"] for t in listed}
    assert cli("rm", name).returncode == 0
    gone = cli("get", name, "--json")
    assert gone.returncode == 1 and "TEMPLATE_NOT_FOUND" in gone.stdout + gone.stderr


def test_a_build_cut_short_by_a_crash_fails_and_leaves_nothing(
    fresh_server: ServerProcess, tmp_path: Path
) -> None:
    with Sandlot(fresh_server.url, fresh_server.api_key) as client:
        build = client.templates.build(
            unique("crash"), "FROM base\nRUN sleep 600\n", tmp_path, wait=False
        )
        deadline = time.monotonic() + 60
        step = {"sandlot.build": build.id}
        while not client.sandboxes.list(status="running", metadata=step):
            assert time.monotonic() < deadline, "the build's step never started"
            time.sleep(0.1)
    fresh_server.stop(signal.SIGKILL)
    fresh_server.start()
    with Sandlot(fresh_server.url, fresh_server.api_key) as client:
        after = client.templates.get_build(build.id)
        assert after.status == "failed" and "interrupted by a server restart" in (after.error or "")
        assert not client.sandboxes.list(status="running", metadata=step)
        assert [s.status for s in client.sandboxes.list(metadata=step)] == ["terminated"]
    assert doctor_check(fresh_server).returncode == 0


@pytest.mark.parametrize(
    ("recipe", "check"),
    [
        ("python", "python3 -c 'import numpy, requests; print(numpy.arange(3).sum())'"),
        ("node", "tsc --version >/dev/null && node -e 'console.log(1 + 2)'"),
    ],
)
def test_built_in_variants(client: Sandlot, recipe: str, check: str) -> None:
    ensure_template(recipe)  # .ci/run builds them; elsewhere, about a minute each, once
    info = client.templates.get(recipe)
    assert info.built_in and info.source == "debian"
    with Sandbox.create(template=recipe, client=client) as sbx:
        assert sbx.commands.run(check).stdout == "3\n"
        tools = sbx.commands.run("pip --version && python3 -m venv /tmp/v && git --version")
        assert tools.exit_code == 0, tools.stderr


def test_no_cache_runs_every_step_again_and_becomes_the_cache(
    client: Sandlot, tmp_path: Path
) -> None:
    name = unique("fresh")
    text = "FROM base\nRUN date +%s%N > /stamp\n"
    try:
        first = client.templates.build(name, text, tmp_path)
        fresh = client.templates.build(name, text, tmp_path, no_cache=True)
        assert (fresh.cached_steps, fresh.steps) == (0, 1) and fresh.digest != first.digest
        after = client.templates.build(name, text, tmp_path)
        assert after.cached_steps == 1 and after.digest == fresh.digest
        with Sandbox.create(template=name, client=client) as sbx:
            stamp = sbx.files.read("/stamp")
        with Sandbox.create(template=name, client=client) as again:
            assert again.files.read("/stamp") == stamp
    finally:
        client.templates.delete(name, force=True)
