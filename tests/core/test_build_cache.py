"""Which step a build's cache may hand a layer to: the keys, from what each step reads."""

from __future__ import annotations

from sandlot.core.build_cache import copy_key, first_key, layer_id, run_key, workdir_key


def test_one_organisations_cache_is_never_anothers() -> None:
    assert first_key("base-digest", "org-a") != first_key("base-digest", "org-b")
    assert first_key("base-digest", "org-a") == first_key("base-digest", "org-a")
    assert first_key("base-digest", "org-a") != first_key("other-base", "org-a")


def test_a_step_keys_on_its_parent_and_every_input() -> None:
    parent = first_key("d", "org")
    run = run_key(parent, ["make"], {"A": "1"}, "/src", "")
    assert run == run_key(parent, ("make",), {"A": "1"}, "/src", "")
    changed = [
        run_key(first_key("d", "other"), ["make"], {"A": "1"}, "/src", ""),
        run_key(parent, ["make", "-j2"], {"A": "1"}, "/src", ""),
        run_key(parent, ["make"], {"A": "2"}, "/src", ""),
        run_key(parent, ["make"], {"A": "1"}, "/", ""),
        run_key(parent, ["make"], {"A": "1"}, "/src", "alice"),
    ]
    assert run not in changed and len(set(changed)) == len(changed)
    copy = copy_key(parent, "COPY", ["a"], "/dest/", "sha-of-a")
    assert copy != copy_key(parent, "COPY", ["a"], "/dest/", "sha-of-a-changed")
    assert copy != copy_key(parent, "ADD", ["a"], "/dest/", "sha-of-a")
    assert copy != copy_key(parent, "COPY", ["a"], "/elsewhere/", "sha-of-a")
    assert workdir_key(parent, "/a") != workdir_key(parent, "/b")
    assert workdir_key(parent, "/a") != workdir_key(run, "/a")


def test_a_no_cache_build_names_its_layers_for_itself() -> None:
    key = run_key(first_key("d", "org"), ["make"], {}, "/", "")
    assert layer_id(key, "bld-1", no_cache=False) == key
    assert layer_id(key, "bld-1", no_cache=True) != key
    assert layer_id(key, "bld-1", no_cache=True) != layer_id(key, "bld-2", no_cache=True)
