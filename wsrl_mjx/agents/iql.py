"""IQL pretraining (WSRL's constants: expectile 0.7, temperature 3, lr 3e-4 for locomotion).

Same actor and 10-member critic as the online phase, plus a state-value network V:
  value:  mean_b L_tau(min_{j in J} Q'_j(s, a) - V(s)),  L_tau(u) = |tau - 1(u < 0)| * u^2
  critic: mean_{i,b} (Q_i(s, a) - (r + discount * mask * V(s')))^2, target Polyak-averaged
  actor:  -mean_b min(exp(beta * (min_{j in J} Q'_j(s, a) - V(s))), 100) * log pi(a|s)   (AWR)
J: num_min_critics target members drawn at random per batch (without replacement).

The policy is IQL's: a Gaussian that is not tanh-squashed, pi(a|s) = N(a; tanh(h(s)), exp(2 sigma)),
with a state-independent log-std sigma (the reference's std_parameterization="uniform"; the mean is
tanh'd as in the original IQL code, where the reference leaves it unbounded). It is stored in the SAC
actor's layout: h is the mean half of the MLP's output, and sigma is the bias of the log-std half,
whose kernel columns are held at zero. The hand-over (`to_sac`) is therefore the identity on the
actor: SAC's tanh-Gaussian tanh(N(h(s), exp(2 sigma))) keeps IQL's greedy action tanh(h(s)) exactly
and its std per pre-tanh dimension; only the shape of the noise changes (squashed, not clipped).
`to_sac` hands actor, critic, target and their optimizer states to the online phase; the temperature
starts fresh there (IQL has none).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from kernels.ensemble import ensemble_mlp, init_ensemble_mlp, select_members
from wsrl_mjx import networks, optim
from wsrl_mjx.agents import sac

MAX_WEIGHT = 100.0


@dataclasses.dataclass(frozen=True)
class IQLConfig:
    sac: sac.SACConfig  # networks, discount, tau, learning rates of actor and critic
    expectile: float = 0.7
    beta: float = 3.0  # inverse temperature of the advantage weights
    value_lr: float = 3e-4


@flax.struct.dataclass
class IQLState:
    actor: Any
    critic: Any
    target_critic: Any
    value: Any  # 1-member ensemble MLP obs -> 1
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    value_opt: optax.OptState


def init(key: jax.Array, cfg: IQLConfig) -> IQLState:
    sac_key, value_key = jax.random.split(key)
    base = sac.init(sac_key, cfg.sac)
    s = cfg.sac
    base = base.replace(actor=networks.state_independent_std(base.actor, s.act_dim))
    value = init_ensemble_mlp(value_key, 1, (s.obs_dim, *s.critic_hidden, 1), s.critic_layer_norm,
                              kernel_scale_final=s.kernel_scale_final)
    return IQLState(actor=base.actor, critic=base.critic, target_critic=base.target_critic, value=value,
                    actor_opt=base.actor_opt, critic_opt=base.critic_opt,
                    value_opt=optim.adam(cfg.value_lr).init(value))


def value_apply(params, observation, dtype=jnp.float32) -> jax.Array:
    return ensemble_mlp(params, observation, dtype)[0, :, 0]


def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
    weight = jnp.where(diff > 0, expectile, 1.0 - expectile)
    return weight * jnp.square(diff)


def _target_q(state: IQLState, batch, subset, cfg: IQLConfig) -> jax.Array:
    q = networks.critic_apply(select_members(state.target_critic, subset), batch.observation, batch.action,
                              cfg.sac.dtype)
    return jax.lax.stop_gradient(q.min(axis=0))


def value_loss(value_params, target_q, batch, cfg: IQLConfig):
    v = value_apply(value_params, batch.observation, cfg.sac.dtype)
    loss = jnp.mean(expectile_loss(target_q - v, cfg.expectile))
    return loss, {'value_loss': loss, 'v_mean': v.mean()}


def critic_loss(critic_params, value_params, batch, cfg: IQLConfig):
    next_v = value_apply(value_params, batch.next_observation, cfg.sac.dtype)
    y = jax.lax.stop_gradient(batch.reward + cfg.sac.discount * batch.mask * next_v)
    q = networks.critic_apply(critic_params, batch.observation, batch.action, cfg.sac.dtype)
    loss = jnp.mean(jnp.square(q - y[None]))
    return loss, {'critic_loss': loss, 'q_mean': q.mean()}


def gaussian_log_prob(actor_params, observation, action, cfg: sac.SACConfig) -> jax.Array:
    """log N(action; tanh(h(s)), exp(2 sigma)) [B], summed over the action's dimensions."""
    h, log_std = networks.actor_apply(networks.state_independent_std(actor_params, cfg.act_dim), observation,
                                      cfg.log_std_min, cfg.log_std_max, cfg.dtype)
    z = (action - jnp.tanh(h)) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * jnp.square(z) - log_std - 0.5 * math.log(2.0 * math.pi), axis=-1)


def actor_loss(actor_params, advantage, batch, cfg: IQLConfig):
    log_prob = gaussian_log_prob(actor_params, batch.observation, batch.action, cfg.sac)
    weight = jnp.minimum(jnp.exp(cfg.beta * advantage), MAX_WEIGHT)
    loss = -jnp.mean(jax.lax.stop_gradient(weight) * log_prob)
    return loss, {'actor_loss': loss, 'adv_mean': advantage.mean(), 'log_prob': log_prob.mean()}


def update(state: IQLState, batch, mc_return, key, cfg: IQLConfig, updates=None):
    """Value, actor (AWR, with the pre-update value) and critic steps on one batch; Polyak the target."""
    del mc_return, updates  # IQL uses neither; the signature matches cql.update
    s = cfg.sac
    actor_tx, critic_tx, _ = sac.optimizers(s)
    subset = jax.random.choice(key, s.num_critics, (s.num_min_critics,), replace=False)
    target_q = _target_q(state, batch, subset, cfg)
    advantage = target_q - value_apply(state.value, batch.observation, s.dtype)
    value, value_opt, value_metrics = sac.gradient_step(value_loss, optim.adam(cfg.value_lr), state.value,
                                                        state.value_opt, target_q, batch, cfg)
    actor, actor_opt, actor_metrics = sac.gradient_step(actor_loss, actor_tx, state.actor, state.actor_opt,
                                                        jax.lax.stop_gradient(advantage), batch, cfg)
    critic, critic_opt, critic_metrics = sac.gradient_step(critic_loss, critic_tx, state.critic,
                                                           state.critic_opt, value, batch, cfg)
    state = state.replace(value=value, value_opt=value_opt, actor=actor, actor_opt=actor_opt, critic=critic,
                          critic_opt=critic_opt, target_critic=sac.polyak(state.target_critic, critic, s.tau))
    return state, {**value_metrics, **actor_metrics, **critic_metrics}


def to_sac(state: IQLState, cfg: sac.SACConfig) -> sac.SACState:
    """The online phase's state: IQL's networks and optimizer states; a fresh temperature."""
    return sac.SACState(actor=state.actor, critic=state.critic, target_critic=state.target_critic,
                        actor_opt=state.actor_opt, critic_opt=state.critic_opt,
                        **sac.fresh_temperature(cfg.init_temperature, cfg))
