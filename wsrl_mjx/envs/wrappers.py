"""One environment step for training, evaluation and dataset collection, shared by every phase.

`rollout_step` is the one "act, then step the envs" of the package. `VecEnv.step` advances a batch of envs, counts the episode clock, and resets finished envs with a
fresh random initial state. The transition it returns carries the TRUE final observation of a
finished episode as `next_observation` (brax's AutoResetWrapper would overwrite it with the reset
one), and `mask = 1 - terminal`: a time-limit truncation still bootstraps.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class Transition:
    observation: jax.Array  # [..., obs_dim] float32
    action: jax.Array  # [..., act_dim] float32
    reward: jax.Array  # [...] float32
    next_observation: jax.Array  # [..., obs_dim] float32, never a reset observation
    mask: jax.Array  # [...] float32: 0 at a true terminal, else 1


@flax.struct.dataclass
class EnvState:
    brax_state: Any  # brax.envs.State, leaves [num_envs, ...]
    time: jax.Array  # [num_envs] int32: steps taken in the current episode
    episode_return: jax.Array  # [num_envs] float32: return of the current episode so far

    @property
    def observation(self) -> jax.Array:
        return self.brax_state.obs


@flax.struct.dataclass
class StepInfo:
    done: jax.Array  # [num_envs] bool: an episode ended on this step (terminal or time limit)
    episode_return: jax.Array  # [num_envs] float32: the finished episode's return where done, else 0


@dataclasses.dataclass(frozen=True)
class VecEnv:
    env: Any  # brax.envs.Env (MJX backend)
    episode_length: int

    @functools.cached_property
    def observation_size(self) -> int:
        # From the traced shape, once: brax's own property runs a whole reset op by op on every access
        # (60 s the first time on 2 CPU cores).
        return int(jax.eval_shape(self.env.reset, jax.random.PRNGKey(0)).obs.shape[-1])

    @property
    def action_size(self) -> int:
        return int(self.env.action_size)

    def reset(self, key: jax.Array, num_envs: int) -> EnvState:
        brax_state = jax.vmap(self.env.reset)(jax.random.split(key, num_envs))
        return EnvState(
            brax_state=brax_state,
            time=jnp.zeros((num_envs,), jnp.int32),
            episode_return=jnp.zeros((num_envs,), jnp.float32),
        )

    def step(self, state: EnvState, action: jax.Array, key: jax.Array) -> tuple[EnvState, Transition, StepInfo]:
        """action [num_envs, act_dim] in [-1, 1]; key seeds the resets of envs that finish."""
        num_envs = action.shape[0]
        stepped = jax.vmap(self.env.step)(state.brax_state, action)
        time = state.time + 1
        terminal = stepped.done > 0.5
        done = terminal | (time >= self.episode_length)
        episode_return = state.episode_return + stepped.reward
        transition = Transition(
            observation=state.observation,
            action=action,
            reward=stepped.reward,
            next_observation=stepped.obs,
            mask=1.0 - terminal.astype(jnp.float32),
        )
        # Every env computes a reset; finished ones take it. Cheaper than it looks (one forward pass
        # next to the frame-skipped step) and it keeps the program branch-free under vmap.
        fresh = jax.vmap(self.env.reset)(jax.random.split(key, num_envs))

        def pick(new, old):
            where = done.reshape(done.shape + (1,) * (new.ndim - 1))
            return jnp.where(where, new, old)

        brax_state = jax.tree.map(pick, fresh, stepped)
        next_state = EnvState(
            brax_state=brax_state,
            time=jnp.where(done, 0, time),
            episode_return=jnp.where(done, 0.0, episode_return),
        )
        info = StepInfo(done=done, episode_return=jnp.where(done, episode_return, 0.0))
        return next_state, transition, info


def rollout_step(env: VecEnv, state: EnvState, act, key: jax.Array):
    """Act, then step every env: the rollout step of online training, evaluation and collection.

    act(observation [num_envs, obs_dim], key) -> action [num_envs, act_dim] in [-1, 1]: a policy's
    sample, its greedy mean (which ignores the key) or `uniform_policy`. key is split into the key to
    carry on, the action's key and the resets' key. Returns (key, env state, transition, info).
    """
    key, action_key, reset_key = jax.random.split(key, 3)
    action = act(state.observation, action_key)
    state, transition, info = env.step(state, action, reset_key)
    return key, state, transition, info


def uniform_policy(act_dim: int):
    """Uniform random actions in [-1, 1], one row per observation: SAC's and the random level's warmup."""
    return lambda observation, key: jax.random.uniform(key, (observation.shape[0], act_dim), minval=-1.0,
                                                       maxval=1.0)
