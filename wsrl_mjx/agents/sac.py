"""Ensemble SAC as WSRL's online phase runs it (the WSRL paper and reference).

One `update` per env step: the sampled batch [critic_steps * batch_size] is split into critic_steps
minibatches for a lax.scan of critic steps (Polyak-averaging the target after each), then one actor and
one temperature step on the whole batch. With num_critics=2, critic_steps=1 and backup_entropy=True
this is standard SAC.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

from kernels.ensemble import select_members
from wsrl_mjx import networks, optim


@dataclasses.dataclass(frozen=True)
class SACConfig:
    obs_dim: int
    act_dim: int
    num_critics: int = 10
    num_min_critics: int = 2  # target = min over this many randomly drawn target members
    critic_hidden: tuple[int, ...] = (256, 256)
    actor_hidden: tuple[int, ...] = (256, 256)
    critic_layer_norm: bool = True
    actor_layer_norm: bool = True
    kernel_scale_final: float = 1e-2
    discount: float = 0.99
    tau: float = 0.005
    backup_entropy: bool = False
    # The target's max over max_target_actions sampled next actions (of the min over the drawn
    # members): the reference's max_target_backup, which its antmaze WSRL config turns on online.
    max_target_backup: bool = False
    max_target_actions: int = 10
    critic_steps: int = 4  # critic updates per env step (UTD)
    batch_size: int = 256  # per critic step; the actor step sees critic_steps * batch_size
    actor_lr: float = 1e-4
    critic_lr: float = 3e-4
    temperature_lr: float = 1e-4
    init_temperature: float = 1.0
    target_entropy: float | None = None  # None: -act_dim
    log_std_min: float = -11.512925  # log(1e-5)
    log_std_max: float = 2.302585  # log(10)
    # 'exp': the log-std is an output of the actor network (locomotion); 'uniform': one learnt log-std
    # per action dimension, the same in every state (the reference's antmaze actor).
    std_parameterization: str = 'exp'
    matmul_dtype: str = 'float32'

    @property
    def entropy_target(self) -> float:
        return -float(self.act_dim) if self.target_entropy is None else float(self.target_entropy)

    @property
    def dtype(self):
        return jnp.dtype(self.matmul_dtype)


@flax.struct.dataclass
class SACState:
    actor: Any  # actor params (tuple of layer dicts, member axis 1)
    critic: Any  # critic params, member axis num_critics
    target_critic: Any  # Polyak average of `critic`
    temperature: jax.Array  # [] float32; alpha = softplus(temperature)
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    temperature_opt: optax.OptState
    # CQL / Cal-QL with an auto-tuned conservative weight (cql.CQLConfig.autotune_alpha): the Lagrange
    # multiplier's parameter (weight = softplus) and its Adam state; None (no leaves) otherwise.
    cql_alpha: jax.Array | None = None
    cql_alpha_opt: optax.OptState | None = None


def optimizers(cfg: SACConfig) -> tuple[optax.GradientTransformation, ...]:
    """Adam with optax defaults and constant learning rates; no weight decay, no clipping (wsrl_mjx.optim:
    optax's Adam computed so that every device layout rounds it alike)."""
    return optim.adam(cfg.actor_lr), optim.adam(cfg.critic_lr), optim.adam(cfg.temperature_lr)


def init(key: jax.Array, cfg: SACConfig) -> SACState:
    actor_key, critic_key = jax.random.split(key)
    actor = applied_actor(networks.init_actor(actor_key, cfg.obs_dim, cfg.act_dim, cfg.actor_hidden,
                                              cfg.actor_layer_norm, cfg.kernel_scale_final), cfg)
    critic = networks.init_critic(critic_key, cfg.obs_dim, cfg.act_dim, cfg.num_critics, cfg.critic_hidden,
                                  cfg.critic_layer_norm, cfg.kernel_scale_final)
    actor_tx, critic_tx, _ = optimizers(cfg)
    return SACState(
        # A copy, not the same arrays: the state is donated into every program, and one buffer donated
        # twice is an error.
        actor=actor, critic=critic, target_critic=jax.tree.map(jnp.copy, critic),
        actor_opt=actor_tx.init(actor), critic_opt=critic_tx.init(critic),
        **fresh_temperature(cfg.init_temperature, cfg),
    )


def fresh_temperature(alpha: float, cfg: SACConfig) -> dict:
    """The temperature fields of a state, {temperature, temperature_opt}: alpha = `alpha` and a fresh Adam
    state (a new agent, IQL's hand-over to SAC, config.handover_temperature)."""
    temperature = networks.init_temperature(alpha)
    return {'temperature': temperature, 'temperature_opt': optimizers(cfg)[2].init(temperature)}


def applied_actor(actor_params, cfg: SACConfig):
    """The actor parameters as every loss and rollout applies them (see std_parameterization)."""
    if cfg.std_parameterization == 'uniform':
        return networks.state_independent_std(actor_params, cfg.act_dim)
    return actor_params


def actor_apply(actor_params, observation, cfg: SACConfig):
    """(mean, log_std), each [B, act_dim], of the tanh-Gaussian policy."""
    return networks.actor_apply(applied_actor(actor_params, cfg), observation, cfg.log_std_min, cfg.log_std_max,
                                cfg.dtype)


def sample_action(actor_params, observation, key, cfg: SACConfig):
    return networks.sample_action(applied_actor(actor_params, cfg), observation, key, cfg.log_std_min,
                                  cfg.log_std_max, cfg.dtype)


def greedy_action(actor_params, observation, cfg: SACConfig):
    return networks.greedy_action(actor_params, observation, cfg.log_std_min, cfg.log_std_max, cfg.dtype)


def draw_members(key: jax.Array, cfg: SACConfig) -> jax.Array:
    """num_min_critics member indices [k] int32, drawn uniformly WITH replacement, as the reference
    draws them (wsrl/agents/sac.py and cql.py: `jax.random.randint(key, (k,), 0, M)`): with k = 2 of
    M = 10 the same member comes twice in 1 batch of 10, and the min is then over one member."""
    return jax.random.randint(key, (cfg.num_min_critics,), 0, cfg.num_critics)


def max_backup_target(target_params, actor_params, alpha, batch, key, cfg: SACConfig, n: int) -> jax.Array:
    """[B] y = r + discount * mask * max_{k<n} (min_{j in J} Q'_j(s', a'_k) [- alpha * log pi(a'_k|s')]
    at the best k), a'_k ~ pi(.|s'); J as in `critic_loss`. CQL's target (with its n_actions) and SAC's
    with max_target_backup."""
    action_key, subset_key = jax.random.split(key)
    subset = draw_members(subset_key, cfg)
    next_obs = jnp.repeat(batch.next_observation, n, axis=0)
    next_action, next_log_prob = sample_action(actor_params, next_obs, action_key, cfg)
    q = networks.critic_apply(select_members(target_params, subset), next_obs, next_action, cfg.dtype).min(axis=0)
    q, next_log_prob = q.reshape(-1, n), next_log_prob.reshape(-1, n)
    best = jnp.argmax(q, axis=1)
    next_q = jnp.take_along_axis(q, best[:, None], axis=1)[:, 0]
    if cfg.backup_entropy:
        next_q = next_q - alpha * jnp.take_along_axis(next_log_prob, best[:, None], axis=1)[:, 0]
    return jax.lax.stop_gradient(batch.reward + cfg.discount * batch.mask * next_q)


def critic_loss(critic_params, target_params, actor_params, alpha, batch, key, cfg: SACConfig):
    """Mean over members and batch of (Q_i(s, a) - y)^2, with
    y = r + discount * mask * (min_{j in J} Q'_j(s', a') [- alpha * log pi(a'|s')]),  a' ~ pi(.|s'),
    J = num_min_critics target members drawn once per batch (`draw_members`); with max_target_backup
    the best of max_target_actions such a' (`max_backup_target`).
    """
    if cfg.max_target_backup:
        target = max_backup_target(target_params, actor_params, alpha, batch, key, cfg, cfg.max_target_actions)
        q = networks.critic_apply(critic_params, batch.observation, batch.action, cfg.dtype)
        loss = jnp.mean(jnp.square(q - target[None]))
        return loss, {'critic_loss': loss, 'q_mean': q.mean(), 'target_q_mean': target.mean()}
    action_key, subset_key = jax.random.split(key)
    next_action, next_log_prob = sample_action(actor_params, batch.next_observation, action_key, cfg)
    subset = draw_members(subset_key, cfg)
    # Only the drawn members are evaluated: the other targets would be computed and thrown away.
    next_q = networks.critic_apply(select_members(target_params, subset), batch.next_observation, next_action,
                                   cfg.dtype).min(axis=0)
    if cfg.backup_entropy:
        next_q = next_q - alpha * next_log_prob
    target = jax.lax.stop_gradient(batch.reward + cfg.discount * batch.mask * next_q)
    q = networks.critic_apply(critic_params, batch.observation, batch.action, cfg.dtype)
    loss = jnp.mean(jnp.square(q - target[None]))
    return loss, {'critic_loss': loss, 'q_mean': q.mean(), 'target_q_mean': target.mean()}


def actor_loss(actor_params, critic_params, alpha, batch, key, cfg: SACConfig):
    """mean(alpha * log pi(a~|s) - min over ALL members Q_i(s, a~)), a~ ~ pi(.|s) reparameterised."""
    action, log_prob = sample_action(actor_params, batch.observation, key, cfg)
    q = networks.critic_apply(critic_params, batch.observation, action, cfg.dtype).min(axis=0)
    loss = jnp.mean(alpha * log_prob - q)
    return loss, {'actor_loss': loss, 'entropy': -log_prob.mean()}


def temperature_loss(temperature, entropy, target_entropy):
    """alpha * (entropy - target_entropy): alpha falls while the policy is more random than the target."""
    alpha = networks.temperature_value(temperature)
    loss = alpha * (entropy - target_entropy)
    return loss, {'temperature_loss': loss, 'alpha': alpha}


def gradient_step(loss_fn: Callable, optimizer: optax.GradientTransformation, params, opt_state, *args):
    """One optimizer step on loss_fn(params, *args) -> (loss, metrics); returns params, opt_state, metrics."""
    grads, metrics = jax.grad(loss_fn, has_aux=True)(params, *args)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, metrics


def polyak(target, online, tau: float):
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


def critic_step(state: SACState, batch, key, cfg: SACConfig):
    _, critic_tx, _ = optimizers(cfg)
    alpha = networks.temperature_value(state.temperature)
    critic, critic_opt, metrics = gradient_step(critic_loss, critic_tx, state.critic, state.critic_opt,
                                                state.target_critic, state.actor, alpha, batch, key, cfg)
    state = state.replace(critic=critic, critic_opt=critic_opt,
                          target_critic=polyak(state.target_critic, critic, cfg.tau))
    return state, metrics


def actor_temperature_step(state: SACState, batch, key, cfg: SACConfig, loss: Callable = actor_loss):
    """One actor step on `loss` (SAC's actor loss unless given: same signature) and one temperature step."""
    actor_tx, _, temperature_tx = optimizers(cfg)
    actor_key, entropy_key = jax.random.split(key)
    alpha = networks.temperature_value(state.temperature)
    actor, actor_opt, actor_metrics = gradient_step(loss, actor_tx, state.actor, state.actor_opt,
                                                    state.critic, alpha, batch, actor_key, cfg)
    # Entropy for the temperature loss: actions sampled at the next observations (as WSRL does).
    _, next_log_prob = sample_action(state.actor, batch.next_observation, entropy_key, cfg)
    entropy = jax.lax.stop_gradient(-next_log_prob.mean())
    temperature, temperature_opt, temperature_metrics = gradient_step(
        temperature_loss, temperature_tx, state.temperature, state.temperature_opt, entropy, cfg.entropy_target)
    state = state.replace(actor=actor, actor_opt=actor_opt, temperature=temperature,
                          temperature_opt=temperature_opt)
    return state, {**actor_metrics, **temperature_metrics}


def update(state: SACState, batch, key, cfg: SACConfig):
    """critic_steps critic steps on consecutive batch_size slices of `batch`, then actor + temperature on
    all of it. batch: Transition with leaves [critic_steps * batch_size, ...]."""
    critic_key, actor_key = jax.random.split(key)
    minibatches = jax.tree.map(lambda x: x.reshape(cfg.critic_steps, cfg.batch_size, *x.shape[1:]), batch)

    def body(carry, inputs):
        minibatch, step_key = inputs
        return critic_step(carry, minibatch, step_key, cfg)

    state, critic_metrics = jax.lax.scan(body, state, (minibatches, jax.random.split(critic_key, cfg.critic_steps)))
    state, actor_metrics = actor_temperature_step(state, batch, actor_key, cfg)
    return state, {**jax.tree.map(jnp.mean, critic_metrics), **actor_metrics}


def update_flops(cfg: SACConfig) -> int:
    """Analytic matmul FLOPs of one `update` (backward counted as 2x forward for weights + inputs)."""
    from kernels.ensemble import mlp_matmul_flops

    critic_sizes = (cfg.obs_dim + cfg.act_dim, *cfg.critic_hidden, 1)
    actor_sizes = (cfg.obs_dim, *cfg.actor_hidden, 2 * cfg.act_dim)
    b, n = cfg.batch_size, cfg.critic_steps * cfg.batch_size
    k = cfg.max_target_actions if cfg.max_target_backup else 1
    per_critic_step = (
        3 * mlp_matmul_flops(critic_sizes, cfg.num_critics, b)  # Q forward + backward
        + mlp_matmul_flops(critic_sizes, cfg.num_min_critics, k * b)  # drawn targets, forward
        + mlp_matmul_flops(actor_sizes, 1, k * b)  # a' ~ pi(s'), forward
    )
    actor_step = (
        3 * mlp_matmul_flops(actor_sizes, 1, n)  # actor forward + backward
        + 2 * mlp_matmul_flops(critic_sizes, cfg.num_critics, n)  # Q forward + backward to the action
        + mlp_matmul_flops(actor_sizes, 1, n)  # entropy estimate at s'
    )
    return cfg.critic_steps * per_critic_step + actor_step
