"""Datasets by name: '<env>-<level>' is generated (wsrl_mjx.data.collect) on first use and cached.

Cache: $WSRL_MJX_DATASETS, default ~/.cache/wsrl_mjx/datasets; files are named
<env>-<level>-n<size>-s<seed>-p<policies>.hdf5, where <policies> is a digest of the behaviour-policy
files shipped for the env, so a different size, seed or shipped policy never reuses another's file.
Anything else given as a dataset is read as the path of an HDF5 file.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir() -> str:
    return os.environ.get('WSRL_MJX_DATASETS', os.path.join(Path.home(), '.cache', 'wsrl_mjx', 'datasets'))


def _policies_digest(env: str) -> str:
    """8 hex digits over the bytes of every policy file shipped for `env` (none: the empty digest)."""
    from wsrl_mjx.data.collect import generating_policies

    digest = hashlib.sha256()
    for name, path in sorted(generating_policies(env).items()):
        with open(path, 'rb') as f:
            digest.update(name.encode() + b'\0' + f.read())
    return digest.hexdigest()[:8]


def parse_name(name: str) -> tuple[str, str] | None:
    """(env, level) of a dataset name, or None when `name` is not one (then it is a file path)."""
    from wsrl_mjx.data.collect import levels_of
    from wsrl_mjx.envs.registry import ENV_SPECS

    # The longest env name that prefixes it: env names may hold '-' themselves (antmaze-umaze).
    envs = [env for env in ENV_SPECS if name.startswith(f'{env}-')]
    if not envs:
        return None
    env = max(envs, key=len)
    level = name[len(env) + 1:]
    return (env, level) if level in levels_of(env) else None


def resolve(name: str, size: int, seed: int = 0, quiet: bool = False) -> str:
    """The file behind `name`, generating a named dataset into the cache when it is not there yet."""
    parsed = parse_name(name)
    if parsed is None:
        return name
    env, level = parsed
    path = os.path.join(cache_dir(), f'{name}-n{size}-s{seed}-p{_policies_digest(env)}.hdf5')
    if not os.path.exists(path):
        from wsrl_mjx.data.collect import collect
        from wsrl_mjx.data.dataset import write_hdf5

        if not quiet:
            print(f'generating dataset {name} ({size} transitions, seed {seed}) into {path}')
        write_hdf5(path, collect(env, level, size, seed, quiet=quiet))
    return path
