"""The image importer fed generated and mutated archives: only ever ImportRejected.

Members get names made of `..`, absolute paths, whiteout prefixes and odd characters,
every tar type, owners in and out of range, xattrs; the tar bytes are then mutated or
truncated. Whatever comes in, import_image either succeeds or raises ImportRejected,
and nothing appears outside the layer root: a directory beside it, which absolute
names and link targets aim at, must stay exactly as it was.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sandlot.templates.importer import ImportLimits, ImportRejected, import_image
from tests.templates.images import Member, docker_save, image_config, layer_tar, tree

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: layers keep owners, device whiteouts, trusted xattrs"
)

LIMITS = ImportLimits(max_total_bytes=2**20, max_entries=200, max_layers=4)
OUTSIDE = "outside"
# Repeats weight the draw towards members an honest layer has.
TYPES = [
    *[tarfile.REGTYPE] * 4,
    *[tarfile.DIRTYPE] * 3,
    *[tarfile.SYMTYPE] * 2,
    *[tarfile.LNKTYPE] * 2,
    tarfile.AREGTYPE,
    tarfile.CONTTYPE,
    tarfile.FIFOTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    b"Z",
]
XATTRS = [
    "SCHILY.xattr.user.a",
    "SCHILY.xattr.user.overlay.opaque",
    "SCHILY.xattr.trusted.overlay.opaque",
    "SCHILY.xattr.security.capability",
    "SCHILY.xattr.security.selinux",
    "SCHILY.xattr.user." + "x" * 300,
]


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="importer-fuzz-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def rarely(common: st.SearchStrategy[str], rare: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """`rare` one draw in eight, so that most members are valid and imports get far."""
    return st.integers(0, 7).flatmap(lambda i: rare if i == 0 else common)


def name_parts() -> st.SearchStrategy[str]:
    return rarely(
        st.sampled_from(["a", "b", "c", ".wh.a", ".wh.b", ".wh..wh..opq", "."]),
        st.one_of(
            st.sampled_from(["..", "", ".wh..wh.plnk", ".wh.", "x" * 300]),
            st.text(st.characters(blacklist_categories=("Cs",)), max_size=6),
        ),
    )


def names(outside: str) -> st.SearchStrategy[str]:
    relative = st.lists(name_parts(), min_size=1, max_size=3).map("/".join)
    return rarely(
        relative,
        st.one_of(
            relative.map(lambda n: f"{outside}/{n}"),
            relative.map(lambda n: f"../{OUTSIDE}/{n}"),
            st.just(outside),
        ),
    )


def ids() -> st.SearchStrategy[int]:
    """Owners: mostly root, sometimes any mapped id, rarely one a sandbox cannot map."""
    return st.integers(0, 15).flatmap(
        lambda i: st.just(70000) if i == 0 else st.integers(0, 65535) if i < 4 else st.just(0)
    )


def members(outside: str) -> st.SearchStrategy[Member]:
    return st.builds(
        Member,
        name=names(outside),
        type=st.sampled_from(TYPES),
        data=st.binary(max_size=64),
        mode=st.integers(0, 0o7777),
        uid=ids(),
        gid=ids(),
        linkname=rarely(names(outside), st.just("")),
        mtime=st.one_of(st.just(0), st.integers(-(2**40), 2**40)),
        pax=st.dictionaries(st.sampled_from(XATTRS), st.text(max_size=20), max_size=2),
    )


@st.composite
def archives(draw: st.DrawFn, outside: str) -> tuple[list[bytes], bool, bool]:
    """Layer tars (some mutated), whether to gzip them, and whether to mutate the archive."""
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        try:
            tar = layer_tar(draw(st.lists(members(outside), max_size=6)))
        except (ValueError, tarfile.TarError, UnicodeError):
            assume(False)  # tarfile cannot even write it
            raise
        if draw(st.integers(0, 3)) == 0:
            data = bytearray(tar)
            for pos, byte in draw(
                st.lists(st.tuples(st.integers(0, len(tar) - 1), st.integers(0, 255)), max_size=8)
            ):
                data[pos] = byte
            cut = draw(st.one_of(st.none(), st.integers(0, len(tar))))
            tar = bytes(data[:cut])
        layers.append(tar)
    return layers, draw(st.booleans()), draw(st.integers(0, 5)) == 0


def run_import(workdir: Path, build: Callable[[Path], Path]) -> bool:
    """Import what `build` makes; True if rejected. Checks that nothing leaked either way."""
    case = Path(tempfile.mkdtemp(dir=workdir))
    try:
        outside = case / OUTSIDE
        outside.mkdir()
        (outside / "sentinel").write_text("untouched")
        archive = build(case)
        before = tree(case)
        try:
            import_image(archive, case / "layers", uid_offset=100000, limits=LIMITS)
            refused = False
        except ImportRejected:
            refused = True
        assert tree(outside) == {"sentinel"}
        assert (outside / "sentinel").read_text() == "untouched"
        assert {p for p in tree(case) if not p.startswith("layers")} == before - {"layers"}
        if (case / "layers").exists():
            assert not [p for p in os.listdir(case / "layers") if p.startswith(".")]
        return refused
    finally:
        shutil.rmtree(case, ignore_errors=True)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_generated_layers_only_ever_rejected(workdir: Path, data: st.DataObject) -> None:
    def build(case: Path) -> Path:
        layers, gzipped, mutate_archive = data.draw(archives(str(case / OUTSIDE)))
        archive = docker_save(
            case / "image.tar", layers, image_config(layers), compress_layers=gzipped
        )
        if mutate_archive:
            raw = bytearray(archive.read_bytes())
            for pos, byte in data.draw(
                st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), max_size=4)
            ):
                raw[pos] = byte
            archive.write_bytes(bytes(raw))
        return archive

    run_import(workdir, build)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(blob=st.binary(max_size=4096))
def test_random_bytes_are_rejected(workdir: Path, blob: bytes) -> None:
    def build(case: Path) -> Path:
        path = case / "image.tar"
        path.write_bytes(blob)
        return path

    assert run_import(workdir, build)
