"""Learning, cheaply and without MJX: CQL pretraining on a synthetic dataset of a known behaviour.

Every reward is 0, so the TD loss alone leaves Q flat in the action and gives the actor nothing to
follow: what recovers the behaviour is the conservative penalty, which raises Q on the data's actions
and lowers it elsewhere. The control run (alpha ~ 0) shows the test can fail.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from wsrl_mjx import networks
from wsrl_mjx.agents import cql, sac
from wsrl_mjx.envs.wrappers import Transition

OBS, ACT, ROWS, BATCH, UPDATES = 3, 2, 4096, 64, 1000
_W = np.random.default_rng(0).normal(size=(OBS, ACT)).astype(np.float32)


def behaviour(observation):
    return np.tanh(np.asarray(observation) @ _W)


def dataset():
    rng = np.random.default_rng(1)
    observation = rng.normal(size=(ROWS, OBS)).astype(np.float32)
    return Transition(observation=jnp.asarray(observation), action=jnp.asarray(behaviour(observation)),
                      reward=jnp.zeros(ROWS), next_observation=jnp.asarray(rng.normal(size=(ROWS, OBS)), jnp.float32),
                      mask=jnp.ones(ROWS))


def config(alpha):
    agent = sac.SACConfig(obs_dim=OBS, act_dim=ACT, num_critics=4, num_min_critics=2, critic_hidden=(32, 32),
                          actor_hidden=(32, 32), critic_steps=1, batch_size=BATCH, actor_lr=1e-3, critic_lr=1e-3,
                          temperature_lr=1e-3)
    return cql.CQLConfig(sac=agent, alpha=alpha, n_actions=4)


@functools.partial(jax.jit, static_argnums=2)
def pretrain(state, data, cfg, key):
    def body(state, key):
        sample_key, update_key = jax.random.split(key)
        batch = jax.tree.map(lambda x: x[jax.random.randint(sample_key, (BATCH,), 0, ROWS)], data)
        return cql.update(state, batch, jnp.zeros(BATCH), update_key, cfg)[0], None

    return jax.lax.scan(body, state, jax.random.split(key, UPDATES))[0]


@functools.lru_cache(maxsize=None)
def trained(alpha):
    cfg = config(alpha)
    state = sac.init(jax.random.key(0), cfg.sac)
    return state, pretrain(state, dataset(), cfg, jax.random.key(1)), cfg


def held_out():
    observation = np.random.default_rng(2).normal(size=(512, OBS)).astype(np.float32)
    return jnp.asarray(observation), jnp.asarray(behaviour(observation))


def greedy_error(state, cfg):
    observation, action = held_out()
    return float(jnp.mean(jnp.abs(sac.greedy_action(state.actor, observation, cfg.sac) - action)))


def q_gap(state):
    """Mean Q(s, behaviour action) - mean Q(s, uniform action) over the held-out states."""
    observation, action = held_out()
    uniform = jax.random.uniform(jax.random.key(3), action.shape, minval=-1.0, maxval=1.0)
    return float(networks.critic_apply(state.critic, observation, action).mean()
                 - networks.critic_apply(state.critic, observation, uniform).mean())


def test_cql_pretraining_recovers_the_behaviour():
    initial, state, cfg = trained(5.0)
    assert greedy_error(initial, cfg) > 0.4  # the untrained policy's tanh(mean) is about 0
    assert greedy_error(state, cfg) < 0.1  # measured 0.027 (mean |tanh(mean) - behaviour| per dim)


def test_cql_penalty_lowers_q_off_the_data():
    _, state, _ = trained(5.0)
    assert q_gap(state) > 5.0  # measured 14.0


def test_without_the_penalty_nothing_is_learnt():
    _, state, cfg = trained(1e-6)
    assert greedy_error(state, cfg) > 0.3  # measured 0.43
    assert abs(q_gap(state)) < 0.5  # measured 0.004
