"""The pretraining program: a lax.scan of (sample a batch from the on-device dataset -> one update).

Per seed, like the online program; the dataset is one copy shared by all seeds of a device (not
vmapped). It lives on the device only while pretraining runs: `OfflineData.delete` frees it before the
online phase, whose programs never take it (except the baselines that retain offline data).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from wsrl_mjx.envs.wrappers import Transition


@flax.struct.dataclass
class OfflineData:
    transitions: Transition  # leaves [N, ...]
    mc_return: jax.Array  # [N] float32: discounted return-to-go in the dataset trajectory (Cal-QL)

    @property
    def size(self) -> int:
        return self.mc_return.shape[0]

    def delete(self) -> None:
        """Frees the device buffers now (not when Python drops the last reference)."""
        for leaf in jax.tree.leaves(self):
            leaf.delete()


def from_dataset(dataset, discount: float, reward_scale: float = 1.0, reward_bias: float = 0.0,
                 sharding=None, failure_reward: float | None = None) -> OfflineData:
    """Host Dataset -> device arrays (replicated over `sharding`'s devices when given).
    failure_reward: the env's reward short of the goal on sparse tasks (EnvSpec.failure_reward), before
    the scale and bias; it sets the Monte-Carlo return of episodes that never reach the goal."""
    rewards = (dataset.rewards * reward_scale + reward_bias).astype(np.float32)
    failure = None
    if failure_reward is not None:  # scaled as the rewards are, so that the two compare exactly
        failure = float((np.asarray([failure_reward], dataset.rewards.dtype) * reward_scale + reward_bias)
                        .astype(np.float32)[0])
    mc = dataclasses.replace(dataset, rewards=rewards).mc_returns(discount, failure)
    host = OfflineData(
        transitions=Transition(
            observation=dataset.observations, action=dataset.actions, reward=rewards,
            next_observation=dataset.next_observations, mask=(1.0 - dataset.terminals).astype(np.float32)),
        mc_return=mc,
    )
    return jax.device_put(host, sharding) if sharding is not None else jax.device_put(host)


def sample(data: OfflineData, key: jax.Array, n: int) -> tuple[Transition, jax.Array]:
    """n rows uniformly with replacement: (transitions [n, ...], mc_return [n])."""
    index = jax.random.randint(key, (n,), 0, data.size)
    return jax.tree.map(lambda x: x[index], data.transitions), data.mc_return[index]


@flax.struct.dataclass
class PretrainState:
    agent: Any  # sac.SACState (CQL, Cal-QL) or iql.IQLState
    key: jax.Array
    updates: jax.Array  # int32 []


def run_chunk(state: PretrainState, data: OfflineData, update: Callable, batch_size: int, iterations: int):
    """`iterations` updates as one lax.scan; returns the state and the chunk-mean of each metric."""

    def body(carry, _):
        key, sample_key, update_key = jax.random.split(carry.key, 3)
        batch, mc_return = sample(data, sample_key, batch_size)
        agent, metrics = update(carry.agent, batch, mc_return, update_key, updates=carry.updates)
        return carry.replace(agent=agent, key=key, updates=carry.updates + 1), metrics

    state, metrics = jax.lax.scan(body, state, None, length=iterations)
    return state, jax.tree.map(jnp.mean, metrics)
