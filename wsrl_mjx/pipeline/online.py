"""The online program: act -> MJX step -> ring-buffer insert -> updates, a lax.scan per chunk.

Everything here is per seed; `programs.py` vmaps over the seed axis and jits with the state donated.
Warmup (no updates) and training are separate programs, not a cond: under vmap a per-seed predicate
would run both branches.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from kernels.replay import ReplayBuffer, replay_init, replay_insert, replay_sample
from wsrl_mjx.agents import registry, sac
from wsrl_mjx.pipeline import offline
from wsrl_mjx.envs.wrappers import EnvState, Transition, VecEnv, rollout_step, uniform_policy

# Warmup action sources: the (frozen) policy's stochastic actions as WSRL does, or uniform random
# actions as SAC from scratch does.
WARMUP_POLICIES = ('policy', 'uniform')


@dataclasses.dataclass(frozen=True)
class OnlineSpec:
    """Static settings of the online programs (hashable; never traced)."""
    agent: sac.SACConfig
    num_envs: int
    buffer_capacity: int
    update: str = 'sac'  # 'sac', or an offline algorithm continued online: 'cql', 'calql', 'iql'
    offline_cfg: Any = None  # its cql.CQLConfig / iql.IQLConfig
    offline_ratio: float = 0.0  # share of every batch drawn from the offline data (0: none is taken)
    reward_scale: float = 1.0  # the buffer stores r * reward_scale + reward_bias (as the offline data)
    reward_bias: float = 0.0

    @property
    def algo_cfg(self):
        """The update's own config: the SAC config, or the offline algorithm's."""
        return self.agent if self.update == 'sac' else self.offline_cfg

    @property
    def critic_steps(self) -> int:
        """Critic minibatches per env step: SAC's critic_steps (UTD), one for the offline algorithms."""
        return registry.get(self.update).critic_steps(self.algo_cfg)

    @property
    def batch_rows(self) -> int:
        """Rows sampled per env step: critic_steps minibatches of the batch size."""
        return registry.get(self.update).batch_rows(self.algo_cfg)


@flax.struct.dataclass
class OnlineState:
    agent: Any  # sac.SACState (iql.IQLState when IQL is continued online)
    buffer: ReplayBuffer
    env: EnvState
    key: jax.Array  # typed PRNG key
    env_steps: jax.Array  # int32 []: transitions collected (all envs, warmup included)


@flax.struct.dataclass
class ChunkMetrics:
    episodes: jax.Array  # int32 []: episodes finished in the chunk
    episode_return_sum: jax.Array  # float32 []: sum of their returns
    losses: dict  # name -> float32 [] chunk mean (empty without updates)


def init_state(key: jax.Array, agent, env: VecEnv, spec: OnlineSpec) -> OnlineState:
    """A fresh online state around `agent` (carried over unchanged): empty buffer, freshly reset envs."""
    key, env_key = jax.random.split(key)
    obs_dim, act_dim = spec.agent.obs_dim, spec.agent.act_dim
    example = Transition(
        observation=jnp.zeros((obs_dim,), jnp.float32), action=jnp.zeros((act_dim,), jnp.float32),
        reward=jnp.zeros((), jnp.float32), next_observation=jnp.zeros((obs_dim,), jnp.float32),
        mask=jnp.zeros((), jnp.float32),
    )
    return OnlineState(
        agent=agent,
        buffer=replay_init(example, spec.buffer_capacity),
        env=env.reset(env_key, spec.num_envs),
        key=key,
        env_steps=jnp.zeros((), jnp.int32),
    )


def collect_step(state: OnlineState, env: VecEnv, spec: OnlineSpec, policy: str):
    """One step of all envs with actions from `policy`, stored in the buffer."""
    if policy == 'uniform':
        act = uniform_policy(spec.agent.act_dim)
    else:
        act = lambda observation, key: sac.sample_action(state.agent.actor, observation, key, spec.agent)[0]
    key, env_state, transition, info = rollout_step(env, state.env, act, state.key)
    if (spec.reward_scale, spec.reward_bias) != (1.0, 0.0):  # info keeps the env's own returns
        transition = transition.replace(reward=transition.reward * spec.reward_scale + spec.reward_bias)
    state = state.replace(
        env=env_state,
        buffer=replay_insert(state.buffer, transition),
        key=key,
        env_steps=state.env_steps + spec.num_envs,
    )
    return state, info


def mixed_batch(state: OnlineState, data, key: jax.Array, spec: OnlineSpec):
    """A batch of spec.batch_rows: online rows from the buffer and, with offline_ratio > 0, offline rows
    from `data`, the same share in every critic minibatch. Returns (Transition, mc_return): online rows
    have no Monte-Carlo return (-inf: the Cal-QL bound leaves them alone)."""
    online_key, offline_key = jax.random.split(key)
    rows = spec.batch_rows
    n_offline = int(round(rows * spec.offline_ratio))
    batch = replay_sample(state.buffer, online_key, rows - n_offline)
    mc_return = jnp.full((rows - n_offline,), -jnp.inf, jnp.float32)
    if n_offline == 0:
        return batch, mc_return
    offline_batch, offline_mc = offline.sample(data, offline_key, n_offline)
    steps = spec.critic_steps

    def interleave(a, b):  # [steps * n_a] + [steps * n_b] -> steps minibatches of n_a + n_b rows
        a, b = a.reshape(steps, -1, *a.shape[1:]), b.reshape(steps, -1, *b.shape[1:])
        return jnp.concatenate([a, b], axis=1).reshape(-1, *a.shape[2:])

    return jax.tree.map(interleave, batch, offline_batch), interleave(mc_return, offline_mc)


def train_step(state: OnlineState, env: VecEnv, spec: OnlineSpec, data=None):
    """collect_step with the current policy, then one agent update on a fresh uniform batch."""
    state, info = collect_step(state, env, spec, 'policy')
    key, sample_key, update_key = jax.random.split(state.key, 3)
    batch, mc_return = mixed_batch(state, data, sample_key, spec)
    agent, losses = registry.get(spec.update).update(state.agent, batch, mc_return, update_key, spec.algo_cfg)
    return state.replace(agent=agent, key=key), info, losses


def run_chunk(state: OnlineState, env: VecEnv, spec: OnlineSpec, iterations: int, policy: str, learn: bool,
              data=None):
    """`iterations` env steps (x num_envs transitions) as one lax.scan; updates after each if `learn`.

    data: the offline data (OfflineData) for the methods that keep it, else None.
    """

    def body(carry, _):
        if learn:
            carry, info, losses = train_step(carry, env, spec, data)
        else:
            carry, info = collect_step(carry, env, spec, policy)
            losses = {}
        return carry, (info.done.sum(), info.episode_return.sum(), losses)

    state, (episodes, return_sum, losses) = jax.lax.scan(body, state, None, length=iterations)
    metrics = ChunkMetrics(
        episodes=episodes.sum().astype(jnp.int32),
        episode_return_sum=return_sum.sum(),
        losses=jax.tree.map(jnp.mean, losses),
    )
    return state, metrics
