"""Tier 1: kernels against plain references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels.distributions import (tanh_normal_log_prob, tanh_normal_log_prob_reference, tanh_normal_mode,
                                   tanh_normal_sample)
from kernels.ensemble import ensemble_mlp, ensemble_mlp_reference, init_ensemble_mlp, mlp_matmul_flops, select_members
from kernels.replay import replay_get, replay_init, replay_insert, replay_sample


@pytest.mark.parametrize('layer_norm', [True, False])
@pytest.mark.parametrize('per_member_input', [False, True])
@pytest.mark.parametrize('members', [1, 3])  # one member (the actor) multiplies a shared input directly
def test_ensemble_mlp_matches_per_member_loop(layer_norm, per_member_input, members):
    key = jax.random.key(0)
    params = init_ensemble_mlp(key, members=members, sizes=(5, 8, 8, 2), layer_norm=layer_norm,
                               kernel_scale_final=0.5)
    # Perturb LayerNorm and biases so every parameter matters.
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(1), p.shape), params)
    shape = (members, 4, 5) if per_member_input else (4, 5)
    x = jax.random.normal(jax.random.key(2), shape)
    out = ensemble_mlp(params, x)
    assert out.shape == (members, 4, 2)
    np.testing.assert_allclose(out, ensemble_mlp_reference(params, x), rtol=1e-5, atol=1e-5)
    out_bf16 = ensemble_mlp(params, x, jnp.bfloat16)
    assert out_bf16.dtype == jnp.float32
    np.testing.assert_allclose(out_bf16, out, rtol=5e-2, atol=5e-2)


def test_ensemble_init_orthogonal_scaled_and_independent():
    params = init_ensemble_mlp(jax.random.key(0), members=2, sizes=(6, 6, 6, 1), layer_norm=True,
                               kernel_scale=2.0**0.5, kernel_scale_final=1e-2)
    first, last_hidden, head = params
    for m in range(2):
        np.testing.assert_allclose(first['kernel'][m].T @ first['kernel'][m], 2.0 * np.eye(6), atol=1e-5)
        np.testing.assert_allclose(last_hidden['kernel'][m].T @ last_hidden['kernel'][m], 1e-4 * np.eye(6), atol=1e-8)
    assert not np.allclose(first['kernel'][0], first['kernel'][1])
    assert all(np.all(layer['bias'] == 0) for layer in params)
    assert 'ln_scale' in first and 'ln_scale' not in head


def test_select_members_and_flops():
    params = init_ensemble_mlp(jax.random.key(0), members=4, sizes=(3, 4, 1), layer_norm=False)
    x = jax.random.normal(jax.random.key(1), (2, 3))
    sub = select_members(params, jnp.array([3, 1]))
    np.testing.assert_allclose(ensemble_mlp(sub, x), ensemble_mlp(params, x)[jnp.array([3, 1])], rtol=1e-6)
    assert mlp_matmul_flops((3, 4, 1), members=4, batch=2) == 2 * 4 * 2 * (3 * 4 + 4 * 1)


class ListRing:
    """The obvious ring buffer: a Python list with a write cursor."""

    def __init__(self, capacity):
        self.capacity, self.rows, self.cursor = capacity, [], 0

    def insert(self, items):
        for item in items:
            if len(self.rows) < self.capacity:
                self.rows.append(item)
            else:
                self.rows[self.cursor] = item
            self.cursor = (self.cursor + 1) % self.capacity


def test_replay_insert_matches_list_reference_with_wraparound():
    capacity = 7
    example = {'x': jnp.zeros((2,), jnp.float32), 'r': jnp.zeros((), jnp.float32)}
    buffer = replay_init(example, capacity)
    reference = ListRing(capacity)
    insert = jax.jit(replay_insert)
    counter = 0
    for n in (3, 2, 4, 1, 5, 7):  # 22 items: wraps around three times
        values = np.arange(counter, counter + n, dtype=np.float32)
        counter += n
        buffer = insert(buffer, {'x': np.stack([values, -values], axis=1), 'r': values})
        reference.insert(list(values))
        size = len(reference.rows)
        assert int(buffer.size) == size and int(buffer.position) == reference.cursor
        stored = replay_get(buffer, jnp.arange(size))
        np.testing.assert_array_equal(np.asarray(stored['r']), np.array(reference.rows))
        np.testing.assert_array_equal(np.asarray(stored['x']), np.stack([reference.rows, -np.array(reference.rows)], 1))


def test_replay_rows_keep_every_leaf_of_mixed_dtypes():
    # Leaves share one row per dtype: each must come back with its own shape, dtype and values.
    example = {'o': jnp.zeros((3,), jnp.float32), 'n': jnp.zeros((), jnp.int32), 'm': jnp.zeros((2, 2), jnp.float32),
               'k': jnp.zeros((2,), jnp.int32)}
    buffer = replay_init(example, 5)
    assert {d: r.shape for d, r in buffer.rows.items()} == {'float32': (5, 7), 'int32': (5, 3)}
    rng = np.random.default_rng(0)
    items = {'o': rng.normal(size=(4, 3)).astype(np.float32), 'n': np.arange(4, dtype=np.int32),
             'm': rng.normal(size=(4, 2, 2)).astype(np.float32), 'k': rng.integers(-9, 9, (4, 2)).astype(np.int32)}
    got = replay_get(replay_insert(buffer, items), jnp.array([3, 0, 3]))
    for name, value in items.items():
        assert got[name].dtype == value.dtype
        np.testing.assert_array_equal(np.asarray(got[name]), value[[3, 0, 3]])

def test_replay_sample_uniform_over_filled_rows():
    buffer = replay_init({'v': jnp.zeros((), jnp.int32)}, 100)
    buffer = replay_insert(buffer, {'v': jnp.arange(10, dtype=jnp.int32) + 1})
    sample = np.asarray(replay_sample(buffer, jax.random.key(0), 20_000)['v'])
    assert set(np.unique(sample)) == set(range(1, 11))  # never an unfilled (zero) row
    counts = np.bincount(sample, minlength=11)[1:]
    assert np.all(np.abs(counts / 20_000 - 0.1) < 0.015)
    other = np.asarray(replay_sample(buffer, jax.random.key(1), 20_000)['v'])
    assert not np.array_equal(sample, other)


def test_tanh_normal_log_prob_matches_reference():
    key = jax.random.key(0)
    mean = jax.random.normal(key, (5, 3))
    log_std = jax.random.uniform(jax.random.key(1), (5, 3), minval=-2.0, maxval=1.0)
    action, log_prob = tanh_normal_sample(jax.random.key(2), mean, log_std)
    assert action.shape == (5, 3) and log_prob.shape == (5,)
    assert np.all(np.abs(action) < 1)
    reference = tanh_normal_log_prob_reference(mean, log_std, action)
    np.testing.assert_allclose(log_prob, reference, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(tanh_normal_log_prob(mean, log_std, action), reference, rtol=1e-3, atol=1e-3)


def test_tanh_normal_hand_value_and_mode():
    # u = 0, std = 1 in one dimension: log N(0; 0, 1) - log(1 - tanh(0)^2) = -0.5 log(2 pi).
    value = tanh_normal_log_prob(jnp.zeros((1,)), jnp.zeros((1,)), jnp.zeros((1,)))
    np.testing.assert_allclose(value, -0.5 * np.log(2 * np.pi), rtol=1e-6)
    np.testing.assert_allclose(tanh_normal_mode(jnp.array([0.5, -2.0])), np.tanh([0.5, -2.0]), rtol=1e-6)
    # Samples with a tiny std collapse onto the mode.
    action, _ = tanh_normal_sample(jax.random.key(0), jnp.array([0.3, -0.7]), jnp.full((2,), -11.0))
    np.testing.assert_allclose(action, np.tanh([0.3, -0.7]), atol=1e-4)


def test_layer_norm_custom_backward_matches_autodiff_of_reference():
    from kernels.ensemble import layer_norm, layer_norm_reference

    x = jax.random.normal(jax.random.key(0), (3, 4, 8)) * 3.0 + 1.0
    scale = 1.0 + 0.1 * jax.random.normal(jax.random.key(1), (3, 1, 8))  # broadcast over the batch axis
    bias = 0.1 * jax.random.normal(jax.random.key(2), (3, 1, 8))
    cotangent = jax.random.normal(jax.random.key(3), (3, 4, 8))
    np.testing.assert_allclose(layer_norm(x, scale, bias), layer_norm_reference(x, scale, bias), rtol=1e-5, atol=1e-5)

    def loss(fn):
        return lambda *args: jnp.sum(fn(*args) * cotangent)

    grads = jax.grad(loss(layer_norm), argnums=(0, 1, 2))(x, scale, bias)
    expected = jax.grad(loss(layer_norm_reference), argnums=(0, 1, 2))(x, scale, bias)
    for got, want in zip(grads, expected):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
