"""Evaluation program: deterministic (tanh-mean) episodes on vmapped envs, per seed."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from wsrl_mjx.agents import sac
from wsrl_mjx.envs.wrappers import VecEnv


def evaluate(actor_params, key: jax.Array, env: VecEnv, cfg: sac.SACConfig, episodes: int) -> jax.Array:
    """Returns [episodes] float32: the undiscounted return of one episode per env, from a fresh reset.

    Each env runs until its first episode ends (terminal or time limit); rewards after that are masked.
    """
    reset_key, step_key = jax.random.split(key)
    env_state = env.reset(reset_key, episodes)

    def body(carry, step_key):
        env_state, alive, returns = carry
        action = sac.greedy_action(actor_params, env_state.observation, cfg)
        env_state, transition, info = env.step(env_state, action, step_key)
        returns = returns + jnp.where(alive, transition.reward, 0.0)
        return (env_state, alive & ~info.done, returns), None

    init = (env_state, jnp.ones((episodes,), bool), jnp.zeros((episodes,), jnp.float32))
    (_, _, returns), _ = jax.lax.scan(body, init, jax.random.split(step_key, env.episode_length))
    return returns
