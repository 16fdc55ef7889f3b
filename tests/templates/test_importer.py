"""The image importer on real archives: docker-save and OCI layouts in, overlay layers out.

Archives are made here from a tiny root filesystem (static busybox and a few files), by
hand with tarfile and by umoci, a real OCI tool. Imported layers are then stacked with
a real read-only overlay mount, as the runtime stacks them, so whiteouts and opaque
directories are checked by the kernel that will read them, not by looking at xattrs.
Malicious archives must each be refused with a message naming what is wrong, leaving
nothing behind: no layer, no staging directory, nothing outside the layer root.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from sandlot.templates.importer import (
    ImageConfig,
    ImportLimits,
    ImportRejected,
    import_image,
)
from sandlot.templates.oci_archive import host_architecture
from tests.templates.images import (
    MTIME,
    OciLayout,
    blockdev,
    chardev,
    directory,
    docker_save,
    fifo,
    file,
    hardlink,
    image_config,
    layer_id,
    layer_tar,
    lying_tar,
    opaque,
    outer_tar,
    overlay,
    symlink,
    tar_directory,
    tree,
    whiteout,
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: layers keep owners, device whiteouts, trusted xattrs"
)

OFFSET = 100000
DEFAULT_LIMITS = ImportLimits()
PASSWD = b"root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"
BUSYBOX = Path("/usr/bin/busybox")


def busybox() -> bytes:
    if not BUSYBOX.is_file():
        pytest.skip("busybox is not installed (apt-get install busybox-static)")
    return BUSYBOX.read_bytes()


def base_layer() -> bytes:
    return layer_tar(
        [
            directory("bin"),
            file("bin/busybox", busybox(), mode=0o755),
            symlink("bin/sh", "busybox"),
            hardlink("bin/ls", "bin/busybox"),
            file("bin/su", b"setuid", mode=0o4755),
            directory("etc"),
            file("etc/passwd", PASSWD),
            file("etc/deleteme", b"going"),
            directory("data"),
            file("data/old", b"old"),
            directory("home"),
            directory("home/user", mode=0o700, uid=1000, gid=1000),
            file("home/user/notes", b"mine", mode=0o600, uid=1000, gid=1000),
            fifo("run.fifo", mode=0o620),
            file(
                "xattrs",
                b"x",
                pax={
                    "SCHILY.xattr.user.kept": "yes",
                    "SCHILY.xattr.trusted.overlay.opaque": "y",
                    "SCHILY.xattr.security.selinux": "system_u:object_r:bin_t",
                },
            ),
        ]
    )


def top_layer() -> bytes:
    return layer_tar(
        [
            whiteout("etc/deleteme"),
            directory("data"),
            opaque("data"),
            file("data/new", b"new"),
        ]
    )


CONFIG = {
    "Env": ["PATH=/bin", "EQUALS=a=b"],
    "WorkingDir": "/data",
    "User": "1000:1000",
    "Cmd": ["-c", "cat /data/new"],
    "Entrypoint": ["/bin/sh"],
    "ExposedPorts": {"8080/tcp": {}, "53/udp": {}, "9000": {}},
}
EXPECTED = ImageConfig(
    env={"PATH": "/bin", "EQUALS": "a=b"},
    workdir="/data",
    user="1000:1000",
    cmd=["-c", "cat /data/new"],
    entrypoint=["/bin/sh"],
    ports=[8080, 9000],
)


def check_merged(roots: list[Path], mnt: Path) -> None:
    """The image as a sandbox would see it: whiteouts and opaque dirs applied by overlayfs."""
    with overlay(roots, mnt) as merged:
        assert not (merged / "etc" / "deleteme").exists()
        assert (merged / "etc" / "passwd").is_file()
        assert sorted(os.listdir(merged / "data")) == ["new"]
        out = subprocess.run(
            ["chroot", str(merged), "/bin/sh", "-c", "busybox cat /data/new; echo; ls /bin"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        assert out[0] == "new"
        assert {"busybox", "ls", "sh", "su"} <= set(out[1:])
        st = os.lstat(merged / "home" / "user" / "notes")
        assert (st.st_uid, st.st_gid) == (OFFSET + 1000, OFFSET + 1000)


def test_docker_save_layers_config_and_overlay(tmp_path: Path) -> None:
    base, top = base_layer(), top_layer()
    archive = docker_save(tmp_path / "image.tar", [base, top], image_config([base, top], **CONFIG))
    lines: list[str] = []

    config, roots = import_image(
        archive, tmp_path / "layers", uid_offset=OFFSET, on_progress=lines.append
    )

    assert config == EXPECTED
    assert roots == [
        tmp_path / "layers" / layer_id(top) / "root",
        tmp_path / "layers" / layer_id(base) / "root",
    ]
    meta = json.loads((tmp_path / "layers" / layer_id(base) / "layer.json").read_text())
    assert meta["id"] == layer_id(base)
    assert meta["createdBy"] == f"import {0:064x}/layer.tar"
    assert meta["sizeBytes"] == len(busybox()) + len(
        b"setuid" + PASSWD + b"going" + b"old" + b"mine" + b"x"
    )
    assert any("unpacking" in line for line in lines)

    bottom, upper = roots[1], roots[0]
    st = os.lstat(bottom / "bin" / "busybox")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (OFFSET, OFFSET, 0o755)
    assert st.st_mtime == MTIME
    assert st.st_nlink == 2 and os.lstat(bottom / "bin" / "ls").st_ino == st.st_ino
    assert stat.S_IMODE(os.lstat(bottom / "bin" / "su").st_mode) == 0o4755
    assert os.readlink(bottom / "bin" / "sh") == "busybox"
    assert os.lstat(bottom / "bin" / "sh").st_uid == OFFSET
    home = os.lstat(bottom / "home" / "user")
    assert (home.st_uid, stat.S_IMODE(home.st_mode), home.st_mtime) == (
        OFFSET + 1000,
        0o700,
        MTIME,
    )
    fifo_st = os.lstat(bottom / "run.fifo")
    assert stat.S_ISFIFO(fifo_st.st_mode) and stat.S_IMODE(fifo_st.st_mode) == 0o620
    assert os.listxattr(bottom / "xattrs") == ["user.kept"]
    assert os.getxattr(bottom / "xattrs", "user.kept") == b"yes"
    root_st = os.lstat(bottom)
    assert (root_st.st_uid, stat.S_IMODE(root_st.st_mode)) == (OFFSET, 0o755)

    gone = os.lstat(upper / "etc" / "deleteme")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == os.makedev(0, 0)
    assert os.getxattr(upper / "data", "trusted.overlay.opaque") == b"y"
    assert not (upper / "data" / ".wh..wh..opq").exists()

    check_merged(roots, tmp_path / "mnt")
    assert [p.name for p in (tmp_path / "layers").iterdir() if p.name.startswith(".")] == []


def test_importing_again_unpacks_nothing(tmp_path: Path) -> None:
    base, top = base_layer(), top_layer()
    archive = docker_save(tmp_path / "image.tar", [base, top], image_config([base, top], **CONFIG))
    _, first = import_image(archive, tmp_path / "layers", uid_offset=OFFSET)
    stamps = [os.stat(root.parent / "layer.json").st_mtime_ns for root in first]
    lines: list[str] = []

    config, again = import_image(
        archive, tmp_path / "layers", uid_offset=OFFSET, on_progress=lines.append
    )

    assert (config, again) == (EXPECTED, first)
    assert [os.stat(root.parent / "layer.json").st_mtime_ns for root in again] == stamps
    assert sum("already imported" in line for line in lines) == 2
    assert not any("unpacking" in line for line in lines)


def test_gzip_layers_in_a_gzip_archive(tmp_path: Path) -> None:
    base, top = base_layer(), top_layer()
    archive = docker_save(
        tmp_path / "image.tar.gz",
        [base, top],
        image_config([base, top], **CONFIG),
        compress_layers=True,
        gzip_archive=True,
    )

    config, roots = import_image(archive, tmp_path / "layers", uid_offset=OFFSET)

    # The ids are of the uncompressed tars, whatever the compression on the way.
    assert config == EXPECTED
    assert [r.parent.name for r in roots] == [layer_id(top), layer_id(base)]
    check_merged(roots, tmp_path / "mnt")


def test_a_layer_listed_twice_is_stacked_once(tmp_path: Path) -> None:
    base, top = base_layer(), top_layer()
    archive = docker_save(
        tmp_path / "image.tar", [base, top, base], image_config([base, top, base])
    )

    _, roots = import_image(archive, tmp_path / "layers", uid_offset=OFFSET)

    assert [r.parent.name for r in roots] == [layer_id(base), layer_id(top)]


def umoci(*args: str) -> None:
    subprocess.run(["umoci", *args], check=True, capture_output=True)


@pytest.fixture
def umoci_layout(tmp_path: Path) -> Path:
    """An OCI layout made by umoci: a busybox root, then a whiteout, then an opaque dir."""
    if shutil.which("umoci") is None:
        pytest.skip("umoci is not installed (apt-get install umoci)")
    layout, bundle = tmp_path / "oci", tmp_path / "bundle"
    image = f"{layout}:t"
    umoci("init", "--layout", str(layout))
    umoci("new", "--image", image)
    umoci("unpack", "--image", image, str(bundle))
    rootfs = bundle / "rootfs"
    for d in ("bin", "etc", "data", "home/user"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX if BUSYBOX.is_file() else busybox(), rootfs / "bin" / "busybox")
    for name in ("sh", "ls", "su"):
        (rootfs / "bin" / name).symlink_to("busybox")
    (rootfs / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (rootfs / "etc" / "deleteme").write_text("going")
    (rootfs / "data" / "old").write_text("old")
    (rootfs / "home" / "user" / "notes").write_text("mine")
    os.chown(rootfs / "home" / "user" / "notes", 1000, 1000)
    umoci("repack", "--image", image, str(bundle))
    umoci("insert", "--image", image, "--whiteout", "/etc/deleteme")
    newdata = tmp_path / "newdata"
    newdata.mkdir()
    (newdata / "new").write_text("new")
    umoci("insert", "--image", image, "--opaque", str(newdata), "/data")
    config_args = [f"--config.env={e}" for e in CONFIG["Env"]]  # type: ignore[union-attr]
    config_args += ["--config.workingdir=/data", "--config.user=1000:1000"]
    config_args += ["--config.entrypoint=/bin/sh", "--config.cmd=-c", "--config.cmd=cat /data/new"]
    config_args += [f"--config.exposedports={p}" for p in ("8080/tcp", "53/udp", "9000")]
    umoci("config", "--image", image, *config_args)
    umoci("gc", "--layout", str(layout))
    return layout


@pytest.mark.parametrize("as_tar", [False, True], ids=["directory", "tar"])
def test_oci_layout_from_umoci(tmp_path: Path, umoci_layout: Path, as_tar: bool) -> None:
    source = tar_directory(umoci_layout, tmp_path / "oci.tar") if as_tar else umoci_layout

    config, roots = import_image(source, tmp_path / "layers", uid_offset=OFFSET)

    assert config == EXPECTED
    assert len(roots) == 3
    for root in roots:
        meta = json.loads((root.parent / "layer.json").read_text())
        assert meta["id"] == root.parent.name
        assert meta["createdBy"].startswith("import blobs/sha256/")
    check_merged(roots, tmp_path / "mnt")


def test_oci_index_picks_the_host_platform(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path / "oci")
    descs = []
    for arch in ("amd64", "arm64"):
        layer = layer_tar([file("arch", arch.encode())])
        desc = layout.image([layer], image_config([layer], Cmd=[arch]))
        desc["platform"] = {"os": "linux", "architecture": arch}
        descs.append(desc)
    attestation = layout.image([], image_config([]))
    attestation["platform"] = {"os": "unknown", "architecture": "unknown"}
    attestation["annotations"] = {"vnd.docker.reference.type": "attestation-manifest"}
    layout.index([*descs, attestation])
    if host_architecture() not in ("amd64", "arm64"):
        pytest.skip(f"the test image has no {host_architecture()} variant")

    config, roots = import_image(tmp_path / "oci", tmp_path / "layers", uid_offset=OFFSET)

    assert config.cmd == [host_architecture()]
    assert (roots[0] / "arch").read_text() == host_architecture()


def test_zstd_layer_needs_zstandard(tmp_path: Path) -> None:
    if importlib.util.find_spec("zstandard") is not None:
        pytest.skip("zstandard is installed: zstd layers are read")
    tar = layer_tar([file("a", b"a")])
    archive = docker_save(tmp_path / "image.tar", [tar], image_config([tar]))
    # Swap the layer for bytes that start like a zstd frame.
    data = archive.read_bytes().replace(tar, b"\x28\xb5\x2f\xfd" + tar[4:])
    archive.write_bytes(data)

    with pytest.raises(ImportRejected, match=r"zstd-compressed.*install the `zstandard`"):
        import_image(archive, tmp_path / "layers", uid_offset=OFFSET)
    assert list((tmp_path / "layers").iterdir()) == []


# --- malicious and malformed archives ---------------------------------------------------


def rejected(
    tmp_path: Path, archive: Path, match: str, limits: ImportLimits = DEFAULT_LIMITS
) -> None:
    """Import must fail with `match`, and leave nothing: no layer, no staging, no escape."""
    before = tree(tmp_path) - {"layers"}
    with pytest.raises(ImportRejected, match=match) as info:
        import_image(archive, tmp_path / "layers", uid_offset=OFFSET, limits=limits)
    print(info.value)
    assert list((tmp_path / "layers").iterdir()) == []
    assert tree(tmp_path) - {"layers"} == before


def one_layer(tmp_path: Path, *members: object) -> Path:
    tar = layer_tar([file("ok", b"fine"), *members])  # type: ignore[list-item]
    return docker_save(tmp_path / "image.tar", [tar], image_config([tar]))


def test_rejects_dotdot_escape(tmp_path: Path) -> None:
    archive = one_layer(tmp_path, file("../escaped", b"x"))
    rejected(tmp_path, archive, r"member '\.\./escaped' has a '\.\.' component")
    assert not (tmp_path / "escaped").exists()


def test_rejects_absolute_path(tmp_path: Path) -> None:
    target = tmp_path / "absolute"
    archive = one_layer(tmp_path, file(str(target), b"x"))
    rejected(tmp_path, archive, rf"member '{target}' is an absolute path")
    assert not target.exists()


def test_rejects_writing_through_a_symlink(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = one_layer(tmp_path, symlink("a", str(outside)), file("a/passwd", b"owned"))
    rejected(tmp_path, archive, r"member 'a/passwd' goes through 'a', a symbolic link")
    assert list(outside.iterdir()) == []


def test_rejects_a_directory_entry_through_a_relative_symlink(tmp_path: Path) -> None:
    archive = one_layer(tmp_path, directory("d"), symlink("d/up", "../.."), directory("d/up/x"))
    rejected(tmp_path, archive, r"member 'd/up/x' goes through 'd/up', a symbolic link")


@pytest.mark.parametrize(
    "linkname", ["../../../../../../etc/passwd", "/etc/passwd", "missing"], ids=str
)
def test_rejects_hard_link_outside_or_missing(tmp_path: Path, linkname: str) -> None:
    nlink = os.stat("/etc/passwd").st_nlink
    archive = one_layer(tmp_path, hardlink("stolen", linkname))
    rejected(tmp_path, archive, r"member 'stolen' is a hard link to .*not an earlier file")
    assert os.stat("/etc/passwd").st_nlink == nlink


def test_rejects_hard_link_through_a_symlink(tmp_path: Path) -> None:
    archive = one_layer(tmp_path, symlink("etc", "/etc"), hardlink("stolen", "etc/passwd"))
    rejected(tmp_path, archive, r"member 'stolen' goes through 'etc', a symbolic link")


@pytest.mark.parametrize("device", [chardev("dev/mem", 1, 1), blockdev("dev/sda")], ids=str)
def test_rejects_device_nodes(tmp_path: Path, device: object) -> None:
    archive = one_layer(tmp_path, device)
    rejected(tmp_path, archive, r"member 'dev/(mem|sda)' is a device node")


def test_rejects_owner_outside_the_sandbox_range(tmp_path: Path) -> None:
    archive = one_layer(tmp_path, file("big-uid", b"x", uid=70000))
    rejected(tmp_path, archive, r"member 'big-uid' is owned by uid 70000")


def test_rejects_tar_bomb_over_the_byte_limit(tmp_path: Path) -> None:
    archive = one_layer(tmp_path, file("big", bytes(2 * 2**20)))
    limits = ImportLimits(max_total_bytes=2**20)
    rejected(tmp_path, archive, r"member 'big' .* past the limit of 1048576 bytes", limits)


def test_rejects_declared_size_without_reading_it(tmp_path: Path) -> None:
    tar = lying_tar("huge", 2**40)
    archive = docker_save(tmp_path / "image.tar", [tar], image_config([tar]))
    rejected(tmp_path, archive, r"member 'huge' \(1099511627776 bytes\) takes the image past")


def test_rejects_too_many_entries(tmp_path: Path) -> None:
    archive = one_layer(tmp_path, *(file(f"f{i}") for i in range(20)))
    limits = ImportLimits(max_entries=10)
    rejected(tmp_path, archive, r"member 'f9' is past the limit of 10 members", limits)


def test_rejects_too_many_layers(tmp_path: Path) -> None:
    tars = [layer_tar([file(f"f{i}")]) for i in range(3)]
    archive = docker_save(tmp_path / "image.tar", tars, image_config(tars))
    rejected(tmp_path, archive, r"3 layers; at most 2 are allowed", ImportLimits(max_layers=2))


def test_rejects_layer_blob_not_matching_its_digest(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path / "oci")
    tar = layer_tar([file("a", b"original")])
    desc = layout.image([tar], image_config([tar]))
    layout.index([desc])
    manifest = json.loads((tmp_path / "oci" / "blobs" / "sha256" / desc["digest"][7:]).read_bytes())
    blob = tmp_path / "oci" / "blobs" / "sha256" / manifest["layers"][0]["digest"][7:]
    blob.write_bytes(blob.read_bytes()[:-8] + b"tampered")
    rejected(tmp_path, tmp_path / "oci", r"the blob does not match its digest")


def test_rejects_json_blob_not_matching_its_digest(tmp_path: Path) -> None:
    layout = OciLayout(tmp_path / "oci")
    tar = layer_tar([file("a")])
    desc = layout.image([tar], image_config([tar], Cmd=["true"]))
    layout.index([desc])
    manifest = json.loads((tmp_path / "oci" / "blobs" / "sha256" / desc["digest"][7:]).read_bytes())
    config = tmp_path / "oci" / "blobs" / "sha256" / manifest["config"]["digest"][7:]
    config.write_text(config.read_text().replace('"true"', '"evil"'))
    rejected(tmp_path, tmp_path / "oci", r"blobs/sha256/[0-9a-f]+ does not match its digest")


def test_rejects_layer_not_matching_its_diff_id(tmp_path: Path) -> None:
    tar = layer_tar([file("a")])
    archive = docker_save(tmp_path / "image.tar", [tar], diff_ids=[f"sha256:{'0' * 64}"])
    rejected(tmp_path, archive, r"hashes to sha256:[0-9a-f]+, but the image config says")


def test_rejects_what_is_not_an_archive(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(os.urandom(4096))
    rejected(tmp_path, junk, r"junk\.tar is not an image archive")


def test_rejects_a_tar_that_is_not_an_image(tmp_path: Path) -> None:
    plain = tmp_path / "plain.tar"
    with tarfile.open(plain, "w") as tar:
        tar.add(__file__, arcname="test.py")
    rejected(tmp_path, plain, r"neither manifest\.json .* nor index\.json")


def test_rejects_broken_manifest_json(tmp_path: Path) -> None:
    tar = layer_tar([file("a")])
    archive = docker_save(tmp_path / "image.tar", [tar], image_config([tar]))
    with tarfile.open(archive) as t:
        entries = {m.name: t.extractfile(m).read() for m in t.getmembers()}  # type: ignore[union-attr]
    entries["manifest.json"] = b'[{"Config": '
    archive.write_bytes(outer_tar(entries))
    rejected(tmp_path, archive, r"manifest\.json is not valid JSON")


def test_rejects_corrupt_gzip_layer(tmp_path: Path) -> None:
    tar = layer_tar([file("a", os.urandom(4096))])
    archive = docker_save(tmp_path / "image.tar", [tar], image_config([tar]), compress_layers=True)
    data = bytearray(archive.read_bytes())
    start = data.index(b"\x1f\x8b\x08")
    data[start + 40 : start + 60] = bytes(20)
    archive.write_bytes(bytes(data))
    rejected(tmp_path, archive, r"layer 1/1 .*: (corrupt gzip data|not a valid tar)")


def test_refuses_a_layer_id_taken_by_another_layer(tmp_path: Path) -> None:
    tar = layer_tar([file("a", b"a")])
    archive = docker_save(tmp_path / "image.tar", [tar], image_config([tar]))
    taken = tmp_path / "layers" / layer_id(tar)
    (taken / "root").mkdir(parents=True)
    (taken / "layer.json").write_text(json.dumps({"id": taken.name, "sizeBytes": 0}))

    with pytest.raises(ImportRejected, match=rf"its id {taken.name} is taken by another layer"):
        import_image(archive, tmp_path / "layers", uid_offset=OFFSET)
    assert os.listdir(tmp_path / "layers") == [taken.name]
    assert list((taken / "root").iterdir()) == []
