"""Config schema, validation and derived values.

The config is an ml_collections ConfigDict (the interface of the reference WSRL code); presets live in
configs/*.py and override `base_config()`. Derived values (the static agent config, the schedule of
programs) are computed here and never written back into the config.
"""
from __future__ import annotations

import dataclasses

import ml_collections

from wsrl_mjx.agents.sac import SACConfig
from wsrl_mjx.envs.registry import ENV_SPECS
from wsrl_mjx.pipeline.online import WARMUP_POLICIES

MATMUL_DTYPES = ('float32', 'bfloat16')


class ConfigError(ValueError):
    """Bad user input; the message is one line naming the key and what is allowed."""


def base_config() -> ml_collections.ConfigDict:
    """Every key, with WSRL's online constants for locomotion (WSRL.md)."""
    c = ml_collections.ConfigDict()
    c.name = 'wsrl'
    c.env = 'halfcheetah'
    c.episode_length = 1000
    c.seed = 0  # seeds used: seed, seed + 1, ..., seed + --seeds - 1
    c.num_envs = 1  # parallel envs per seed; each env step of all of them is one update
    c.online_steps = 300_000  # env transitions per seed, warmup included
    c.warmup_steps = 5_000  # transitions collected before the first update
    c.warmup_policy = 'uniform'  # 'policy' (WSRL, after pretraining) or 'uniform' (from scratch)
    c.buffer_capacity = 2_000_000
    c.log_interval = 1_000  # transitions per compiled chunk: one host round trip each
    c.eval_interval = 20_000
    c.eval_episodes = 20

    a = ml_collections.ConfigDict()
    a.num_critics = 10
    a.num_min_critics = 2
    a.critic_hidden = (256, 256)
    a.actor_hidden = (256, 256)
    a.critic_layer_norm = True
    a.actor_layer_norm = True
    a.kernel_scale_final = 1e-2
    a.discount = 0.99
    a.tau = 0.005
    a.backup_entropy = False
    a.critic_steps = 4
    a.batch_size = 256
    a.actor_lr = 1e-4
    a.critic_lr = 3e-4
    a.temperature_lr = 1e-4
    a.init_temperature = 1.0
    a.target_entropy = ml_collections.config_dict.placeholder(float)  # None: -|A|
    a.matmul_dtype = 'float32'
    c.agent = a
    return c


def _require(ok: bool, key: str, value, allowed: str):
    if not ok:
        raise ConfigError(f'config.{key}={value!r} is not allowed: {allowed}')


def validate(cfg: ml_collections.ConfigDict) -> None:
    """Raises ConfigError on the first bad value."""
    _require(cfg.env in ENV_SPECS, 'env', cfg.env, f'one of {", ".join(ENV_SPECS)}')
    _require(cfg.warmup_policy in WARMUP_POLICIES, 'warmup_policy', cfg.warmup_policy,
             f'one of {", ".join(WARMUP_POLICIES)}')
    _require(cfg.agent.matmul_dtype in MATMUL_DTYPES, 'agent.matmul_dtype', cfg.agent.matmul_dtype,
             f'one of {", ".join(MATMUL_DTYPES)}')
    for key in ('episode_length', 'num_envs', 'online_steps', 'buffer_capacity', 'log_interval',
                'eval_interval', 'eval_episodes', 'agent.num_critics', 'agent.num_min_critics',
                'agent.critic_steps', 'agent.batch_size'):
        value = cfg
        for part in key.split('.'):
            value = value[part]
        _require(isinstance(value, int) and value > 0, key, value, 'a positive integer')
    _require(isinstance(cfg.warmup_steps, int) and cfg.warmup_steps >= 0, 'warmup_steps', cfg.warmup_steps,
             'a non-negative integer')
    for key in ('critic_hidden', 'actor_hidden'):
        sizes = tuple(cfg.agent[key])
        _require(len(sizes) > 0 and all(isinstance(s, int) and s > 0 for s in sizes), f'agent.{key}', sizes,
                 'a non-empty tuple of positive integers')
    for key in ('actor_lr', 'critic_lr', 'temperature_lr', 'init_temperature'):
        _require(cfg.agent[key] > 0, f'agent.{key}', cfg.agent[key], 'a positive number')
    _require(0 < cfg.agent.discount <= 1, 'agent.discount', cfg.agent.discount, 'a number in (0, 1]')
    _require(0 < cfg.agent.tau <= 1, 'agent.tau', cfg.agent.tau, 'a number in (0, 1]')
    _require(cfg.agent.num_min_critics <= cfg.agent.num_critics, 'agent.num_min_critics',
             cfg.agent.num_min_critics, f'at most agent.num_critics={cfg.agent.num_critics}')
    n = cfg.num_envs
    for key in ('online_steps', 'warmup_steps', 'log_interval'):
        _require(cfg[key] % n == 0, key, cfg[key], f'a multiple of num_envs={n}')
    _require(cfg.buffer_capacity >= n, 'buffer_capacity', cfg.buffer_capacity, f'at least num_envs={n}')
    batch = cfg.agent.critic_steps * cfg.agent.batch_size
    _require(batch <= cfg.buffer_capacity, 'agent.batch_size', cfg.agent.batch_size,
             f'agent.critic_steps * agent.batch_size = {batch} must fit the buffer '
             f'(buffer_capacity={cfg.buffer_capacity})')
    _require(cfg.online_steps > cfg.warmup_steps, 'online_steps', cfg.online_steps,
             f'more than warmup_steps={cfg.warmup_steps}')
    _require((cfg.online_steps - cfg.warmup_steps) % cfg.log_interval == 0, 'online_steps', cfg.online_steps,
             f'warmup_steps + a multiple of log_interval={cfg.log_interval}')
    _require(cfg.eval_interval % cfg.log_interval == 0, 'eval_interval', cfg.eval_interval,
             f'a multiple of log_interval={cfg.log_interval}')


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How a run's transitions split into compiled programs (all counts per seed)."""
    warmup_iterations: int  # env steps (of all num_envs envs) in the warmup program
    chunk_iterations: int  # env steps per training chunk
    chunks: int
    eval_every_chunks: int


def schedule(cfg) -> Schedule:
    n = cfg.num_envs
    return Schedule(
        warmup_iterations=cfg.warmup_steps // n,
        chunk_iterations=cfg.log_interval // n,
        chunks=(cfg.online_steps - cfg.warmup_steps) // cfg.log_interval,
        eval_every_chunks=cfg.eval_interval // cfg.log_interval,
    )


def sac_config(cfg, obs_dim: int, act_dim: int) -> SACConfig:
    a = cfg.agent
    return SACConfig(
        obs_dim=obs_dim, act_dim=act_dim, num_critics=a.num_critics, num_min_critics=a.num_min_critics,
        critic_hidden=tuple(a.critic_hidden), actor_hidden=tuple(a.actor_hidden),
        critic_layer_norm=a.critic_layer_norm, actor_layer_norm=a.actor_layer_norm,
        kernel_scale_final=a.kernel_scale_final, discount=a.discount, tau=a.tau,
        backup_entropy=a.backup_entropy, critic_steps=a.critic_steps, batch_size=a.batch_size,
        actor_lr=a.actor_lr, critic_lr=a.critic_lr, temperature_lr=a.temperature_lr,
        init_temperature=a.init_temperature, target_entropy=a.target_entropy, matmul_dtype=a.matmul_dtype,
    )
