"""Evaluation program: deterministic (tanh-mean) episodes on vmapped envs, per seed."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from wsrl_mjx.agents import sac
from wsrl_mjx.envs.wrappers import VecEnv, rollout_step


def evaluate(actor_params, key: jax.Array, env: VecEnv, cfg: sac.SACConfig, episodes: int) -> jax.Array:
    """Returns [episodes] float32: the undiscounted return of one episode per env, from a fresh reset.

    Each env runs until its first episode ends (terminal or time limit); rewards after that are masked.
    """
    reset_key, key = jax.random.split(key)
    env_state = env.reset(reset_key, episodes)
    act = lambda observation, key: sac.greedy_action(actor_params, observation, cfg)

    def body(carry, _):
        env_state, key, alive, returns = carry
        key, env_state, transition, info = rollout_step(env, env_state, act, key)
        returns = returns + jnp.where(alive, transition.reward, 0.0)
        return (env_state, key, alive & ~info.done, returns), None

    init = (env_state, key, jnp.ones((episodes,), bool), jnp.zeros((episodes,), jnp.float32))
    (_, _, _, returns), _ = jax.lax.scan(body, init, None, length=env.episode_length)
    return returns
