"""CQL, Cal-QL and IQL losses against hand-computed values on constant critics."""
import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels.distributions import tanh_normal_log_prob_reference
from kernels.ensemble import init_ensemble_mlp, select_members
from test_sac import ACT, OBS, config, constant_critic, tiny_batch
from wsrl_mjx import networks
from wsrl_mjx.agents import cql, iql, sac


def actor():
    return networks.init_actor(jax.random.key(1), OBS, ACT, (4, 4), True, 1e-2)


def zero_actor():
    """mean 0 and log_std 0 at every state (zero kernels and biases)."""
    return jax.tree.map(jnp.zeros_like, actor())


def cql_config(**overrides):
    return cql.CQLConfig(sac=config(num_critics=3, num_min_critics=2), **overrides)


@pytest.mark.parametrize('calql', [False, True])
def test_cql_loss_hand_computed(calql):
    # Constant critics are flat in the action: without importance sampling every candidate of member i
    # is c_i, and the reference subtracts T log(3n + 1), so the gap is 0 and the loss is the TD loss.
    cfg = cql_config(importance_sample=False, calql=calql)
    batch = tiny_batch()
    critic = constant_critic([1.0, 2.0, 4.0])
    target = constant_critic([3.0, 3.0, 3.0])
    mc = jnp.full((4,), -100.0)  # below every Q: Cal-QL changes nothing
    loss, m = cql.critic_loss(critic, target, actor(), 1.0, batch, mc, jax.random.key(0), cfg)
    y = np.array([1.0 + 0.99 * 3.0, -2.0, 0.5 + 0.99 * 3.0, 3.0 + 0.99 * 3.0])
    td = np.mean([(q - y) ** 2 for q in (1.0, 2.0, 4.0)])
    np.testing.assert_allclose(m['td_loss'], td, rtol=1e-6)
    np.testing.assert_allclose(m['cql_gap'], 0.0, atol=1e-5)
    np.testing.assert_allclose(loss, td, rtol=1e-5)


def test_importance_sampled_gap_hand_computed():
    # Member i constant c_i: gap_i = logsumexp([|A| log 2] * n, -log pi(a~_k|s), -log pi(a'_k|s')) for
    # the drawn members, whatever c_i; the loss adds alpha times its mean over the drawn pair.
    cfg = cql_config()
    batch = tiny_batch()
    critic, target = constant_critic([1.0, 2.0, 4.0]), constant_critic([3.0, 3.0, 3.0])
    key = jax.random.key(5)
    loss, m = cql.critic_loss(critic, target, zero_actor(), 1.0, batch, jnp.zeros(4), key, cfg)
    _, _, conservative_key = jax.random.split(key, 3)
    _, current_key, next_key = jax.random.split(conservative_key, 3)
    _, current = sac.sample_action(zero_actor(), jnp.repeat(batch.observation, 10, 0), current_key, cfg.sac)
    _, following = sac.sample_action(zero_actor(), jnp.repeat(batch.next_observation, 10, 0), next_key, cfg.sac)
    logits = np.concatenate([np.full((4, 10), ACT * math.log(2.0)), -np.asarray(current).reshape(4, 10),
                             -np.asarray(following).reshape(4, 10)], axis=1)
    gap = np.mean(np.log(np.sum(np.exp(logits), axis=1)))
    np.testing.assert_allclose(m['cql_gap'], gap, rtol=1e-5)
    np.testing.assert_allclose(loss, m['td_loss'] + 5.0 * gap, rtol=1e-5)


def test_importance_sampled_candidates_of_the_drawn_members():
    # Uniform actions: Q + |A| log 2; policy actions: Q - log pi(a). Only the drawn members (2 and 0) are
    # evaluated, in the order drawn.
    cfg = cql_config()
    batch = tiny_batch()
    critic = constant_critic([1.0, 2.0, 4.0])
    members = jnp.asarray([2, 0])
    q_data = networks.critic_apply(critic, batch.observation, batch.action)
    candidates = cql.conservative_values(select_members(critic, members), zero_actor(), batch, q_data[members],
                                         jnp.zeros(4), jax.random.key(0), cfg)
    assert candidates.shape == (2, 4, 30)
    c = np.array([4.0, 1.0])[:, None, None]
    np.testing.assert_allclose(candidates[..., :10], np.broadcast_to(c + ACT * math.log(2), (2, 4, 10)), rtol=1e-6)
    log_pi = -(np.asarray(candidates[..., 10:]) - c)
    assert np.all(np.isfinite(log_pi)) and np.allclose(log_pi[0], log_pi[1])  # same actions for each member


def test_penalty_reaches_the_drawn_members_only():
    # The reference penalises cql_q_samples[idx], q_pred[idx]: a member not drawn gets no gradient from
    # the penalty, a member drawn twice gets twice the gradient it gets when drawn once (same actions).
    cfg = cql_config()
    batch = tiny_batch()
    critic = init_ensemble_mlp(jax.random.key(3), 3, (OBS + ACT, 4, 4, 1), layer_norm=True)
    key = jax.random.key(6)

    def gap(params, members):
        q = networks.critic_apply(params, batch.observation, batch.action)
        return cql.penalty(params, actor(), batch, q, jnp.asarray(members), jnp.zeros(4), key, cfg)

    def member_grads(members):
        grads = jax.grad(gap)(critic, members)
        return [np.concatenate([np.ravel(leaf[i]) for leaf in jax.tree.leaves(grads)]) for i in range(3)]

    apart = member_grads([0, 2])
    assert np.all(apart[1] == 0) and np.abs(apart[0]).max() > 0 and np.abs(apart[2]).max() > 0
    twice = member_grads([2, 2])
    assert np.all(twice[0] == 0) and np.all(twice[1] == 0)
    np.testing.assert_allclose(twice[2], 2 * apart[2], rtol=1e-4, atol=1e-7)


def test_critic_loss_uses_the_drawn_members():
    cfg = cql_config()
    batch = tiny_batch()
    critic = init_ensemble_mlp(jax.random.key(3), 3, (OBS + ACT, 4, 4, 1), layer_norm=True)
    key = jax.random.key(8)
    _, m = cql.critic_loss(critic, critic, actor(), 1.0, batch, jnp.zeros(4), key, cfg)
    _, member_key, conservative_key = jax.random.split(key, 3)
    members = sac.draw_members(member_key, cfg.sac)
    q = networks.critic_apply(critic, batch.observation, batch.action)
    expected = cql.penalty(critic, actor(), batch, q, members, jnp.zeros(4), conservative_key, cfg)
    np.testing.assert_allclose(m['cql_gap'], expected, rtol=1e-6)
    others = [cql.penalty(critic, actor(), batch, q, jnp.asarray(pair), jnp.zeros(4), conservative_key, cfg)
              for pair in ([0, 1], [0, 2], [1, 2]) if sorted(pair) != sorted(np.asarray(members).tolist())]
    assert all(abs(float(o) - float(expected)) > 1e-6 for o in others)  # the draw matters


def test_update_takes_every_gradient_before_the_step():
    # The reference's agent.update computes the critic, actor and temperature losses on the same
    # parameters: the actor's step sees the critic before its step. The target moves at the config's rate
    # (pretrain.tau reaches it as sac.tau; 0.02 here, not the default 0.005).
    cfg = cql.CQLConfig(sac=config(num_critics=3, num_min_critics=2, batch_size=4, critic_steps=1, tau=0.02),
                        n_actions=3)
    state = sac.init(jax.random.key(0), cfg.sac)
    batch = tiny_batch()
    key = jax.random.key(9)
    updated, _ = jax.jit(lambda s, k: cql.update(s, batch, jnp.zeros(4), k, cfg))(state, key)
    critic_key, actor_key = jax.random.split(key)
    _, critic_tx, _ = sac.optimizers(cfg.sac)

    @jax.jit  # one program for the step-by-step reference (op by op it takes half a minute on 2 cores)
    def reference(state):
        critic, _, _ = sac.gradient_step(cql.critic_loss, critic_tx, state.critic, state.critic_opt,
                                         state.target_critic, state.actor,
                                         networks.temperature_value(state.temperature), batch, jnp.zeros(4),
                                         critic_key, cfg)
        before, _ = sac.actor_temperature_step(state, batch, actor_key, cfg.sac)
        after, _ = sac.actor_temperature_step(state.replace(critic=critic), batch, actor_key, cfg.sac)
        return critic, before, after

    critic, before, after = reference(state)
    chex.assert_trees_all_close(updated.critic, critic, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(updated.actor, before.actor, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(updated.temperature, before.temperature, rtol=1e-5, atol=1e-6)
    expected_target = jax.tree.map(lambda t, c: 0.98 * np.asarray(t) + 0.02 * np.asarray(c),
                                   state.target_critic, critic)
    chex.assert_trees_all_close(updated.target_critic, expected_target, rtol=1e-5, atol=1e-6)
    # Ordered the other way (actor after the critic's step) the actor differs by far more than the
    # tolerance above: Adam's first step moves each weight by about its learning rate (1e-4) along the
    # gradient's sign, and some signs differ.
    gaps = [np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in zip(jax.tree.leaves(before.actor),
                                                                         jax.tree.leaves(after.actor))]
    assert max(gaps) > 1e-4


def test_calql_bound_holds_for_policy_actions_only():
    cfg = cql_config(importance_sample=False, calql=True)
    batch = tiny_batch()
    critic = constant_critic([1.0, 2.0, 4.0])
    mc = jnp.asarray([3.0, -5.0, 10.0, 1.5])
    members = jnp.asarray([0, 1, 2])
    q_data = networks.critic_apply(critic, batch.observation, batch.action)
    shift = math.log(31)  # the reference's T log(3n + 1) without importance sampling
    candidates = np.asarray(cql.conservative_values(select_members(critic, members), actor(), batch, q_data, mc,
                                                    jax.random.key(0), cfg)) + shift
    policy = candidates[..., 10:30]  # policy and next-policy actions
    expected = np.maximum(np.array([1.0, 2.0, 4.0])[:, None, None], np.asarray(mc)[None, :, None])
    np.testing.assert_allclose(policy, np.broadcast_to(expected, policy.shape), rtol=1e-6)
    assert np.all(policy >= np.asarray(mc)[None, :, None] - 1e-5)
    # Uniform actions and the data action keep their own values.
    c = np.array([1.0, 2.0, 4.0])[:, None, None]
    for kept in (candidates[..., :10], candidates[..., 30:]):
        np.testing.assert_allclose(kept, np.broadcast_to(c, kept.shape), rtol=1e-6)


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
    # IQL's Gaussian (not squashed) around tanh(0) = 0 with std exp(0) = 1: log N(a; 0, 1).
    log_prob = np.sum(-0.5 * np.asarray(batch.action) ** 2 - 0.5 * math.log(2 * math.pi), axis=-1)
    np.testing.assert_allclose(loss, -math.exp(3.0) * log_prob.mean(), rtol=1e-5)
    loss, _ = iql.actor_loss(state.actor, jnp.full((4,), 10.0), batch, cfg)  # weight clipped at 100
    np.testing.assert_allclose(loss, -100.0 * log_prob.mean(), rtol=1e-5)


def test_iql_hands_its_networks_to_sac():
    cfg = iql_config()
    state = iql.init(jax.random.key(0), cfg)
    batch = tiny_batch()
    update = jax.jit(lambda st, k: iql.update(st, batch, jnp.zeros(4), k, cfg))
    for k in range(3):  # a few steps, so the log-std bias and the mean have moved
        state, _ = update(state, jax.random.key(k))
    online = iql.to_sac(state, cfg.sac)
    for a, b in zip(jax.tree.leaves((state.actor, state.critic, state.target_critic, state.actor_opt)),
                    jax.tree.leaves((online.actor, online.critic, online.target_critic, online.actor_opt))):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(networks.temperature_value(online.temperature), 1.0, rtol=1e-6)
    # The log-std outputs' kernel columns stay zero: the SAC actor's std is IQL's at every state.
    assert np.all(np.asarray(online.actor[-1]['kernel'])[..., ACT:] == 0)
    sigma = np.asarray(online.actor[-1]['bias'])[0, ACT:]
    assert not np.allclose(sigma, 0.0)
    observation = jnp.asarray(np.random.default_rng(3).normal(size=(5, OBS)) * 3, jnp.float32)
    h, log_std = networks.actor_apply(online.actor, observation, cfg.sac.log_std_min, cfg.sac.log_std_max)
    np.testing.assert_allclose(log_std, np.broadcast_to(sigma, (5, ACT)), rtol=1e-6)
    # The greedy action is kept: IQL's mode tanh(h(s)) is SAC's tanh(mean).
    np.testing.assert_allclose(sac.greedy_action(online.actor, observation, cfg.sac), np.tanh(h), rtol=1e-6)
    mode = jnp.tanh(h)
    log_prob = iql.gaussian_log_prob(state.actor, observation, mode, cfg.sac)
    shifted = iql.gaussian_log_prob(state.actor, observation, mode + 0.05, cfg.sac)
    assert np.all(np.asarray(log_prob) > np.asarray(shifted))  # tanh(h) is the mode of IQL's policy


def test_behaviour_cloning_actor_loss_hand_computed():
    # w = 1: alpha * log pi(a~|s) - log pi(a|s) on the data's actions (the critic plays no part);
    # w = 0: SAC's actor loss.
    cfg = config(num_critics=3, num_min_critics=2)
    batch = tiny_batch()
    critic = constant_critic([2.0, -1.0, 0.5])
    key = jax.random.key(4)
    loss, m = cql.actor_loss(zero_actor(), critic, 0.3, batch, key, cfg, bc_weight=1.0)
    _, log_prob = sac.sample_action(zero_actor(), batch.observation, key, cfg)
    data_log_prob = tanh_normal_log_prob_reference(np.zeros((4, ACT)), np.zeros((4, ACT)),
                                                   np.clip(np.asarray(batch.action), -0.99, 0.99))
    np.testing.assert_allclose(loss, np.mean(0.3 * np.asarray(log_prob) - data_log_prob), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(m['bc_log_prob'], data_log_prob.mean(), rtol=1e-5)
    sac_loss, _ = sac.actor_loss(zero_actor(), critic, 0.3, batch, key, cfg)
    no_bc, _ = cql.actor_loss(zero_actor(), critic, 0.3, batch, key, cfg, bc_weight=0.0)
    np.testing.assert_allclose(no_bc, sac_loss, rtol=1e-6)


def test_bc_steps_switch_the_actor_loss_after_that_many_updates():
    cfg = cql.CQLConfig(sac=config(num_critics=3, num_min_critics=2, batch_size=4, critic_steps=1), n_actions=3,
                        bc_steps=5)
    state = sac.init(jax.random.key(0), cfg.sac)
    batch = tiny_batch()
    key = jax.random.key(9)
    step = jax.jit(lambda st, n: cql.update(st, batch, jnp.zeros(4), key, cfg, updates=n))
    cloning, _ = step(state, jnp.asarray(4, jnp.int32))
    improving, _ = step(state, jnp.asarray(5, jnp.int32))
    _, actor_key = jax.random.split(key)
    for weight, got in ((1.0, cloning), (0.0, improving)):
        loss = functools.partial(cql.actor_loss, bc_weight=weight)
        expected, _ = sac.actor_temperature_step(state, batch, actor_key, cfg.sac, loss)
        chex.assert_trees_all_close(got.actor, expected.actor, rtol=1e-5, atol=1e-6)
    online, _ = jax.jit(lambda st: cql.update(st, batch, jnp.zeros(4), key, cfg))(state)  # online: no cloning
    chex.assert_trees_all_close(online.actor, improving.actor, rtol=1e-5, atol=1e-6)


def test_auto_tuned_weight_steps_the_critic_like_that_fixed_weight_and_moves_with_the_gap():
    # With cql_autotune_alpha the critic's step is the fixed-weight step at the multiplier's current
    # value (the target gap only shifts the loss), and the multiplier's parameter takes Adam's first
    # step: about +lr while the gap is above the target, -lr below it (reference: LeqLagrangeMultiplier,
    # softplus, loss -w * (gap - target)).
    base = dict(sac=config(num_critics=3, num_min_critics=2, batch_size=4, critic_steps=1), n_actions=3)
    batch, key = tiny_batch(), jax.random.key(9)
    fixed_cfg = cql.CQLConfig(**base, alpha=2.0)
    fixed_state = cql.init(jax.random.key(0), fixed_cfg)
    assert fixed_state.cql_alpha is None  # no leaves without auto-tuning: the state is SAC's
    step = jax.jit(lambda s, c: cql.update(s, batch, jnp.zeros(4), key, c), static_argnums=1)
    fixed, fixed_metrics = step(fixed_state, fixed_cfg)
    moved = {}
    for target in (-100.0, 100.0):  # the gap is far above / below
        cfg = cql.CQLConfig(**base, autotune_alpha=True, target_action_gap=target, alpha_lagrange_init=2.0,
                            alpha_lagrange_lr=1e-2)
        state = cql.init(jax.random.key(0), cfg)
        np.testing.assert_allclose(float(networks.temperature_value(state.cql_alpha)), 2.0, rtol=1e-6)
        updated, metrics = step(state, cfg)
        chex.assert_trees_all_close(updated.critic, fixed.critic, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(float(metrics['critic_loss']),
                                   float(fixed_metrics['td_loss']) + 2.0 * (float(fixed_metrics['cql_gap']) - target),
                                   rtol=1e-5)
        np.testing.assert_allclose(float(metrics['cql_alpha']), 2.0, rtol=1e-6)  # the value before its step
        moved[target] = float(updated.cql_alpha - state.cql_alpha)
    np.testing.assert_allclose(moved[-100.0], 1e-2, rtol=1e-3)
    np.testing.assert_allclose(moved[100.0], -1e-2, rtol=1e-3)
    # Online SAC gets the state without the multiplier (the online program's state has none).
    assert jax.tree.structure(cql.to_sac(updated, cfg.sac)) == jax.tree.structure(sac.init(key, cfg.sac))


def test_uniform_std_is_one_learnt_log_std_per_action_dimension():
    # std_parameterization='uniform' (the reference's antmaze actor): the same log-std in every state,
    # learnt through the output bias; the log-std kernel columns start and stay at zero.
    cfg = config(batch_size=4, critic_steps=1, std_parameterization='uniform')
    state = sac.init(jax.random.key(0), cfg)
    assert not np.any(np.asarray(state.actor[-1]['kernel'])[..., ACT:])
    update = jax.jit(lambda s, k: sac.update(s, tiny_batch(), k, cfg))
    for i in range(3):
        state, _ = update(state, jax.random.key(i))
    last = state.actor[-1]
    assert not np.any(np.asarray(last['kernel'])[..., ACT:])
    assert np.any(np.asarray(last['bias'])[..., ACT:] != 0.0)  # learnt
    assert np.any(np.asarray(last['kernel'])[..., :ACT] != 0.0)  # the mean still depends on the state
    mean, log_std = sac.actor_apply(state.actor, tiny_batch().observation, cfg)
    np.testing.assert_array_equal(np.asarray(log_std), np.broadcast_to(np.asarray(log_std[:1]), log_std.shape))
    assert np.unique(np.asarray(mean[:, 0])).size == 4
    # 'exp' (locomotion): the log-std varies with the state.
    exp_cfg = config(batch_size=4, critic_steps=1)
    exp_state = sac.init(jax.random.key(0), exp_cfg)
    _, log_std = sac.actor_apply(exp_state.actor, tiny_batch().observation, exp_cfg)
    assert np.unique(np.asarray(log_std[:, 0])).size == 4
