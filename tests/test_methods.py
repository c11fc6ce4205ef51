"""The baselines' pieces without MJX: what each method runs, mixed offline/online batches, and the
offline algorithms' updates on such batches (online rows carry no Monte-Carlo bound)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import smoke_config
from kernels.replay import replay_init, replay_insert
from test_sac import ACT, OBS, config
from wsrl_mjx import config as config_lib
from wsrl_mjx.agents import cql, iql, sac
from wsrl_mjx.envs.wrappers import Transition
from wsrl_mjx.pipeline import offline, online


def rows(n, reward):
    return Transition(observation=jnp.full((n, OBS), reward / 100), action=jnp.zeros((n, ACT)),
                      reward=jnp.full((n,), reward), next_observation=jnp.zeros((n, OBS)), mask=jnp.ones((n,)))


def state_and_data(spec):
    buffer = replay_insert(replay_init(jax.tree.map(lambda x: x[0], rows(1, 0.0)), 64), rows(64, -1.0))
    agent = sac.init(jax.random.key(0), spec.agent) if spec.update != 'iql' else iql.init(jax.random.key(0),
                                                                                          spec.offline_cfg)
    state = online.OnlineState(agent=agent, buffer=buffer, env=None, key=jax.random.key(1),
                               env_steps=jnp.zeros((), jnp.int32))
    data = offline.OfflineData(transitions=rows(32, 100.0), mc_return=jnp.full((32,), 7.0))
    return state, data


def test_methods_table():
    cfg = smoke_config()
    expected = {  # method: (pretrains, uses data online, warmup steps, warmup policy)
        'wsrl': (True, False, cfg.warmup_steps, 'policy'), 'no_warmup': (True, False, 0, 'policy'),
        'retain': (True, True, cfg.warmup_steps, 'policy'), 'rlpd': (False, True, 0, 'uniform'),
        'calql': (True, True, 0, 'policy'), 'cql': (True, True, 0, 'policy'), 'iql': (True, True, 0, 'policy'),
        'calql_no_data': (True, False, 0, 'policy'), 'cql_no_data': (True, False, 0, 'policy'),
        'iql_no_data': (True, False, 0, 'policy'),
        'scratch': (False, False, cfg.warmup_steps, 'uniform'),
    }
    assert set(expected) == set(config_lib.METHODS)
    for name, (pretrains, keeps_data, warmup, policy) in expected.items():
        cfg.method = name
        cfg.online_steps = cfg.warmup_steps + 300 if warmup else 300
        config_lib.validate(cfg)
        m = config_lib.method(cfg)
        assert (m.pretrain is not None, m.offline_ratio > 0) == (pretrains, keeps_data), name
        assert config_lib.warmup_steps(cfg) == warmup and config_lib.warmup_policy(cfg) == policy, name
        assert config_lib.uses_dataset(cfg) == (pretrains or keeps_data)
    cfg.method = 'calql'
    assert config_lib.method(cfg).online == 'calql' and config_lib.method(cfg).pretrain == 'calql'
    for algo in ('cql', 'calql', 'iql'):  # the no-data variants differ from their algorithm only in the batches
        cfg.method = algo
        with_data = config_lib.method(cfg)
        cfg.method = f'{algo}_no_data'
        assert config_lib.method(cfg) == dataclasses.replace(with_data, offline_ratio=0.0)


def test_mixed_batch_takes_the_same_offline_share_in_every_minibatch():
    spec = online.OnlineSpec(agent=config(critic_steps=2, batch_size=4), num_envs=1, buffer_capacity=64,
                             offline_ratio=0.5)
    state, data = state_and_data(spec)
    batch, mc_return = online.mixed_batch(state, data, jax.random.key(2), spec)
    assert batch.reward.shape == (8,)
    np.testing.assert_array_equal(batch.reward, [-1, -1, 100, 100, -1, -1, 100, 100])
    np.testing.assert_array_equal(mc_return, [-np.inf, -np.inf, 7, 7, -np.inf, -np.inf, 7, 7])
    alone = online.OnlineSpec(agent=spec.agent, num_envs=1, buffer_capacity=64)
    batch, mc_return = online.mixed_batch(state, None, jax.random.key(2), alone)
    assert np.all(np.asarray(batch.reward) == -1) and np.all(np.isneginf(mc_return))


# calql at ratio 0 is calql_no_data: every row online, so the Cal-QL bound (-inf) must leave all rows alone.
@pytest.mark.parametrize('algo,ratio', [('cql', 0.5), ('calql', 0.5), ('iql', 0.5), ('calql', 0.0)])
def test_offline_algorithms_update_on_mixed_batches(algo, ratio):
    agent = config(critic_steps=1, batch_size=8, num_critics=3, num_min_critics=2)
    algo_cfg = (iql.IQLConfig(sac=agent) if algo == 'iql'
                else cql.CQLConfig(sac=agent, n_actions=3, calql=algo == 'calql'))
    spec = online.OnlineSpec(agent=agent, num_envs=1, buffer_capacity=64, update=algo, offline_cfg=algo_cfg,
                             offline_ratio=ratio)
    state, data = state_and_data(spec)
    batch, mc_return = online.mixed_batch(state, data if ratio else None, jax.random.key(2), spec)
    assert batch.reward.shape == (8,) and np.sum(np.asarray(batch.reward) == 100.0) == 8 * ratio
    update = jax.jit(iql.update if algo == 'iql' else cql.update, static_argnums=4)
    agent_state, metrics = update(state.agent, batch, mc_return, jax.random.key(3), algo_cfg)
    assert all(np.isfinite(v) for v in jax.tree.leaves(metrics))
    changed = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(agent_state.critic),
                                                        jax.tree.leaves(state.agent.critic))]
    assert any(changed)
