"""The keys a build's layers are cached under, and so what a step may be handed.

A step's key is made of its parent's key and everything the step reads: a COPY's
instruction, destination and the content hash of every source; a RUN's command, env,
workdir and user; a WORKDIR's path. A build's first key is its base template's digest
and the organisation: what one organisation's RUN step left in its layer can never be
handed to another's identical step. A `--no-cache` build still computes the keys (its
layers then become the cache) but names each layer it makes for itself.
"""

from __future__ import annotations

from collections.abc import Sequence

from sandlot.templates.layers import cache_key


def first_key(base_digest: str, org_id: str) -> str:
    return cache_key(base_digest, "org", org_id)


def workdir_key(parent: str, path: str) -> str:
    return cache_key(parent, "WORKDIR", path)


def copy_key(parent: str, keyword: str, args: object, destination: str, inputs: str) -> str:
    return cache_key(parent, keyword, args, destination, inputs)


def run_key(parent: str, argv: Sequence[str], env: dict[str, str], workdir: str, user: str) -> str:
    return cache_key(parent, "RUN", list(argv), env, workdir, user)


def layer_id(key: str, build_id: str, no_cache: bool) -> str:
    """The id of the layer a step makes: its key, or, run again although cached, a new
    one of this build's."""
    return cache_key(key, build_id) if no_cache else key
