"""The build cache's keys from real build contexts and a real layer store, beyond the
key arithmetic in test_build_cache.py.

A cached layer is handed to a step whose key matches, without running the step, so a
key must change with everything the step reads and nothing else: a layer made by one
organisation's RUN may hold its secrets and must never be found by another's identical
step; a COPY of changed files must run again; touching a file (its mtime alone) must
not. Keys here are computed the way a build computes them: a COPY's arguments parsed
from its instruction, its inputs the digest of what it reads from the context.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from sandlot.core.build_cache import copy_key, first_key, layer_id, run_key, workdir_key
from sandlot.templates import sandlotfile as sf
from sandlot.templates.context import BuildContext, digest
from sandlot.templates.layers import LayerStore

BASE = "base-digest"


def chain(org_id: str, base: str = BASE, copy_inputs: str = "sha-app") -> list[str]:
    """The keys of `WORKDIR /app`, `COPY . /app/`, `RUN make` on `base`, as `org_id`."""
    keys = [first_key(base, org_id)]
    keys.append(workdir_key(keys[-1], "/app"))
    keys.append(copy_key(keys[-1], "COPY", ["."], "/app/", copy_inputs))
    keys.append(run_key(keys[-1], ["/bin/sh", "-c", "make"], {"CC": "gcc"}, "/app", ""))
    return keys


def copy_step_key(context_dir: Path, text: str = ". /app/", keyword: str = "COPY") -> str:
    """A COPY step's key on a fixed parent, its inputs read from `context_dir`."""
    args = sf.copy_args(sf.Instruction(1, keyword, text), {})
    context = BuildContext(context_dir)
    try:
        inputs = digest(context, context.sources(args.sources, args.destination))
    finally:
        context.close()
    return copy_key(first_key(BASE, "org-a"), keyword, args, args.destination, inputs)


def fill(root: Path) -> Path:
    """A small build context: sources, a script, a symlink and an ignored log."""
    (root / "src").mkdir(parents=True)
    (root / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    (root / "src" / "util.h").write_text("#pragma once\n")
    (root / "build.sh").write_text("#!/bin/sh\nmake\n")
    (root / "build.sh").chmod(0o755)
    (root / "current").symlink_to("src")
    (root / "debug.log").write_text("noise\n")
    (root / ".dockerignore").write_text("*.log\n")
    return root


def commit_layer(layers: LayerStore, key: str, content: bytes) -> Path:
    with layers.staging(key) as staged:
        (staged / "out").write_bytes(content)
        return layers.commit(staged, key, created_by="RUN make")


# ---- one organisation's cache is never another's --------------------------------------------


@pytest.mark.parametrize(("ours", "theirs"), [("org-a", "org-b"), ("org-a", "org-A"), ("a", "")])
def test_no_step_of_one_organisation_keys_as_any_step_of_another(ours: str, theirs: str) -> None:
    assert set(chain(ours)).isdisjoint(chain(theirs))
    assert chain(ours) == chain(ours)


def test_another_organisations_identical_step_finds_no_layer(tmp_path: Path) -> None:
    layers = LayerStore(tmp_path / "layers")
    ours, theirs = chain("org-a")[-1], chain("org-b")[-1]
    made = commit_layer(layers, ours, b"built with org-a's secrets")
    assert layers.find(ours) == made.resolve()
    assert layers.find(theirs) is None
    assert layers.find(chain("org-a", base="other-base")[-1]) is None


def test_a_no_cache_build_becomes_what_the_key_finds_without_replacing_the_old_layer(
    tmp_path: Path,
) -> None:
    layers = LayerStore(tmp_path / "layers")
    key = chain("org-a")[-1]
    old = commit_layer(layers, key, b"first build")
    fresh_id = layer_id(key, "bld-2", no_cache=True)
    with layers.staging(fresh_id) as staged:
        (staged / "out").write_bytes(b"second build")
        fresh = layers.commit(staged, fresh_id, created_by="RUN make", key=key)
    found = layers.find(key)
    assert found is not None and (found / "out").read_bytes() == b"second build"
    assert found == fresh.resolve() and (old / "out").read_bytes() == b"first build"
    assert layers.find(chain("org-b")[-1]) is None


@pytest.mark.parametrize("changed", range(4))
def test_a_changed_step_changes_its_key_and_every_later_one(changed: int) -> None:
    """Steps: the build's start (its base), WORKDIR, COPY (its inputs), RUN (its env)."""
    steps: list[Callable[[str, bool], str]] = [
        lambda parent, alt: first_key("other-base" if alt else BASE, "org-a"),
        lambda parent, alt: workdir_key(parent, "/srv" if alt else "/app"),
        lambda parent, alt: copy_key(parent, "COPY", ["."], "/app/", "sha-2" if alt else "sha-1"),
        lambda parent, alt: run_key(parent, ["make"], {"CC": "clang" if alt else "gcc"}, "/", ""),
    ]
    before: list[str] = []
    after: list[str] = []
    for number, step in enumerate(steps):
        before.append(step(before[-1] if before else "", False))
        after.append(step(after[-1] if after else "", number == changed))
    assert before[:changed] == after[:changed]
    assert all(b != a for b, a in zip(before[changed:], after[changed:], strict=True))


# ---- what a RUN reads ---------------------------------------------------------------------


def test_the_order_env_was_set_in_does_not_change_a_run_key() -> None:
    parent = first_key(BASE, "org-a")
    forward = run_key(parent, ["make"], {"A": "1", "B": "2"}, "/app", "")
    backward = run_key(parent, ["make"], {"B": "2", "A": "1"}, "/app", "")
    assert forward == backward


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (["sh", "-c", "make all"], ["sh", "-c", "make", "all"]),
        (["make all"], ["make", "all"]),
        (["make", ""], ["make"]),
        (["a,b"], ["a", "b"]),
    ],
)
def test_argv_words_are_keyed_as_words_not_as_joined_text(one: list[str], other: list[str]) -> None:
    parent = first_key(BASE, "org-a")
    assert run_key(parent, one, {}, "/", "") != run_key(parent, other, {}, "/", "")


@pytest.mark.parametrize(
    ("one", "other"),
    [({"A": "1"}, {"A": "1", "B": ""}), ({"A": "1 B=2"}, {"A": "1", "B": "2"}), ({}, {"": ""})],
)
def test_env_entries_are_keyed_as_entries(one: dict[str, str], other: dict[str, str]) -> None:
    parent = first_key(BASE, "org-a")
    assert run_key(parent, ["make"], one, "/", "") != run_key(parent, ["make"], other, "/", "")


# ---- what a COPY reads --------------------------------------------------------------------


def test_the_same_context_made_twice_hits(tmp_path: Path) -> None:
    assert copy_step_key(fill(tmp_path / "one")) == copy_step_key(fill(tmp_path / "two"))


def rewrite(relative: str, text: str) -> Callable[[Path], object]:
    return lambda root: (root / relative).write_text(text)


def relink(root: Path) -> None:
    (root / "current").unlink()
    (root / "current").symlink_to("build.sh")


def touch(root: Path) -> None:
    for path in (root / "src" / "main.c", root / "build.sh"):
        os.utime(path, (1_000_000_000, 1_000_000_000))


CHANGES: dict[str, tuple[Callable[[Path], object], bool]] = {
    # what a COPY reads: the step must run again
    "one byte of a file": (rewrite("src/main.c", "int main(void) { return 1; }\n"), False),
    "a file's mode": (lambda root: (root / "build.sh").chmod(0o644), False),
    "a file's name": (lambda root: (root / "src/util.h").rename(root / "src/utils.h"), False),
    "a new file": (rewrite("src/extra.c", ""), False),
    "a removed file": (lambda root: (root / "src" / "util.h").unlink(), False),
    "a new empty directory": (lambda root: (root / "src" / "empty").mkdir(), False),
    "a symlink's target": (relink, False),
    "an ignore rule": (rewrite(".dockerignore", ""), False),
    # what it does not read: the cached layer is still the right one
    "only mtimes": (touch, True),
    "an ignored file": (rewrite("debug.log", "other noise\n"), True),
    "a new ignored file": (rewrite("trace.log", "more noise\n"), True),
}


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
def test_an_identical_copy_hits_only_if_what_it_reads_is_unchanged(
    tmp_path: Path, change: str
) -> None:
    mutate, same = CHANGES[change]
    before = copy_step_key(fill(tmp_path / "before"))
    changed = fill(tmp_path / "after")
    mutate(changed)
    assert (copy_step_key(changed) == before) is same


def test_a_copy_of_one_directory_ignores_changes_outside_it(tmp_path: Path) -> None:
    before = copy_step_key(fill(tmp_path / "before"), "src /app/src/")
    changed = fill(tmp_path / "after")
    rewrite("build.sh", "#!/bin/sh\nmake -j8\n")(changed)
    assert copy_step_key(changed, "src /app/src/") == before
    rewrite("src/util.h", "#pragma twice\n")(changed)
    assert copy_step_key(changed, "src /app/src/") != before


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("--chown=1000:1000 . /app/", "COPY"),
        ("--chmod=700 . /app/", "COPY"),
        (". /srv/", "COPY"),
        (". /app/", "ADD"),
        ('[".", "/app/sub/"]', "COPY"),
    ],
)
def test_a_copy_keys_on_its_options_destination_and_keyword(
    tmp_path: Path, text: str, keyword: str
) -> None:
    context = fill(tmp_path / "context")
    assert copy_step_key(context, text, keyword) != copy_step_key(context)
    assert copy_step_key(context, text, keyword) == copy_step_key(context, text, keyword)


def test_one_files_bytes_cannot_pass_for_the_next_ones_header(tmp_path: Path) -> None:
    """Each file's length is hashed before its bytes: without it, `a` holding what
    `b`'s header would say followed by `b`'s content hashed like `a` and `b`."""
    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir()
    (two / "a").write_text("X")
    (two / "b").write_text("Y")
    (two / "b").chmod(0o644)
    one.mkdir()
    (one / "a").write_bytes(b"X" + f"b\0{stat.S_IFREG}\0{0o644}\0".encode() + b"Y")
    assert copy_step_key(two) != copy_step_key(one)
