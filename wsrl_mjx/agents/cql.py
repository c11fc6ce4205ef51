"""CQL and Cal-QL pretraining on the ensemble SAC state (the WSRL paper and reference).

The state is sac.SACState: the same actor, 10-member critic, target, temperature and optimizer states
that the online phase continues from, so nothing is converted between the phases.

Critic loss per batch (B transitions, M members, n = n_actions sampled actions per state), as the
reference computes it (zhouzypaul/wsrl, wsrl/agents/cql.py):
  TD:  mean_{i<M,b} (Q_i(s, a) - y)^2 with the max-target backup
       y = r + discount * mask * max_{k<n} min_{j in J} Q'_j(s', a'_k),  a'_k ~ pi(.|s')
  CQL: alpha * mean_{i in I,b} [ T * logsumexp_k(C_ik / T) - Q_i(s, a) ] over the 3n candidate values
       C = Q(s, a_unif) - log(0.5^|A|),  Q(s, a~_k) - log pi(a~_k|s),  Q(s, a'_k) - log pi(a'_k|s')
       (importance sampling; without it, C = [Q(s, a_unif), Q(s, a~_k), Q(s, a'_k), Q(s, a)] - T log(3n+1)).
  Cal-QL: the policy-action values Q(s, a~_k) and Q(s, a'_k) are first raised to at least the
       Monte-Carlo return-to-go of the dataset trajectory at s (never the uniform-action values).
The weight alpha is fixed (locomotion: 5) or, with autotune_alpha (antmaze), a Lagrange multiplier
softplus(p) kept in the state: the critic minimises TD + alpha * (gap - target_action_gap) and p takes
an Adam step on -alpha * (gap - target_action_gap) at the gap of the critic before its step.
J and I: num_min_critics members each, drawn with replacement once per batch (sac.draw_members). The
penalty covers the members in I only, so only they are evaluated on the 3n sampled actions (a tenth
of the work of evaluating all ten, with the same gradients as the reference's evaluate-then-index).
Actor and temperature: SAC's losses (sac.py) on the same batch. All three gradients are taken from the
parameters before the update, as the reference's `agent.update` takes them in one `apply_loss_fns`;
then the target is Polyak-averaged (WSRL's pretraining runs 1 update per batch of 256).
"""
from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp

from kernels.distributions import tanh_normal_log_prob
from kernels.ensemble import select_members
from wsrl_mjx import networks, optim
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
    # Pretraining updates whose actor step clones the data's actions (`actor_loss` with w = 1) before the
    # SAC actor loss takes over: the original CQL code's policy_eval_start. 0: none, as in the WSRL
    # reference's locomotion configs.
    bc_steps: int = 0
    # The weight as a Lagrange multiplier (the reference's cql_autotune_alpha): critic loss
    # TD + w * (gap - target_action_gap), w = softplus(p) from the state; p takes an Adam step on
    # -w * (gap - target_action_gap), so w grows while the gap is above the target and shrinks below it.
    autotune_alpha: bool = False
    target_action_gap: float = 1.0
    alpha_lagrange_init: float = 1.0
    alpha_lagrange_lr: float = 3e-4


BC_ACTION_CLIP = 0.99  # data actions are clipped to this before atanh, as in the reference's actor_nll


def init(key: jax.Array, cfg: CQLConfig) -> sac.SACState:
    state = sac.init(key, cfg.sac)
    if not cfg.autotune_alpha:
        return state
    param = networks.init_temperature(cfg.alpha_lagrange_init)  # softplus(param) = the initial weight
    return state.replace(cql_alpha=param, cql_alpha_opt=optim.adam(cfg.alpha_lagrange_lr).init(param))


def to_sac(state: sac.SACState, sac_cfg: sac.SACConfig) -> sac.SACState:
    """The hand-over to online SAC: everything but the conservative weight, which SAC has no use for."""
    del sac_cfg
    return state.replace(cql_alpha=None, cql_alpha_opt=None)


def _repeat(x: jax.Array, n: int) -> jax.Array:
    """[B, ...] -> [B * n, ...], each row n times in a row."""
    return jnp.repeat(x, n, axis=0)


def td_target(target_params, actor_params, alpha, batch, key, cfg: CQLConfig) -> jax.Array:
    """[B] y = r + discount * mask * (max over n sampled a' of) min over the drawn target members Q'(s', a')."""
    n = cfg.n_actions if cfg.max_target_backup else 1
    return sac.max_backup_target(target_params, actor_params, alpha, batch, key, cfg.sac, n)


def conservative_values(members_params, actor_params, batch, q_data, mc_return, key, cfg: CQLConfig):
    """The candidates C [k, B, 3n] (importance sampling; [k, B, 3n + 1] without) of the logsumexp.

    members_params: the k drawn members of the critic; q_data [k, B]: their Q(s, a) on the data.
    """
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
    # One pass of the drawn members over [uniform | policy | next-policy] actions, all at s.
    q_sampled = networks.critic_apply(members_params, jnp.concatenate([obs, obs, obs]),
                                      jnp.concatenate([uniform, current, following]), s.dtype)
    q_uniform, q_current, q_following = (q_sampled[:, i * batch_size * n:(i + 1) * batch_size * n]
                                         .reshape(-1, batch_size, n) for i in range(3))
    if cfg.calql:
        bound = mc_return[None, :, None]
        q_current, q_following = jnp.maximum(q_current, bound), jnp.maximum(q_following, bound)
    if cfg.importance_sample:
        uniform_log_density = s.act_dim * math.log(0.5)
        return jnp.concatenate([
            q_uniform - uniform_log_density,
            q_current - current_log_prob.reshape(1, batch_size, n),
            q_following - following_log_prob.reshape(1, batch_size, n)], axis=-1)
    candidates = jnp.concatenate([q_uniform, q_current, q_following, q_data[..., None]], axis=-1)
    # The reference's normalisation: a constant shift of the logsumexp, so the gap of a critic that is
    # flat in the action is 0.
    return candidates - cfg.temperature * math.log(3 * n + 1)


def penalty(critic_params, actor_params, batch, q_data, members, mc_return, key, cfg: CQLConfig) -> jax.Array:
    """The conservative gap mean_{i in members, b} [T * logsumexp_k(C_ik / T) - Q_i(s, a)], a scalar.

    q_data [M, B]: every member's Q(s, a); members [k] int32, repeats allowed (a member drawn twice
    counts twice, as in the reference's `cql_q_samples[subsample_idcs]`).
    """
    candidates = conservative_values(select_members(critic_params, members), actor_params, batch, q_data[members],
                                     mc_return, key, cfg)
    ood = cfg.temperature * jax.scipy.special.logsumexp(candidates / cfg.temperature, axis=-1)  # [k, B]
    return jnp.mean(ood - q_data[members])


def critic_loss(critic_params, target_params, actor_params, alpha, batch, mc_return, key, cfg: CQLConfig,
                weight=None):
    """TD + weight * gap; weight: the auto-tuned multiplier's value (then TD + weight * (gap - target)),
    cfg.alpha when None."""
    target_key, member_key, conservative_key = jax.random.split(key, 3)
    y = td_target(target_params, actor_params, alpha, batch, target_key, cfg)
    q = networks.critic_apply(critic_params, batch.observation, batch.action, cfg.sac.dtype)  # [M, B]
    td_loss = jnp.mean(jnp.square(q - y[None]))
    gap = penalty(critic_params, actor_params, batch, q, sac.draw_members(member_key, cfg.sac), mc_return,
                  conservative_key, cfg)
    if weight is None:
        loss = td_loss + cfg.alpha * gap
    else:
        loss = td_loss + jax.lax.stop_gradient(weight) * (gap - cfg.target_action_gap)
    return loss, {'critic_loss': loss, 'td_loss': td_loss, 'cql_gap': gap, 'q_mean': q.mean(),
                  'target_q_mean': y.mean()}


def alpha_lagrange_loss(param, gap, cfg: CQLConfig):
    """-softplus(param) * (gap - target): the multiplier's loss, for a gap held fixed."""
    weight = networks.temperature_value(param)
    return -weight * (gap - cfg.target_action_gap), {'cql_alpha': weight}


def actor_loss(actor_params, critic_params, alpha, batch, key, cfg: sac.SACConfig, bc_weight):
    """mean(alpha * log pi(a~|s) - [w * log pi(a|s) + (1 - w) * min_i Q_i(s, a~)]), a~ ~ pi(.|s), a the
    data's action: SAC's actor loss for w = 0; for w = 1 the original CQL code's behaviour-cloning
    warm start (policy_eval_start), which keeps the entropy term so the temperature stays calibrated."""
    action, log_prob = sac.sample_action(actor_params, batch.observation, key, cfg)
    q = networks.critic_apply(critic_params, batch.observation, action, cfg.dtype).min(axis=0)
    mean, log_std = sac.actor_apply(actor_params, batch.observation, cfg)
    data_log_prob = tanh_normal_log_prob(mean, log_std, jnp.clip(batch.action, -BC_ACTION_CLIP, BC_ACTION_CLIP))
    loss = jnp.mean(alpha * log_prob - bc_weight * data_log_prob - (1.0 - bc_weight) * q)
    return loss, {'actor_loss': loss, 'entropy': -log_prob.mean(), 'bc_log_prob': data_log_prob.mean()}


def update(state: sac.SACState, batch, mc_return, key, cfg: CQLConfig, updates=None):
    """One CQL (Cal-QL) update: critic, actor and temperature steps, each from the parameters before the
    update (the actor's loss sees the critic before its step), then Polyak averaging of the target.
    updates: int32 [] pretraining updates done before this one (for bc_steps); None online."""
    s = cfg.sac
    critic_key, actor_key = jax.random.split(key)
    _, critic_tx, _ = sac.optimizers(s)
    weight = networks.temperature_value(state.cql_alpha) if cfg.autotune_alpha else None
    critic, critic_opt, critic_metrics = sac.gradient_step(
        critic_loss, critic_tx, state.critic, state.critic_opt, state.target_critic, state.actor,
        networks.temperature_value(state.temperature), batch, mc_return, critic_key, cfg, weight)
    if cfg.bc_steps and updates is not None:
        loss = functools.partial(actor_loss, bc_weight=(updates < cfg.bc_steps).astype(jnp.float32))
        updated, actor_metrics = sac.actor_temperature_step(state, batch, actor_key, s, loss)
    else:
        updated, actor_metrics = sac.actor_temperature_step(state, batch, actor_key, s)
    updated = updated.replace(critic=critic, critic_opt=critic_opt,
                              target_critic=sac.polyak(state.target_critic, critic, s.tau))
    if cfg.autotune_alpha:  # the gap of the critic before its step, as the reference's alpha loss sees it
        param, param_opt, alpha_metrics = sac.gradient_step(
            alpha_lagrange_loss, optim.adam(cfg.alpha_lagrange_lr), state.cql_alpha, state.cql_alpha_opt,
            jax.lax.stop_gradient(critic_metrics['cql_gap']), cfg)
        updated = updated.replace(cql_alpha=param, cql_alpha_opt=param_opt)
        actor_metrics = {**actor_metrics, **alpha_metrics}
    return updated, {**critic_metrics, **actor_metrics}
