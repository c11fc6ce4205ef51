"""Behaviour-policy files: one actor's parameters and what produced them, in a single .npz.

Layout: `layer{i}/{name}` arrays (the actor pytree of wsrl_mjx.networks: kernel [1, d_in, d_out],
bias [1, d_out], and with LayerNorm ln_scale/ln_bias) and `meta`, a JSON string (env, seed, step,
return, normalised score, the command that trained it, the log-std clip of the policy).
"""
from __future__ import annotations

import json
import re

import numpy as np

from wsrl_mjx.files import atomic_path
from wsrl_mjx.cli import UsageError

FORMAT = 'wsrl_mjx.actor.v1'
_KEY = re.compile(r'layer(\d+)/(kernel|bias|ln_scale|ln_bias)$')


class PolicyFileError(UsageError):
    """A policy file that cannot be read; the message names the file and what is wrong."""


def save_actor(path: str, actor, meta: dict) -> None:
    """Writes `actor` (one seed's params) and `meta` to `path` atomically (no half-written file)."""
    arrays = {f'layer{i}/{name}': np.asarray(value) for i, layer in enumerate(actor) for name, value in layer.items()}
    arrays['meta'] = np.asarray(json.dumps({'format': FORMAT, **meta}, default=float))
    with atomic_path(path, suffix='.npz') as tmp:
        np.savez(tmp, **arrays)


def load_actor(path: str):
    """Returns (actor params as a tuple of layer dicts of numpy arrays, meta dict)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError) as e:
        raise PolicyFileError(f'{path}: not a policy file ({e})') from None
    if 'meta' not in arrays:
        raise PolicyFileError(f'{path}: field meta is missing: not a {FORMAT} file')
    meta = json.loads(str(arrays.pop('meta')))
    if meta.get('format') != FORMAT:
        raise PolicyFileError(f'{path}: field meta.format is {meta.get("format")!r}; expected {FORMAT!r}')
    layers: dict[int, dict] = {}
    for key, value in arrays.items():
        match = _KEY.match(key)
        if match is None:
            raise PolicyFileError(f'{path}: unexpected field {key!r}; expected layer<i>/<kernel|bias|ln_scale|ln_bias>')
        layers.setdefault(int(match.group(1)), {})[match.group(2)] = value
    if sorted(layers) != list(range(len(layers))):
        raise PolicyFileError(f'{path}: layers {sorted(layers)} are not numbered 0..{len(layers) - 1}')
    return tuple(layers[i] for i in range(len(layers))), meta
