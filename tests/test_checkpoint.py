"""Checkpointer round trip on a small tree: typed keys, zero-size leaves, dtypes, rotation, atomicity."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wsrl_mjx.checkpoint import CheckpointMismatch, Checkpointer


def tree():
    return {'key': jax.random.split(jax.random.key(3), 2), 'empty': jnp.zeros((2, 0), jnp.float32),
            'params': (jnp.arange(6.0).reshape(2, 3), jnp.asarray([1, 2], jnp.int32)), 'flag': jnp.asarray(True)}


def test_round_trip_rotation_and_host(tmp_path):
    checkpointer = Checkpointer(str(tmp_path), max_to_keep=2)
    state = tree()
    for step in (1, 2, 3):
        checkpointer.save(step, state, {'step': step, 'history': [{'score': [1.5, 2.0]}]})
    checkpointer.wait()
    assert sorted(n for n in os.listdir(tmp_path / 'checkpoints') if n.isdigit()) == ['2', '3']
    like = jax.eval_shape(lambda: tree())
    restored, host = checkpointer.restore(checkpointer.latest_step(), like)
    checkpointer.close()
    assert host == {'step': 3, 'history': [{'score': [1.5, 2.0]}]}
    np.testing.assert_array_equal(jax.random.key_data(restored['key']), jax.random.key_data(state['key']))
    assert jax.dtypes.issubdtype(restored['key'].dtype, jax.dtypes.prng_key)
    assert restored['empty'].shape == (2, 0)
    for a, b in zip(jax.tree.leaves(restored['params']), jax.tree.leaves(state['params'])):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert bool(restored['flag'])


def test_saved_values_survive_a_later_in_place_update(tmp_path):
    # The run donates its state into the next program right after a save starts.
    checkpointer = Checkpointer(str(tmp_path))
    state = {'x': jnp.ones((1000,), jnp.float32)}
    checkpointer.save(1, state, {})
    update = jax.jit(lambda s: {'x': s['x'] * 0.0}, donate_argnums=0)
    state = update(state)
    checkpointer.wait()
    restored, _ = checkpointer.restore(1, jax.eval_shape(lambda: {'x': jnp.ones((1000,), jnp.float32)}))
    checkpointer.close()
    np.testing.assert_array_equal(restored['x'], np.ones(1000, np.float32))


def test_restore_into_another_structure_names_the_first_differing_leaf(tmp_path):
    checkpointer = Checkpointer(str(tmp_path))
    checkpointer.save(1, tree(), {})
    checkpointer.wait()
    other = jax.eval_shape(lambda: {**tree(), 'params': (jnp.zeros((2, 4)), jnp.zeros((2,), jnp.int32))})
    with pytest.raises(CheckpointMismatch, match=r'state leaf 3, is float32\[2, 3\] there and float32\[2, 4\] here'):
        checkpointer.restore(1, other)
    fewer = jax.eval_shape(lambda: {k: v for k, v in tree().items() if k != 'flag'})
    with pytest.raises(CheckpointMismatch, match='holds 4 arrays and this run.s state has 3'):
        checkpointer.restore(1, fewer)
    checkpointer.close()
