"""Config schema, validation and derived values.

The config is an ml_collections ConfigDict (the interface of the reference WSRL code); presets live in
configs/*.py and override `base_config()`. Derived values (the static agent config, the schedule of
programs) are computed here and never written back into the config.
"""
from __future__ import annotations

import dataclasses
import json

import ml_collections

from wsrl_mjx.agents.sac import SACConfig
from wsrl_mjx.envs.registry import ENV_SPECS
from wsrl_mjx.pipeline.online import WARMUP_POLICIES
from wsrl_mjx.pipeline.programs import Schedule
from wsrl_mjx.cli import UsageError

MATMUL_DTYPES = ('float32', 'bfloat16')
STD_PARAMETERIZATIONS = ('exp', 'uniform')


class ConfigError(UsageError):
    """Bad user input; the message is one line naming the key and what is allowed."""


def base_config() -> ml_collections.ConfigDict:
    """Every key, with WSRL's online constants for locomotion (the WSRL paper and reference)."""
    c = ml_collections.ConfigDict()
    c.name = 'wsrl'
    c.method = 'wsrl'  # see METHODS
    c.env = 'halfcheetah'
    # '<env>-<level>' (generated with python -m wsrl_mjx.collect on first use and cached, see
    # wsrl_mjx.data.registry) or the path of an HDF5 file (D4RL keys, D4RL or Minari layout).
    c.dataset = 'halfcheetah-medium'
    c.dataset_size = 1_000_000  # transitions of a generated dataset (D4RL's medium has 1M)
    c.episode_length = 1000
    c.seed = 0  # seeds used: seed, seed + 1, ..., seed + --seeds - 1
    c.num_envs = 1  # parallel envs per seed; each env step of all of them is one update
    c.online_steps = 300_000  # env transitions per seed, warmup included
    c.warmup_steps = 5_000  # transitions collected before the first update
    c.warmup_policy = 'auto'  # 'auto': the method's (policy after pretraining, else uniform), 'policy', 'uniform'
    c.buffer_capacity = 2_000_000
    c.log_interval = 1_000  # transitions per compiled chunk: one host round trip each
    c.eval_interval = 20_000
    c.eval_episodes = 20
    c.checkpoint_interval = 20_000  # env steps per seed between checkpoints (also at each phase end); 0: none
    c.checkpoint_keep = 3  # checkpoints kept (the newest)
    # The reward the critic learns from, offline and online: r * reward_scale + reward_bias (the
    # reference's --reward_scale / --reward_bias, applied to the dataset and to the online env alike;
    # WSRL: locomotion 1 / 0, antmaze 10 / -5). Scores and episode returns stay the env's own.
    c.reward_scale = 1.0
    c.reward_bias = 0.0
    # The SAC temperature alpha at the hand-over from pretraining to the online phase. None: the
    # pretrained temperature and its Adam state carry over with everything else (WSRL); a value: both
    # restart there (a diagnostic ablation; the pretraining is unchanged, so --pretrained_from fits).
    c.handover_temperature = ml_collections.config_dict.placeholder(float)

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
    a.max_target_backup = False  # online SAC's target: the best of max_target_actions sampled a' (antmaze)
    a.max_target_actions = 10
    a.critic_steps = 4
    a.batch_size = 256
    a.actor_lr = 1e-4
    a.critic_lr = 3e-4
    a.temperature_lr = 1e-4
    a.init_temperature = 1.0
    a.target_entropy = ml_collections.config_dict.placeholder(float)  # None: -|A|
    a.std_parameterization = 'exp'  # 'exp': log-std from the actor network; 'uniform': one per action dim (antmaze)
    a.matmul_dtype = 'float32'
    c.agent = a

    p = ml_collections.ConfigDict()
    p.algo = 'cql'  # cql, calql or iql; WSRL pretrains locomotion with CQL
    p.steps = 250_000
    p.batch_size = 256
    p.log_interval = 5_000  # updates per compiled chunk
    p.eval_interval = 50_000
    p.cql_alpha = 5.0  # the conservative weight, unless auto-tuned
    # Auto-tuned weight (antmaze): a Lagrange multiplier alpha = softplus(param) >= 0, started at
    # cql_alpha_lagrange_init and stepped by Adam (cql_alpha_lagrange_lr) to hold the gap at
    # cql_target_action_gap (the reference's cql_autotune_alpha; it sets the gap to 0.8 for antmaze).
    p.cql_autotune_alpha = False
    p.cql_target_action_gap = 1.0
    p.cql_alpha_lagrange_init = 1.0
    p.cql_alpha_lagrange_lr = 3e-4
    p.cql_n_actions = 10
    p.cql_temperature = 1.0
    p.cql_importance_sample = True
    p.cql_max_target_backup = True
    p.bc_steps = 0  # CQL/Cal-QL: first updates whose actor step is behaviour cloning (0: none, as WSRL)
    p.actor_lr = ml_collections.config_dict.placeholder(float)  # CQL/Cal-QL actor lr; None: agent.actor_lr
    # The offline algorithm's target Polyak rate (pretraining, and the cql / calql / iql baselines that
    # continue it online, as pretrain.actor_lr); None: agent.tau. WSRL's SAC keeps agent.tau. The
    # critic's Q nears the data's value with a time constant of about 1 / (tau * (1 - discount)) updates.
    p.tau = ml_collections.config_dict.placeholder(float)
    p.iql_expectile = 0.7
    p.iql_beta = 3.0
    p.iql_lr = 3e-4  # IQL's actor, critic and value learning rate
    c.pretrain = p
    return c


@dataclasses.dataclass(frozen=True)
class Method:
    """What a method runs (derived from config.method; never written back into the config)."""
    pretrain: str | None  # offline algorithm, None: no pretraining
    online: str  # update rule online: 'sac' or the offline algorithm continued
    warmup: bool  # collect warmup_steps before the first update
    offline_ratio: float  # share of each online batch drawn from the offline data


_CONFIGURED = 'pretrain.algo'  # the method pretrains with the algorithm config.pretrain.algo names
_METHOD_TABLE = {
    'wsrl': Method(_CONFIGURED, 'sac', True, 0.0),
    'no_warmup': Method(_CONFIGURED, 'sac', False, 0.0),
    'retain': Method(_CONFIGURED, 'sac', True, 0.5),
    'rlpd': Method(None, 'sac', False, 0.5),
    'calql': Method('calql', 'calql', False, 0.5),
    'cql': Method('cql', 'cql', False, 0.5),
    'iql': Method('iql', 'iql', False, 0.5),
    # The offline algorithm continued online without its data (the paper's "no retention" ablation of
    # CQL / Cal-QL / IQL): the same as cql, calql, iql but for the batches, which are all online rows.
    'cql_no_data': Method('cql', 'cql', False, 0.0),
    'calql_no_data': Method('calql', 'calql', False, 0.0),
    'iql_no_data': Method('iql', 'iql', False, 0.0),
    'scratch': Method(None, 'sac', True, 0.0),
}
METHODS = tuple(_METHOD_TABLE)
PRETRAIN_ALGOS = ('cql', 'calql', 'iql')


def json_config(cfg) -> dict:
    """The config as plain JSON values (tuples become lists), for config.json and comparisons."""
    return json.loads(json.dumps(cfg.to_dict(), default=list))


# Keys added after runs were saved, with the value that computes what those runs computed.
_ADDED_KEYS = {
    ('agent', 'std_parameterization'): 'exp',
    ('agent', 'max_target_backup'): False,
    ('agent', 'max_target_actions'): 10,
    ('pretrain', 'cql_autotune_alpha'): False,
    ('pretrain', 'cql_target_action_gap'): 1.0,
    ('pretrain', 'cql_alpha_lagrange_init'): 1.0,
    ('pretrain', 'cql_alpha_lagrange_lr'): 3e-4,
    ('pretrain', 'tau'): None,  # agent.tau, the one rate before 2026-12-07
    (None, 'handover_temperature'): None,  # carried over, the only behaviour before 2026-12-07
}


def upgrade(saved: dict) -> dict:
    """A config saved by an older version (config.json, a checkpoint's host item) in today's layout, so
    that it compares with today's configs: keys added since get the value that reproduces the old run
    (_ADDED_KEYS); before 2026-12-06 the reward scale and bias were pretrain.reward_scale /
    pretrain.reward_bias and applied to the offline data only (every run kept in docs/ has them at
    1 / 0, where the two agree). The argument is left as it was."""
    saved = {k: dict(v) if isinstance(v, dict) else v for k, v in saved.items()}
    pretrain = saved.get('pretrain')
    if isinstance(pretrain, dict):
        for key in ('reward_scale', 'reward_bias'):
            if key in pretrain:
                value = pretrain.pop(key)
                saved.setdefault(key, value)
    for (group, key), value in _ADDED_KEYS.items():
        if group is None:
            saved.setdefault(key, value)
        elif isinstance(saved.get(group), dict):
            saved[group].setdefault(key, value)
    return saved


def method(cfg) -> Method:
    m = _METHOD_TABLE[cfg.method]
    return dataclasses.replace(m, pretrain=cfg.pretrain.algo) if m.pretrain == _CONFIGURED else m


def uses_dataset(cfg) -> bool:
    m = method(cfg)
    return m.pretrain is not None or m.offline_ratio > 0


def learnt_from(cfg) -> str | None:
    """The dataset a run learns from (config.json and summary.json say it): None where the method
    reads none (from scratch), whatever `cfg.dataset` holds."""
    return cfg.dataset if uses_dataset(cfg) else None


def warmup_steps(cfg) -> int:
    return cfg.warmup_steps if method(cfg).warmup else 0


def warmup_policy(cfg) -> str:
    if cfg.warmup_policy != 'auto':
        return cfg.warmup_policy
    return 'policy' if method(cfg).pretrain is not None else 'uniform'


def _require(ok: bool, key: str, value, allowed: str):
    if not ok:
        raise ConfigError(f'config.{key}={value!r} is not allowed: {allowed}')


def validate(cfg: ml_collections.ConfigDict) -> None:
    """Raises ConfigError on the first bad value."""
    _require(cfg.env in ENV_SPECS, 'env', cfg.env, f'one of {", ".join(ENV_SPECS)}')
    _require(cfg.method in METHODS, 'method', cfg.method, f'one of {", ".join(METHODS)}')
    _require(cfg.pretrain.algo in PRETRAIN_ALGOS, 'pretrain.algo', cfg.pretrain.algo,
             f'one of {", ".join(PRETRAIN_ALGOS)}')
    _require(cfg.warmup_policy in ('auto', *WARMUP_POLICIES), 'warmup_policy', cfg.warmup_policy,
             f'one of auto, {", ".join(WARMUP_POLICIES)}')
    _require(isinstance(cfg.dataset, str) and cfg.dataset != '', 'dataset', cfg.dataset,
             '<env>-<level> or the path of an HDF5 file')
    from wsrl_mjx.data.registry import parse_name

    named = parse_name(cfg.dataset)
    # Methods without offline data (scratch) never read the dataset, so its env need not match.
    _require(named is None or named[0] == cfg.env or not uses_dataset(cfg), 'dataset', cfg.dataset,
             f'a dataset of env={cfg.env}')
    from wsrl_mjx.data.collect import available_levels

    _require(named is not None or cfg.dataset.endswith(('.hdf5', '.h5')), 'dataset', cfg.dataset,
             f'{cfg.env}-<level> (generated here: {", ".join(available_levels(cfg.env))}) or an .hdf5/.h5 file'
             + (" (D4RL's antmaze-v2 files fit)" if cfg.env.startswith('antmaze') else ''))
    if named is not None and uses_dataset(cfg):  # generated here: the behaviour policies must be shipped
        levels = available_levels(named[0])
        _require(named[1] in levels, 'dataset', cfg.dataset,
                 f'a level whose behaviour policies are shipped for {named[0]} '
                 f'({", ".join(f"{named[0]}-{lv}" for lv in levels)}) or an .hdf5/.h5 file'
                 + ('; play and diverse need the goal-reaching controller, wsrl_mjx/data/policies/'
                    'antgoal_controller.npz' if named[0].startswith('antmaze') else ''))
    for key in ('episode_length', 'num_envs', 'online_steps', 'buffer_capacity', 'log_interval',
                'eval_interval', 'eval_episodes', 'checkpoint_keep', 'dataset_size', 'agent.num_critics',
                'agent.num_min_critics', 'agent.critic_steps', 'agent.batch_size', 'pretrain.steps',
                'pretrain.batch_size', 'pretrain.log_interval', 'pretrain.eval_interval',
                'pretrain.cql_n_actions', 'agent.max_target_actions'):
        value = cfg
        for part in key.split('.'):
            value = value[part]
        _require(isinstance(value, int) and value > 0, key, value, 'a positive integer')
    p = cfg.pretrain
    _require(p.steps % p.log_interval == 0, 'pretrain.steps', p.steps, f'a multiple of pretrain.log_interval={p.log_interval}')
    _require(p.eval_interval % p.log_interval == 0, 'pretrain.eval_interval', p.eval_interval,
             f'a multiple of pretrain.log_interval={p.log_interval}')
    _require(cfg.reward_scale > 0, 'reward_scale', cfg.reward_scale, 'a positive number')
    for key in ('cql_alpha', 'cql_temperature', 'iql_beta', 'iql_lr', 'cql_alpha_lagrange_init',
                'cql_alpha_lagrange_lr'):
        _require(p[key] > 0, f'pretrain.{key}', p[key], 'a positive number')
    _require(p.actor_lr is None or p.actor_lr > 0, 'pretrain.actor_lr', p.actor_lr, 'a positive number or None')
    _require(p.tau is None or 0 < p.tau <= 1, 'pretrain.tau', p.tau, 'a number in (0, 1] or None')
    _require(cfg.handover_temperature is None or (method(cfg).pretrain is not None and method(cfg).online == 'sac'
                                                   and cfg.handover_temperature > 0),
             'handover_temperature', cfg.handover_temperature,
             'None (the pretrained temperature carries over) or a positive number, for a method that pretrains '
             'and fine-tunes with SAC (wsrl, no_warmup, retain)')
    _require(0 < p.iql_expectile < 1, 'pretrain.iql_expectile', p.iql_expectile, 'a number in (0, 1)')
    _require(cfg.agent.std_parameterization in STD_PARAMETERIZATIONS, 'agent.std_parameterization',
             cfg.agent.std_parameterization, f'one of {", ".join(STD_PARAMETERIZATIONS)}')
    _require(cfg.agent.matmul_dtype in MATMUL_DTYPES, 'agent.matmul_dtype', cfg.agent.matmul_dtype,
             f'one of {", ".join(MATMUL_DTYPES)}')
    for key in ('warmup_steps', 'checkpoint_interval'):
        _require(isinstance(cfg[key], int) and cfg[key] >= 0, key, cfg[key], 'a non-negative integer')
    _require(isinstance(p.bc_steps, int) and 0 <= p.bc_steps <= p.steps, 'pretrain.bc_steps', p.bc_steps,
             f'an integer in [0, pretrain.steps={p.steps}]')
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
    k = warmup_steps(cfg)
    _require(cfg.online_steps > k, 'online_steps', cfg.online_steps, f'more than the warmup steps ({k})')
    _require((cfg.online_steps - k) % cfg.log_interval == 0, 'online_steps', cfg.online_steps,
             f'the warmup steps ({k}) + a multiple of log_interval={cfg.log_interval}')
    for key in ('eval_interval', 'checkpoint_interval'):
        _require(cfg[key] % cfg.log_interval == 0, key, cfg[key], f'a multiple of log_interval={cfg.log_interval}')


def schedule(cfg) -> Schedule:
    n = cfg.num_envs
    k = warmup_steps(cfg)
    return Schedule(
        warmup_iterations=k // n,
        chunk_iterations=cfg.log_interval // n,
        chunks=(cfg.online_steps - k) // cfg.log_interval,
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
        init_temperature=a.init_temperature, target_entropy=a.target_entropy,
        std_parameterization=a.std_parameterization, max_target_backup=a.max_target_backup,
        max_target_actions=a.max_target_actions, matmul_dtype=a.matmul_dtype,
    )


def offline_config(cfg, agent: SACConfig, algo: str):
    """The static config of an offline algorithm (pretraining, or continued online) around `agent`."""
    from wsrl_mjx.agents import registry

    return registry.get(algo).configure(cfg.pretrain, agent)
