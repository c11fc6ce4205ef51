"""CQL and Cal-QL pretraining on the ensemble SAC state (WSRL.md, "Offline pretraining").

The state is sac.SACState: the same actor, 10-member critic, target, temperature and optimizer states
that the online phase continues from, so nothing is converted between the phases.

Critic loss per batch (B transitions, M members, n = n_actions sampled actions per state):
  TD:  mean_{i,b} (Q_i(s, a) - y)^2 with the max-target backup
       y = r + discount * mask * max_{k<n} min_{j in J} Q'_j(s', a'_k),  a'_k ~ pi(.|s')
  CQL: alpha * mean_{i,b} [ T * logsumexp_k(C_ik / T) - Q_i(s, a) ] over the 3n candidate values
       C = Q(s, a_unif) - log(0.5^|A|),  Q(s, a'_k) - log pi(a'_k|s'),  Q(s, a~_k) - log pi(a~_k|s)
       (importance sampling; without it, C = Q(s, a_unif), Q(s, a), Q(s, a'_k), Q(s, a~_k)).
  Cal-QL: the policy-action values Q(s, a'_k) and Q(s, a~_k) are first raised to at least the
       Monte-Carlo return-to-go of the dataset trajectory at s (never the uniform-action values).
Actor and temperature: the SAC steps of sac.py on the same batch. One critic step, then one actor and
temperature step, per update (WSRL's pretraining runs 1 update per batch of 256).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from kernels.ensemble import select_members
from wsrl_mjx import networks
from wsrl_mjx.agents import sac


@dataclasses.dataclass(frozen=True)
class CQLConfig:
    sac: sac.SACConfig
    alpha: float = 5.0  # weight of the conservative term (locomotion: fixed 5)
    n_actions: int = 10
    temperature: float = 1.0  # of the logsumexp
    importance_sample: bool = True
    max_target_backup: bool = True
    calql: bool = False  # lower-bound the policy-action values by the MC return


def _repeat(x: jax.Array, n: int) -> jax.Array:
    """[B, ...] -> [B * n, ...], each row n times in a row."""
    return jnp.repeat(x, n, axis=0)


def td_target(target_params, actor_params, alpha, batch, key, cfg: CQLConfig) -> jax.Array:
    """[B] y = r + discount * mask * (max over n sampled a' of) min over 2 drawn target members Q'(s', a')."""
    s = cfg.sac
    action_key, subset_key = jax.random.split(key)
    subset = jax.random.choice(subset_key, s.num_critics, (s.num_min_critics,), replace=False)
    n = cfg.n_actions if cfg.max_target_backup else 1
    next_obs = _repeat(batch.next_observation, n)
    next_action, next_log_prob = sac.sample_action(actor_params, next_obs, action_key, s)
    q = networks.critic_apply(select_members(target_params, subset), next_obs, next_action, s.dtype).min(axis=0)
    q, next_log_prob = q.reshape(-1, n), next_log_prob.reshape(-1, n)
    best = jnp.argmax(q, axis=1)
    next_q = jnp.take_along_axis(q, best[:, None], axis=1)[:, 0]
    if s.backup_entropy:
        next_q = next_q - alpha * jnp.take_along_axis(next_log_prob, best[:, None], axis=1)[:, 0]
    return jax.lax.stop_gradient(batch.reward + s.discount * batch.mask * next_q)


def conservative_values(critic_params, actor_params, batch, mc_return, key, cfg: CQLConfig):
    """The candidates C [M, B, 3n] of the logsumexp and Q(s, a) [M, B] (see the module docstring)."""
    s = cfg.sac
    n = cfg.n_actions
    batch_size = batch.reward.shape[0]
    uniform_key, current_key, next_key = jax.random.split(key, 3)
    obs = _repeat(batch.observation, n)
    uniform = jax.random.uniform(uniform_key, (batch_size * n, s.act_dim), minval=-1.0, maxval=1.0)
    current, current_log_prob = sac.sample_action(actor_params, obs, current_key, s)
    following, following_log_prob = sac.sample_action(actor_params, _repeat(batch.next_observation, n), next_key, s)
    current, following = jax.lax.stop_gradient((current, following))
    current_log_prob, following_log_prob = jax.lax.stop_gradient((current_log_prob, following_log_prob))
    # One critic pass over [Q(s,a) | uniform | next-policy | policy] actions.
    all_obs = jnp.concatenate([batch.observation, obs, obs, obs])
    all_actions = jnp.concatenate([batch.action, uniform, following, current])
    q_all = networks.critic_apply(critic_params, all_obs, all_actions, s.dtype)
    q_data = q_all[:, :batch_size]
    q_uniform, q_following, q_current = (
        q_all[:, batch_size + i * batch_size * n: batch_size + (i + 1) * batch_size * n].reshape(-1, batch_size, n)
        for i in range(3))
    if cfg.calql:
        bound = mc_return[None, :, None]
        q_following, q_current = jnp.maximum(q_following, bound), jnp.maximum(q_current, bound)
    if cfg.importance_sample:
        uniform_log_density = s.act_dim * math.log(0.5)
        candidates = jnp.concatenate([
            q_uniform - uniform_log_density,
            q_following - following_log_prob.reshape(1, batch_size, n),
            q_current - current_log_prob.reshape(1, batch_size, n)], axis=-1)
    else:
        candidates = jnp.concatenate([q_uniform, q_data[..., None], q_following, q_current], axis=-1)
    return candidates, q_data


def critic_loss(critic_params, target_params, actor_params, alpha, batch, mc_return, key, cfg: CQLConfig):
    target_key, conservative_key = jax.random.split(key)
    y = td_target(target_params, actor_params, alpha, batch, target_key, cfg)
    candidates, q = conservative_values(critic_params, actor_params, batch, mc_return, conservative_key, cfg)
    td_loss = jnp.mean(jnp.square(q - y[None]))
    ood = cfg.temperature * jax.scipy.special.logsumexp(candidates / cfg.temperature, axis=-1)
    gap = jnp.mean(ood - q)
    loss = td_loss + cfg.alpha * gap
    return loss, {'critic_loss': loss, 'td_loss': td_loss, 'cql_gap': gap, 'q_mean': q.mean(),
                  'target_q_mean': y.mean()}


def update(state: sac.SACState, batch, mc_return, key, cfg: CQLConfig):
    """One CQL (Cal-QL) critic step with Polyak averaging, then SAC's actor and temperature step."""
    s = cfg.sac
    critic_key, actor_key = jax.random.split(key)
    _, critic_tx, _ = sac.optimizers(s)
    critic, critic_opt, critic_metrics = sac.gradient_step(
        critic_loss, critic_tx, state.critic, state.critic_opt, state.target_critic, state.actor,
        networks.temperature_value(state.temperature), batch, mc_return, critic_key, cfg)
    state = state.replace(critic=critic, critic_opt=critic_opt,
                          target_critic=sac.polyak(state.target_critic, critic, s.tau))
    state, actor_metrics = sac.actor_temperature_step(state, batch, actor_key, s)
    return state, {**critic_metrics, **actor_metrics}
