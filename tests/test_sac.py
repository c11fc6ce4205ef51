"""Tier 1-2: SAC losses against hand-computed values; the fused update against a step-by-step loop."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from kernels.ensemble import init_ensemble_mlp
from wsrl_mjx import networks
from wsrl_mjx.agents import sac
from wsrl_mjx.envs.wrappers import Transition

OBS, ACT = 3, 2


def constant_critic(values):
    """A critic whose member i outputs values[i] everywhere: zero kernels, output bias = values."""
    params = init_ensemble_mlp(jax.random.key(0), len(values), (OBS + ACT, 4, 4, 1), layer_norm=True)
    params = jax.tree.map(jnp.zeros_like, params)
    params[-1]['bias'] = jnp.asarray(values, jnp.float32)[:, None]
    return params


def tiny_batch(n=4):
    rng = np.random.default_rng(0)
    return Transition(
        observation=jnp.asarray(rng.normal(size=(n, OBS)), jnp.float32),
        action=jnp.asarray(rng.uniform(-1, 1, size=(n, ACT)), jnp.float32),
        reward=jnp.asarray([1.0, -2.0, 0.5, 3.0][:n], jnp.float32),
        next_observation=jnp.asarray(rng.normal(size=(n, OBS)), jnp.float32),
        mask=jnp.asarray([1.0, 0.0, 1.0, 1.0][:n], jnp.float32),
    )


def config(**overrides):
    base = dict(obs_dim=OBS, act_dim=ACT, num_critics=3, num_min_critics=3, critic_hidden=(4, 4),
                actor_hidden=(4, 4), critic_steps=2, batch_size=2)
    return sac.SACConfig(**{**base, **overrides})


def test_critic_loss_hand_computed():
    cfg = config()
    batch = tiny_batch()
    critic = constant_critic([1.0, 2.0, 4.0])
    target = constant_critic([5.0, 3.0, 6.0])
    actor = networks.init_actor(jax.random.key(1), OBS, ACT, (4, 4), True, 1e-2)
    key = jax.random.key(2)
    loss, metrics = sac.critic_loss(critic, target, actor, 1.0, batch, key, cfg)
    next_q = np.array([5.0, 3.0, 6.0])[np.asarray(sac.draw_members(jax.random.split(key)[1], cfg))].min()
    y = np.array([1.0, -2.0, 0.5, 3.0]) + 0.99 * np.array([1.0, 0.0, 1.0, 1.0]) * next_q
    expected = np.mean([(q - y) ** 2 for q in (1.0, 2.0, 4.0)])
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    np.testing.assert_allclose(metrics['target_q_mean'], y.mean(), rtol=1e-6)


def test_critic_target_is_min_over_the_drawn_members():
    cfg = config(num_critics=4, num_min_critics=2)
    batch = tiny_batch()
    values = np.array([4.0, 1.0, 3.0, 2.0])
    critic, target = constant_critic(np.zeros(4)), constant_critic(values)
    actor = networks.init_actor(jax.random.key(1), OBS, ACT, (4, 4), True, 1e-2)
    seen = set()
    for k in range(40):
        key = jax.random.key(k)
        _, metrics = sac.critic_loss(critic, target, actor, 1.0, batch, key, cfg)
        next_q = (float(metrics['target_q_mean']) - float(batch.reward.mean())) / (0.99 * float(batch.mask.mean()))
        members = np.asarray(sac.draw_members(jax.random.split(key)[1], cfg))
        np.testing.assert_allclose(next_q, values[members].min(), rtol=1e-5)
        seen.add(tuple(sorted(members)))
    assert len(seen) >= 4  # a new pair per batch, not one fixed pair


def test_members_are_drawn_with_replacement_as_the_reference_draws_them():
    # jax.random.randint(key, (2,), 0, 10) as in zhouzypaul/wsrl: the two draws are independent, so the
    # same member comes twice with probability 1/10 (never, when drawn without replacement).
    cfg = config(num_critics=10, num_min_critics=2)
    draws = np.asarray(jax.vmap(lambda k: sac.draw_members(k, cfg))(jax.random.split(jax.random.key(0), 4000)))
    assert draws.shape == (4000, 2) and draws.min() == 0 and draws.max() == 9
    same = np.mean(draws[:, 0] == draws[:, 1])
    assert abs(same - 0.1) < 0.015, same  # 4000 pairs: the standard error is 0.0047
    counts = np.bincount(draws.ravel(), minlength=10)
    assert counts.min() > 650 and counts.max() < 950  # uniform: 800 each


def test_entropy_backup_subtracts_alpha_log_prob():
    batch = tiny_batch()
    critic, target = constant_critic([0.0, 0.0, 0.0]), constant_critic([1.0, 1.0, 1.0])
    actor = networks.init_actor(jax.random.key(1), OBS, ACT, (4, 4), True, 1e-2)
    key = jax.random.key(3)
    _, plain = sac.critic_loss(critic, target, actor, 0.5, batch, key, config())
    _, backed = sac.critic_loss(critic, target, actor, 0.5, batch, key, config(backup_entropy=True))
    # The same draw as inside the loss (its log-probability is checked against the reference in
    # test_kernels): y gains -discount * mask * alpha * log pi(a'|s').
    action_key, _ = jax.random.split(key)
    _, log_prob = sac.sample_action(actor, batch.next_observation, action_key, config())
    expected = plain['target_q_mean'] - 0.99 * np.mean(np.asarray(batch.mask) * 0.5 * np.asarray(log_prob))
    np.testing.assert_allclose(backed['target_q_mean'], expected, rtol=1e-5, atol=1e-5)


def test_actor_loss_hand_computed():
    cfg = config()
    batch = tiny_batch()
    critic = constant_critic([2.0, -1.0, 0.5])  # min over all members = -1
    actor = networks.init_actor(jax.random.key(1), OBS, ACT, (4, 4), True, 1e-2)
    key = jax.random.key(4)
    loss, metrics = sac.actor_loss(actor, critic, 0.3, batch, key, cfg)
    _, log_prob = sac.sample_action(actor, batch.observation, key, cfg)
    log_prob = np.asarray(log_prob)
    np.testing.assert_allclose(loss, np.mean(0.3 * log_prob - (-1.0)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(metrics['entropy'], -log_prob.mean(), rtol=1e-5, atol=1e-5)


def test_temperature_loss_and_direction():
    param = networks.init_temperature(1.0)
    np.testing.assert_allclose(networks.temperature_value(param), 1.0, rtol=1e-6)
    loss, metrics = sac.temperature_loss(param, 2.0, -3.0)
    np.testing.assert_allclose(loss, 5.0, rtol=1e-6)
    grad = jax.grad(lambda p: sac.temperature_loss(p, 2.0, -3.0)[0])(param)
    np.testing.assert_allclose(grad, 5.0 / (1.0 + math.exp(-float(param))), rtol=1e-5)  # softplus' = sigmoid
    assert grad > 0  # entropy above target: alpha goes down


def test_fused_update_equals_step_by_step_reference():
    cfg = config(num_critics=3, num_min_critics=2)
    state = sac.init(jax.random.key(0), cfg)
    rng = np.random.default_rng(1)
    n = cfg.critic_steps * cfg.batch_size
    batch = Transition(
        observation=jnp.asarray(rng.normal(size=(n, OBS)), jnp.float32),
        action=jnp.asarray(rng.uniform(-1, 1, size=(n, ACT)), jnp.float32),
        reward=jnp.asarray(rng.normal(size=n), jnp.float32),
        next_observation=jnp.asarray(rng.normal(size=(n, OBS)), jnp.float32),
        mask=jnp.ones((n,), jnp.float32),
    )
    key = jax.random.key(7)
    fused, metrics = jax.jit(lambda s, b, k: sac.update(s, b, k, cfg))(state, batch, key)

    # Reference: the same steps called one by one from Python.
    critic_key, actor_key = jax.random.split(key)
    reference = state
    for i, step_key in enumerate(jax.random.split(critic_key, cfg.critic_steps)):
        minibatch = jax.tree.map(lambda x: x[i * cfg.batch_size:(i + 1) * cfg.batch_size], batch)
        previous_target = reference.target_critic
        reference, _ = sac.critic_step(reference, minibatch, step_key, cfg)
        expected_target = jax.tree.map(lambda t, o: 0.995 * t + 0.005 * o, previous_target, reference.critic)
        chex.assert_trees_all_close(reference.target_critic, expected_target, rtol=1e-6, atol=1e-7)
    reference, _ = sac.actor_temperature_step(reference, batch, actor_key, cfg)
    chex.assert_trees_all_close(fused, reference, rtol=1e-4, atol=1e-5)
    assert not np.allclose(fused.critic[0]['kernel'], state.critic[0]['kernel'])
    assert set(metrics) >= {'critic_loss', 'actor_loss', 'alpha', 'entropy', 'q_mean', 'temperature_loss'}


def test_adam_equals_optax_adam_with_the_same_state():
    # wsrl_mjx.optim.adam takes the bias corrections' reciprocals itself (so that XLA rounds it the same
    # on every device layout); it must otherwise be optax.adam: same updates to float rounding, same state
    # tree (checkpoints of either restore into the other).
    import optax

    from wsrl_mjx import optim

    rng = np.random.default_rng(0)
    params = {'w': jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), 'b': jnp.zeros((4,), jnp.float32)}
    ours, theirs = optim.adam(3e-4), optax.adam(3e-4)
    ours_state, theirs_state = ours.init(params), theirs.init(params)
    assert jax.tree.structure(ours_state) == jax.tree.structure(theirs_state)
    for step in range(5):
        grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape) * 10.0**(step - 2), jnp.float32), params)
        ours_update, ours_state = ours.update(grads, ours_state)
        theirs_update, theirs_state = theirs.update(grads, theirs_state)
        chex.assert_trees_all_close(ours_update, theirs_update, rtol=1e-6, atol=0)
        chex.assert_trees_all_close(ours_state, theirs_state, rtol=1e-6, atol=0)
    assert int(ours_state[0].count) == 5


def test_max_target_backup_online_takes_the_best_of_the_sampled_next_actions():
    # The reference's antmaze WSRL runs SAC with max_target_backup: y = r + discount * mask *
    # max_k min_{j in J} Q'_j(s', a'_k) over max_target_actions samples; with one sample it is SAC's target.
    import dataclasses

    cfg = config(num_critics=3, num_min_critics=2, max_target_backup=True, max_target_actions=5)
    target = init_ensemble_mlp(jax.random.key(0), 3, (OBS + ACT, 4, 4, 1), layer_norm=False)
    actor = networks.init_actor(jax.random.key(1), OBS, ACT, (4, 4), True, 1e-2)
    batch, key = tiny_batch(), jax.random.key(3)
    y = sac.max_backup_target(target, actor, 1.0, batch, key, cfg, 5)
    action_key, subset_key = jax.random.split(key)
    members = np.asarray(sac.draw_members(subset_key, cfg))
    next_obs = np.repeat(np.asarray(batch.next_observation), 5, axis=0)
    actions, _ = sac.sample_action(actor, jnp.asarray(next_obs), action_key, cfg)
    q = np.stack([np.asarray(networks.critic_apply(jax.tree.map(lambda x: x[m:m + 1], target), jnp.asarray(next_obs),
                                                   actions))[0] for m in members]).min(axis=0).reshape(4, 5)
    expected = np.asarray(batch.reward) + 0.99 * np.asarray(batch.mask) * q.max(axis=1)
    np.testing.assert_allclose(np.asarray(y), expected, rtol=1e-5, atol=1e-5)
    critic = init_ensemble_mlp(jax.random.key(2), 3, (OBS + ACT, 4, 4, 1), layer_norm=False)
    _, metrics = sac.critic_loss(critic, target, actor, 1.0, batch, key, cfg)
    np.testing.assert_allclose(float(metrics['target_q_mean']), expected.mean(), rtol=1e-5)
    one = dataclasses.replace(cfg, max_target_actions=1)
    plain = dataclasses.replace(cfg, max_target_backup=False)
    for a, b in zip(sac.critic_loss(critic, target, actor, 1.0, batch, key, one)[1].values(),
                    sac.critic_loss(critic, target, actor, 1.0, batch, key, plain)[1].values()):
        np.testing.assert_allclose(float(a), float(b), rtol=1e-6)
