"""Actor, ensemble critic and temperature, built on kernels.ensemble (the WSRL paper and reference).

Parameters are plain pytrees (tuples of layer dicts with a leading member axis), so target copies,
optimizer states and checkpoints need no module machinery.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from kernels.distributions import tanh_normal_mode, tanh_normal_sample
from kernels.ensemble import ensemble_mlp, init_ensemble_mlp


def init_critic(key, obs_dim: int, act_dim: int, members: int, hidden: Sequence[int], layer_norm: bool,
                kernel_scale_final: float):
    """`members` independent Q-networks on concat(obs, action): Dense -> [LN] -> ReLU blocks, Dense(1)."""
    return init_ensemble_mlp(key, members, (obs_dim + act_dim, *hidden, 1), layer_norm,
                             kernel_scale_final=kernel_scale_final)


def critic_apply(params, observation: jax.Array, action: jax.Array, matmul_dtype=jnp.float32) -> jax.Array:
    """Q-values [M, B] float32 of every member for observation [B, obs_dim], action [B, act_dim]."""
    x = jnp.concatenate([observation, action], axis=-1)
    return ensemble_mlp(params, x, matmul_dtype)[..., 0]


def init_actor(key, obs_dim: int, act_dim: int, hidden: Sequence[int], layer_norm: bool,
               kernel_scale_final: float):
    """Tanh-Gaussian policy MLP: one member; output [mean, log_std] (2 * act_dim)."""
    return init_ensemble_mlp(key, 1, (obs_dim, *hidden, 2 * act_dim), layer_norm,
                             kernel_scale_final=kernel_scale_final)


def actor_apply(params, observation: jax.Array, log_std_min: float, log_std_max: float,
                matmul_dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
    """(mean, log_std), each [B, act_dim]; log_std clipped so std stays in [exp(min), exp(max)]."""
    out = ensemble_mlp(params, observation, matmul_dtype)[0]
    mean, log_std = jnp.split(out, 2, axis=-1)
    return mean, jnp.clip(log_std, log_std_min, log_std_max)


def state_independent_std(actor_params, act_dim: int):
    """The actor with the kernel columns of its log-std outputs zeroed: log_std(s) = their bias for every
    s (the reference's std_parameterization="uniform", one learnt log-std per action dimension). Applied
    inside a loss, those columns get no gradient and, zero from the start, stay zero."""
    last = dict(actor_params[-1])
    last['kernel'] = last['kernel'].at[..., act_dim:].set(0.0)
    return (*actor_params[:-1], last)


def sample_action(params, observation, key, log_std_min, log_std_max, matmul_dtype=jnp.float32):
    """Stochastic action [B, act_dim] and its log-probability [B]."""
    mean, log_std = actor_apply(params, observation, log_std_min, log_std_max, matmul_dtype)
    return tanh_normal_sample(key, mean, log_std)


def greedy_action(params, observation, log_std_min, log_std_max, matmul_dtype=jnp.float32):
    """Deterministic evaluation action tanh(mean), [B, act_dim]."""
    mean, _ = actor_apply(params, observation, log_std_min, log_std_max, matmul_dtype)
    return tanh_normal_mode(mean)


def init_temperature(initial_alpha: float) -> jax.Array:
    """The scalar parameter p with softplus(p) = initial_alpha."""
    return jnp.asarray(math.log(math.expm1(initial_alpha)), jnp.float32)


def temperature_value(param: jax.Array) -> jax.Array:
    return jax.nn.softplus(param)
