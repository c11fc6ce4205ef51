"""CQL, Cal-QL and IQL losses against hand-computed values on constant critics."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels.distributions import tanh_normal_log_prob_reference
from kernels.ensemble import init_ensemble_mlp
from test_sac import ACT, OBS, config, constant_critic, tiny_batch
from wsrl_mjx import networks
from wsrl_mjx.agents import cql, iql


def actor():
    return networks.init_actor(jax.random.key(1), OBS, ACT, (4, 4), True, 1e-2)


def zero_actor():
    """mean 0 and log_std 0 at every state (zero kernels and biases)."""
    return jax.tree.map(jnp.zeros_like, actor())


def cql_config(**overrides):
    return cql.CQLConfig(sac=config(num_critics=3, num_min_critics=2), **overrides)


@pytest.mark.parametrize('calql', [False, True])
def test_cql_loss_hand_computed(calql):
    # Constant critics: every candidate of member i equals c_i, so the logsumexp over 3n + 1 candidates
    # (no importance sampling) is c_i + log(3n + 1): the gap is log(31) for n = 10, whatever the policy.
    cfg = cql_config(importance_sample=False, calql=calql)
    batch = tiny_batch()
    critic = constant_critic([1.0, 2.0, 4.0])
    target = constant_critic([3.0, 3.0, 3.0])
    mc = jnp.full((4,), -100.0)  # below every Q: Cal-QL changes nothing
    loss, m = cql.critic_loss(critic, target, actor(), 1.0, batch, mc, jax.random.key(0), cfg)
    y = np.array([1.0 + 0.99 * 3.0, -2.0, 0.5 + 0.99 * 3.0, 3.0 + 0.99 * 3.0])
    td = np.mean([(q - y) ** 2 for q in (1.0, 2.0, 4.0)])
    np.testing.assert_allclose(m['td_loss'], td, rtol=1e-6)
    np.testing.assert_allclose(m['cql_gap'], math.log(31), rtol=1e-6)
    np.testing.assert_allclose(loss, td + 5.0 * math.log(31), rtol=1e-6)


def test_importance_sampled_candidates():
    # Uniform actions: Q + |A| log 2; policy actions: Q - log pi(a), log pi of the zero actor's samples.
    cfg = cql_config()
    batch = tiny_batch()
    critic = constant_critic([1.0, 2.0, 4.0])
    candidates, q = cql.conservative_values(critic, zero_actor(), batch, jnp.zeros(4), jax.random.key(0), cfg)
    assert candidates.shape == (3, 4, 30)
    c = np.array([1.0, 2.0, 4.0])[:, None, None]
    np.testing.assert_allclose(candidates[..., :10], np.broadcast_to(c + ACT * math.log(2), (3, 4, 10)), rtol=1e-6)
    # log pi(a) <= max density of a tanh-Gaussian with std 1 per dim is finite; candidates - c = -log pi
    log_pi = -(np.asarray(candidates[..., 10:]) - c)
    assert np.all(np.isfinite(log_pi)) and np.allclose(log_pi[0], log_pi[1])  # same actions for each member
    np.testing.assert_array_equal(q, np.broadcast_to(c[..., 0], (3, 4)))


def test_calql_bound_holds_for_policy_actions_only():
    cfg = cql_config(importance_sample=False, calql=True)
    batch = tiny_batch()
    critic = constant_critic([1.0, 2.0, 4.0])
    mc = jnp.asarray([3.0, -5.0, 10.0, 1.5])
    candidates, q = cql.conservative_values(critic, actor(), batch, mc, jax.random.key(0), cfg)
    policy = np.asarray(candidates[..., 11:])  # next-policy and policy actions
    expected = np.maximum(np.array([1.0, 2.0, 4.0])[:, None, None], np.asarray(mc)[None, :, None])
    np.testing.assert_array_equal(policy, np.broadcast_to(expected, policy.shape))
    assert np.all(policy >= np.asarray(mc)[None, :, None])
    # Uniform actions and the data action keep their own values.
    np.testing.assert_array_equal(candidates[..., :11], np.broadcast_to(np.array([1.0, 2.0, 4.0])[:, None, None],
                                                                         (3, 4, 11)))


def test_max_target_backup_takes_the_best_sampled_action():
    # A target member whose value grows with a[0]: the max over 10 sampled actions beats one sample.
    cfg = cql_config(importance_sample=False)
    params = init_ensemble_mlp(jax.random.key(0), 3, (OBS + ACT, 4, 4, 1), layer_norm=False)
    batch = tiny_batch()
    ys = [cql.td_target(params, actor(), 1.0, batch, jax.random.key(k), cfg) for k in range(3)]
    single = [cql.td_target(params, actor(), 1.0, batch, jax.random.key(k),
                            cql_config(importance_sample=False, max_target_backup=False)) for k in range(3)]
    assert np.mean(ys) > np.mean(single)


def iql_config():
    return iql.IQLConfig(sac=config(num_critics=3, num_min_critics=3))


def test_iql_losses_hand_computed():
    cfg = iql_config()
    batch = tiny_batch()
    state = iql.init(jax.random.key(0), cfg)
    value = jax.tree.map(jnp.zeros_like, state.value)
    value[-1]['bias'] = jnp.full((1, 1), 2.0)  # V = 2 everywhere
    state = state.replace(critic=constant_critic([1.0, 2.0, 4.0]), target_critic=constant_critic([3.0, 5.0, 6.0]),
                          value=value, actor=zero_actor())
    target_q = iql._target_q(state, batch, jnp.arange(3), cfg)  # min over the targets = 3
    np.testing.assert_allclose(target_q, 3.0)
    loss, _ = iql.value_loss(value, target_q, batch, cfg)
    np.testing.assert_allclose(loss, 0.7 * 1.0, rtol=1e-6)  # u = 1 > 0: weight 0.7
    np.testing.assert_allclose(iql.expectile_loss(jnp.asarray(-2.0), 0.7), 0.3 * 4.0, rtol=1e-6)
    loss, _ = iql.critic_loss(state.critic, value, batch, cfg)
    y = np.asarray(batch.reward) + 0.99 * np.asarray(batch.mask) * 2.0
    np.testing.assert_allclose(loss, np.mean([(q - y) ** 2 for q in (1.0, 2.0, 4.0)]), rtol=1e-6)
    advantage = jnp.full((4,), 1.0)
    loss, _ = iql.actor_loss(state.actor, advantage, batch, cfg)
    log_prob = tanh_normal_log_prob_reference(np.zeros((4, ACT)), np.zeros((4, ACT)), np.asarray(batch.action))
    np.testing.assert_allclose(loss, -math.exp(3.0) * log_prob.mean(), rtol=1e-5)
    loss, _ = iql.actor_loss(state.actor, jnp.full((4,), 10.0), batch, cfg)  # weight clipped at 100
    np.testing.assert_allclose(loss, -100.0 * log_prob.mean(), rtol=1e-5)


def test_iql_hands_its_networks_to_sac():
    cfg = iql_config()
    state = iql.init(jax.random.key(0), cfg)
    online = iql.to_sac(state, cfg.sac)
    for a, b in zip(jax.tree.leaves((state.actor, state.critic, state.target_critic, state.actor_opt)),
                    jax.tree.leaves((online.actor, online.critic, online.target_critic, online.actor_opt))):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(networks.temperature_value(online.temperature), 1.0, rtol=1e-6)
