"""Orbax checkpoints of a whole run: every device array of its state plus the host's bookkeeping.

A checkpoint is two items under <run_dir>/checkpoints/<step>/:
  state  the device pytree (parameters, targets, optimizer states, temperature, replay buffer, env
         states, counters) as a flat dict of its leaves in flattening order, typed PRNG keys stored as
         their key data, zero-size leaves (MJX has some) left out and rebuilt from shapes on restore
  host   JSON: phase, chunks done, evaluation history, wall-clock, metrics.jsonl length, config
Saves are asynchronous (a device copy of the state is taken before `save` returns, the writes go on
in a background thread) and atomic: a process killed mid-save leaves the previous checkpoint as latest.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from wsrl_mjx.cli import UsageError


def _is_key(x) -> bool:
    return hasattr(x, 'dtype') and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def keys_to_data(tree):
    """Typed PRNG keys -> their uint32 key data (what a checkpoint can hold); other leaves unchanged."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, tree)


def data_to_keys(tree, like):
    """Inverse of keys_to_data, guided by `like` (a tree, or its shapes, holding the typed keys)."""
    # Keys are made with the default implementation (threefry) throughout the project.
    return jax.tree.map(lambda x, ref: jax.random.wrap_key_data(x) if _is_key(ref) else x, tree, like)


def _name(index: int) -> str:
    """Checkpoint entry of the index-th leaf (flattening order of the state's structure)."""
    return f'leaf{index:05d}'


def _size(x) -> int:
    size = 1
    for d in x.shape:
        size *= d
    return size


def _empty(target):
    """A zero-size leaf (orbax stores none; MJX state has a few): rebuilt from its shape."""
    out = jnp.zeros(target.shape, target.dtype)
    return jax.device_put(out, target.sharding) if target.sharding is not None else out


def _restore_target(x):
    """What one leaf of `like` (array or ShapeDtypeStruct) is restored as: shape, dtype, sharding."""
    sharding = getattr(x, 'sharding', None)
    if _is_key(x):
        data = jax.eval_shape(jax.random.key_data, jax.ShapeDtypeStruct(x.shape, x.dtype))
        return jax.ShapeDtypeStruct(data.shape, data.dtype, sharding=sharding)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding)


def _describe(entry) -> str:
    return 'absent' if entry is None else f'{entry[1]}{list(entry[0])}'


class CheckpointMismatch(UsageError):
    """A checkpoint whose arrays are not those of the state it is restored into."""


class Checkpointer:
    """Keeps the last `max_to_keep` checkpoints of a run in <run_dir>/<subdir> (default checkpoints/;
    the pretrained agent a run shares with others lives in pretrained/)."""

    def __init__(self, run_dir: str, max_to_keep: int = 3, asynchronous: bool = True, subdir: str = 'checkpoints'):
        self.directory = os.path.abspath(os.path.join(run_dir, subdir))
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=asynchronous,
                                               create=True, cleanup_tmp_directories=True)
        # Handlers named up front: item_metadata needs them before anything was saved or restored.
        handlers = {'state': ocp.StandardCheckpointHandler(), 'host': ocp.JsonCheckpointHandler()}
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state, host: dict) -> None:
        """Starts saving `state` (device pytree) and `host` (JSON-able dict) as checkpoint `step`.

        The arrays are first copied on the device: the run donates its state into the next program
        while the writes go on, and a donated buffer may be overwritten in place.
        """
        leaves = jax.tree.leaves(keys_to_data(state))
        snapshot = {_name(i): jnp.copy(x) for i, x in enumerate(leaves) if x.size > 0}
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(snapshot), host=ocp.args.JsonSave(host)), force=True)

    def restore(self, step: int, like):
        """(state shaped and sharded like `like`, host dict) of checkpoint `step`."""
        targets, treedef = jax.tree.flatten(jax.tree.map(_restore_target, like))
        wanted = {_name(i): t for i, t in enumerate(targets) if _size(t) > 0}
        self._check_arrays(step, wanted)
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(wanted), host=ocp.args.JsonRestore()))
        arrays = restored['state']
        leaves = [arrays[_name(i)] if _name(i) in arrays else _empty(t) for i, t in enumerate(targets)]
        return data_to_keys(jax.tree.unflatten(treedef, leaves), like), restored['host']

    def _check_arrays(self, step: int, wanted: dict) -> None:
        """Raises CheckpointMismatch naming the first array of checkpoint `step` that is missing, extra or
        shaped otherwise than `wanted` (before orbax reads anything)."""
        stored = self._manager.item_metadata(step)['state']
        for name in sorted(set(stored) | set(wanted)):
            have = (tuple(stored[name].shape), str(stored[name].dtype)) if name in stored else None
            want = (tuple(wanted[name].shape), str(wanted[name].dtype)) if name in wanted else None
            if have != want:
                raise CheckpointMismatch(
                    f'checkpoint {self.directory}/{step} holds {len(stored)} arrays and this run\'s state has '
                    f'{len(wanted)}; the first that differs, state leaf {int(name[4:])}, is {_describe(have)} '
                    f'there and {_describe(want)} here (most likely the checkpoint was written by another '
                    f'version of wsrl_mjx)')

    def read_host(self, step: int) -> dict:
        """Only the host item of checkpoint `step` (no arrays are read)."""
        return self._manager.restore(step, args=ocp.args.Composite(host=ocp.args.JsonRestore()))['host']

    def wait(self) -> None:
        """Blocks until every started save is on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()
