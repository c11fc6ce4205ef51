"""Tanh-squashed diagonal Gaussian: a = tanh(u), u ~ N(mean, std^2).

Shapes: mean, log_std [..., d]; actions [..., d]; log-probabilities [...] (summed over d), float32.
Cost: O(d) elementwise per sample; no matmuls.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _log_det_tanh(u: jax.Array) -> jax.Array:
    # log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u)), exact and stable for large |u|.
    return 2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u))


def _normal_log_prob(u, mean, log_std):
    z = (u - mean) * jnp.exp(-log_std)
    return -0.5 * jnp.square(z) - log_std - _LOG_SQRT_2PI


def tanh_normal_sample(key: jax.Array, mean: jax.Array, log_std: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Reparameterised sample and its log-probability: (action [..., d], log_prob [...])."""
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)
    log_prob = jnp.sum(_normal_log_prob(u, mean, log_std) - _log_det_tanh(u), axis=-1)
    return jnp.tanh(u), log_prob


def tanh_normal_log_prob(mean: jax.Array, log_std: jax.Array, action: jax.Array, eps: float = 1e-6) -> jax.Array:
    """log pi(action) for actions in (-1, 1); actions are clipped to +-(1 - eps) before atanh."""
    action = jnp.clip(action, -1.0 + eps, 1.0 - eps)
    u = jnp.arctanh(action)
    return jnp.sum(_normal_log_prob(u, mean, log_std) - _log_det_tanh(u), axis=-1)


def tanh_normal_mode(mean: jax.Array) -> jax.Array:
    """The deterministic (evaluation) action tanh(mean)."""
    return jnp.tanh(mean)


def tanh_normal_log_prob_reference(mean, log_std, action):
    """Textbook change of variables with numpy-style formulas; float64-friendly, for tests."""
    import numpy as np

    mean, log_std, action = (np.asarray(v, np.float64) for v in (mean, log_std, action))
    u = np.arctanh(action)
    std = np.exp(log_std)
    normal = -0.5 * ((u - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    return np.sum(normal - np.log(1.0 - np.tanh(u) ** 2), axis=-1)
