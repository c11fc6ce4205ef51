"""D4RL-style datasets on the MJX tasks: the collection behind `python -m wsrl_mjx.collect`.

Levels follow D4RL's recipe with the behaviour policies shipped in wsrl_mjx/data/policies/:
  random         uniform actions in [-1, 1]
  medium         the stochastic actions of a SAC snapshot at roughly a third of expert performance
  expert         the stochastic actions of the converged SAC policy
  medium-replay  what the SAC run stored until the medium snapshot: its uniform warmup, then each
                 earlier shipped snapshot rolled out for the steps it was in charge of (halfcheetah's
                 and hopper's every 5000 steps, walker2d's at 5k and every 20k; the rollouts stand in
                 for the replay buffer itself)
  medium-expert  medium and expert datasets of `size` each, concatenated
Each env of a batch of up to `--envs` vmapped MJX envs runs its own episodes one after another (1000
steps or a terminal), so every episode is contiguous in the file; the number of envs is chosen so that
each runs whole 1000-step episodes when the size allows (e.g. 50 envs for 100k or 1M transitions); a
step cut by the end of collection is marked as a time-out; the metadata records each part's env count.
The same (env, level, size, seed) gives the same file.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from wsrl_mjx.data.dataset import Dataset, summarize
from wsrl_mjx.cli import UsageError

GENERATOR = 'wsrl_mjx.collect/1'  # in every file's metadata: keep it, or the files change
LEVELS = ('random', 'medium', 'medium-replay', 'expert', 'medium-expert')
POLICY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'policies')
EPISODE_LENGTH = 1000
CHUNK = 250  # env steps per compiled rollout call (one progress-bar update)


class CollectError(UsageError):
    """Bad input to collection; one line naming the flag and what is allowed."""


def shipped_policies(env: str) -> dict:
    """name -> path of the policy files shipped for `env` (medium, expert, replay_<step>)."""
    prefix = f'{env}_'
    if not os.path.isdir(POLICY_DIR):
        return {}
    return {name[len(prefix):-4]: os.path.join(POLICY_DIR, name)
            for name in sorted(os.listdir(POLICY_DIR)) if name.startswith(prefix) and name.endswith('.npz')}


def needed_policies(env: str, level: str) -> tuple[str, ...]:
    """The shipped policies (names as in shipped_policies) that generating `level` of `env` needs."""
    if level == 'random':
        return ()
    if level == 'medium-expert':
        return ('medium', 'expert')
    if level == 'medium-replay':
        replays = tuple(k for k in shipped_policies(env) if k.startswith('replay_'))
        return ('medium', *(replays or ('replay_<step>',)))
    return (level,)


def levels_of(env: str) -> tuple[str, ...]:
    """The levels a dataset of `env` can have: LEVELS for locomotion; random, play and diverse for
    antmaze (wsrl_mjx/data/antmaze_collect.py)."""
    from wsrl_mjx.data import antmaze_collect

    return ('random', *antmaze_collect.LEVELS) if env.startswith('antmaze-') else LEVELS


def generating_policies(env: str) -> dict:
    """name -> path of the shipped policy files that datasets of `env` are generated with (antmaze:
    the goal-reaching controller of antgoal)."""
    return shipped_policies('antgoal') if env.startswith('antmaze-') else shipped_policies(env)


def available_levels(env: str) -> tuple[str, ...]:
    """The levels of `env` whose policies are shipped, so that their datasets can be generated here."""
    if env.startswith('antmaze-'):
        return levels_of(env) if 'controller' in generating_policies(env) else ('random',)
    shipped = shipped_policies(env)
    return tuple(level for level in LEVELS if all(p in shipped for p in needed_policies(env, level)))


def _policy(env: str, name: str) -> str:
    policies = shipped_policies(env)
    if name not in policies:
        have = ', '.join(k for k in policies if not k.startswith('replay_')) or 'none'
        raise CollectError(f'--level needs the {name} policy of {env}, which is not shipped (shipped for {env}: '
                           f'{have}); train one with python -m wsrl_mjx.train --config=configs/locomotion.py:sac '
                           f'--config.env={env} and pass its policies/<snapshot>.npz with --policy')
    return policies[name]


@functools.lru_cache(maxsize=8)
def _rollout_program(env_name: str, num_envs: int, length: int, hidden_shapes: tuple | None, log_std: tuple):
    """Compiled: (actor params or None, env state, key) -> (env state, key, chunk of transitions)."""
    import jax

    from wsrl_mjx import networks
    from wsrl_mjx.envs import make_env
    from wsrl_mjx.envs.registry import ENV_SPECS
    from wsrl_mjx.envs.wrappers import rollout_step, uniform_policy

    env = make_env(env_name, EPISODE_LENGTH)
    spec = ENV_SPECS[env_name]
    if (env.observation_size, env.action_size) != (spec.obs_dim, spec.act_dim):
        raise RuntimeError(f'{env_name}: the loaded model has {env.observation_size} observations and '
                           f'{env.action_size} actions; the registry says {spec.obs_dim} and {spec.act_dim}')

    def chunk(actor, env_state, key):
        if actor is None:
            act = uniform_policy(env.action_size)
        else:
            act = lambda observation, key: networks.sample_action(actor, observation, key, *log_std)[0]

        def body(carry, _):
            env_state, key = carry
            key, env_state, transition, info = rollout_step(env, env_state, act, key)
            terminal = transition.mask == 0.0
            return (env_state, key), (transition, terminal, info.done & ~terminal)

        (env_state, key), out = jax.lax.scan(body, (env_state, key), None, length=length)
        return env_state, key, out

    reset = jax.jit(lambda key: env.reset(key, num_envs))
    return reset, jax.jit(chunk)


def rollout(env_name: str, actor, log_std: tuple, steps: int, key, num_envs: int, progress=None) -> Dataset:
    """`steps` transitions from `num_envs` envs (env-major: each env's episodes contiguous)."""
    import jax

    per_env = -(-steps // num_envs)
    length = min(CHUNK, per_env)
    chunks = -(-per_env // length)
    shapes = None if actor is None else tuple(tuple(v.shape for v in layer.values()) for layer in actor)
    reset, chunk = _rollout_program(env_name, num_envs, length, shapes, tuple(log_std))
    reset_key, key = jax.random.split(key)
    env_state = reset(reset_key)
    parts = []
    for i in range(chunks):
        env_state, key, out = chunk(actor, env_state, key)
        parts.append(jax.tree.map(np.asarray, out))
        if progress is not None:
            progress(min(length * num_envs, steps - i * length * num_envs))
    transition, terminal, timeout = jax.tree.map(lambda *x: np.concatenate(x), *parts)

    def env_major(x):  # [time, env, ...] -> [env * time, ...], cut to per_env steps each
        x = np.swapaxes(x[:per_env], 0, 1)
        return x.reshape((-1,) + x.shape[2:])

    timeout = timeout.copy()
    timeout[per_env - 1] |= ~terminal[per_env - 1]  # collection ends each env's last episode here
    data = Dataset(
        observations=env_major(transition.observation), actions=env_major(transition.action),
        rewards=env_major(transition.reward), next_observations=env_major(transition.next_observation),
        terminals=env_major(terminal), timeouts=env_major(timeout),
    )
    if len(data) > steps:  # drop the surplus from the last env and mark its new last step as cut
        data = Dataset(**{f: getattr(data, f)[:steps] for f in ('observations', 'actions', 'rewards',
                                                              'next_observations', 'terminals', 'timeouts')})
        data.timeouts[-1] |= ~data.terminals[-1]
    return data


def _load_policy(path: str):
    import jax.numpy as jnp

    from wsrl_mjx.data.policies import PolicyFileError, load_actor

    try:
        actor, meta = load_actor(path)
    except PolicyFileError as e:
        raise CollectError(str(e)) from None
    return tuple({k: jnp.asarray(v) for k, v in layer.items()} for layer in actor), meta


def collect(env: str, level: str, size: int, seed: int, num_envs: int = 64, policy: str | None = None,
            quiet: bool = False) -> Dataset:
    """The dataset of `level` (see the module docstring) with `size` transitions (per part for medium-expert)."""
    import jax

    from wsrl_mjx.envs.registry import ENV_SPECS
    from wsrl_mjx.metrics import progress_bar

    if env not in ENV_SPECS:
        raise CollectError(f'--env={env} is unknown: one of {", ".join(ENV_SPECS)}')
    if level not in levels_of(env):
        raise CollectError(f'--level={level} is unknown for {env}: one of {", ".join(levels_of(env))}')
    if size < 1 or num_envs < 1:
        raise CollectError(f'--size={size} --envs={num_envs}: positive integers required')
    if env.startswith('antmaze-') and level != 'random':
        from wsrl_mjx.data import antmaze_collect

        return antmaze_collect.collect(env[len('antmaze-'):], level, size, seed, num_envs, policy, quiet)
    key = jax.random.key(seed)

    # (label, policy path or None for uniform, transitions)
    if policy is not None:
        plan = [(level, policy, size)]
    elif level == 'random':
        plan = [('random', None, size)]
    elif level in ('medium', 'expert'):
        plan = [(level, _policy(env, level), size)]
    elif level == 'medium-expert':
        plan = [('medium', _policy(env, 'medium'), size), ('expert', _policy(env, 'expert'), size)]
    else:
        plan = _replay_plan(env, size)

    parts, sources = [], []
    with progress_bar(disable=quiet) as bar:
        task = bar.add_task(f'collect {env}-{level}', total=sum(n for _, _, n in plan), speed='', score='')
        for i, (label, path, steps) in enumerate(plan):
            actor, meta = (None, {}) if path is None else _load_policy(path)
            log_std = (meta.get('log_std_min', -11.512925), meta.get('log_std_max', 2.302585))
            part_envs = envs_for(steps, num_envs)
            part = rollout(env, actor, log_std, steps, jax.random.fold_in(key, i), part_envs,
                           progress=lambda n: bar.update(task, advance=n))
            parts.append(part)
            sources.append({'label': label, 'policy': None if path is None else os.path.basename(path),
                            'transitions': steps, 'envs': part_envs, 'policy_return': meta.get('return'),
                            'policy_step': meta.get('step'), **_returns(part, env)})
    # 'envs' is the --envs bound; each source records the envs it ran (envs_for)
    meta = {'env': env, 'level': level, 'seed': seed, 'size': size, 'envs': num_envs,
            'episode_length': EPISODE_LENGTH, 'generator': GENERATOR, 'sources': sources}
    return Dataset.concatenate(parts, meta)


def envs_for(steps: int, num_envs: int) -> int:
    """The most envs (<= num_envs) that split `steps` into whole 1000-step episodes per env, so that no
    episode is cut by the end of collection; if none does, min(num_envs, steps)."""
    for n in range(min(num_envs, steps // EPISODE_LENGTH), 0, -1):
        if steps % (n * EPISODE_LENGTH) == 0:
            return n
    return min(num_envs, steps)


def _replay_plan(env: str, size: int):
    """medium-replay: uniform warmup, then every snapshot before the medium one for its share of steps."""
    policies = shipped_policies(env)
    medium = _policy(env, 'medium')
    from wsrl_mjx.data.policies import load_actor

    medium_step = load_actor(medium)[1]['step']
    snapshots = sorted((int(k.split('_')[1]), p) for k, p in policies.items() if k.startswith('replay_'))
    snapshots = [(step, p) for step, p in snapshots if step < medium_step]
    if not snapshots:
        raise CollectError(f'--level=medium-replay needs the replay_<step> snapshots of {env}, which are not shipped')
    bounds = [s for s, _ in snapshots] + [medium_step]
    warmup = bounds[0]
    plan = [('warmup', None, warmup)] + [(f'snapshot_{s}', p, bounds[i + 1] - s) for i, (s, p) in enumerate(snapshots)]
    total = sum(n for _, _, n in plan)
    # Scale to the requested size, keeping the shares of the training run.
    counts = [max(1, round(n * size / total)) for _, _, n in plan]
    counts[-1] += size - sum(counts)
    return [(label, path, n) for (label, path, _), n in zip(plan, counts) if n > 0]


def _returns(data: Dataset, env: str) -> dict:
    info = summarize(data, env)
    return {k: info.get(k) for k in ('episodes', 'return_mean', 'normalized_score_mean')}
