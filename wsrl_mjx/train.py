"""Entry point: python -m wsrl_mjx.train [--config=configs/locomotion.py:<preset>] [--config.<key>=<value>]
                                      [--run_dir=DIR] [--seeds=N]

Phases: warmup (no updates) -> online training in compiled chunks, evaluated every eval_interval.
The host only times, logs, evaluates and writes the run directory; it never sees a transition.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from absl import flags
from ml_collections import config_flags

DEFAULT_CONFIG = str(Path(__file__).resolve().parents[1] / 'configs' / 'locomotion.py')

_CONFIG = config_flags.DEFINE_config_file('config', f'{DEFAULT_CONFIG}:default', 'Config file and preset.')
_RUN_DIR = flags.DEFINE_string('run_dir', None, 'Run directory (default runs/<name>-<timestamp>).')
_SEEDS = flags.DEFINE_integer('seeds', 1, 'Number of seeds, vmapped in one program.')
_QUIET = flags.DEFINE_bool('quiet', False, 'No progress bar.')


class UsageError(Exception):
    """Bad input: reported as one line on stderr with exit code 2."""


def fail(message: str) -> None:
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)


def parse_args(argv: list[str]):
    """Parses flags and validates the config; raises UsageError with one line on bad input."""
    from wsrl_mjx.config import ConfigError, validate

    from wsrl_mjx.config import base_config

    try:
        flags.FLAGS(argv)
        cfg = _CONFIG.value
        validate(cfg)
    except flags.Error as e:  # unknown flag, bad value, or the config file raised (unknown preset)
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise UsageError(lines[0] if len(lines) == 1 else f'{lines[0].split(":")[0]}: {lines[-1]}') from None
    except OSError as e:  # config file missing or unreadable
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise UsageError(f'--config: {lines[-1]}') from None
    except (KeyError, AttributeError) as e:  # --config.<key> that the config does not have
        key = str(e).strip("'\"")
        allowed = ', '.join(k for k in base_config().keys())
        raise UsageError(f'unknown config key {key!r}; top-level keys: {allowed} (agent.* for the agent)') from None
    except ConfigError as e:
        raise UsageError(str(e)) from None
    if _SEEDS.value < 1:
        raise UsageError(f'--seeds={_SEEDS.value} is not allowed: a positive integer')
    run_dir = _RUN_DIR.value or os.path.join('runs', f'{cfg.name}-{time.strftime("%Y%m%d-%H%M%S")}')
    if os.path.exists(run_dir) and os.listdir(run_dir):
        raise UsageError(f'--run_dir={run_dir} already holds files: choose a new directory')
    return cfg, _SEEDS.value, run_dir


def enable_compilation_cache() -> None:
    """Persists compiled programs (XLA:CPU takes minutes on MJX programs; a rerun then loads them).

    Directory: $WSRL_MJX_COMPILATION_CACHE, default ~/.cache/wsrl_mjx/xla; an empty value turns it off.
    """
    import jax

    path = os.environ.get('WSRL_MJX_COMPILATION_CACHE', os.path.join(Path.home(), '.cache', 'wsrl_mjx', 'xla'))
    if path:
        jax.config.update('jax_compilation_cache_dir', path)
        jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
        jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def program_spec(cfg, seeds: int):
    """The static description of a run's compiled programs."""
    from wsrl_mjx.config import sac_config, schedule
    from wsrl_mjx.envs import make_env
    from wsrl_mjx.pipeline import online, programs

    env = make_env(cfg.env, cfg.episode_length)
    agent = sac_config(cfg, env.observation_size, env.action_size)
    return programs.ProgramSpec(
        env_name=cfg.env, episode_length=cfg.episode_length,
        online=online.OnlineSpec(agent=agent, num_envs=cfg.num_envs, buffer_capacity=cfg.buffer_capacity),
        plan=schedule(cfg), warmup_policy=cfg.warmup_policy, eval_episodes=cfg.eval_episodes, seeds=seeds,
    )


def seed_keys(cfg, seeds: int):
    """Per-seed keys (run, agent init, evaluation), each [seeds]: seed s uses jax.random.key(cfg.seed + s)."""
    import jax
    import jax.numpy as jnp

    keys = jax.vmap(jax.random.key)(jnp.arange(cfg.seed, cfg.seed + seeds))
    return jax.vmap(lambda k: jax.random.split(k, 3), out_axes=1)(keys)


def run(cfg, seeds: int, run_dir: str, quiet: bool = False):
    """The whole run; writes config.json, metrics.jsonl, summary.json and TensorBoard events.

    Returns (summary dict, final OnlineState with a leading seed axis).
    """
    import jax
    import numpy as np

    from wsrl_mjx.envs import normalized_score
    from wsrl_mjx.metrics import RunWriter, progress_bar
    from wsrl_mjx.pipeline.programs import compile_online_programs
    from wsrl_mjx.plot import plot_runs

    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, 'config.json'), 'w') as f:
        json.dump({'config': cfg.to_dict(), 'seeds': seeds}, f, indent=2, default=list)
    writer = RunWriter(run_dir)
    wall = {'compile': 0.0, 'warmup': 0.0, 'finetune': 0.0, 'evaluate': 0.0}

    tic = time.perf_counter()
    spec = program_spec(cfg, seeds)
    progs = compile_online_programs(spec)
    run_key, agent_key, eval_key = seed_keys(cfg, seeds)
    state = progs.init(run_key, progs.init_agent(agent_key))
    jax.block_until_ready(state)
    wall['compile'] = time.perf_counter() - tic

    def evaluate_now(step: int, phase: str) -> dict:
        nonlocal eval_key
        tic = time.perf_counter()
        eval_key, this_key = jax.vmap(jax.random.split, out_axes=1)(eval_key)
        returns = np.asarray(progs.evaluate(state.agent.actor, this_key)).mean(axis=1)
        wall['evaluate'] += time.perf_counter() - tic
        record = {'phase': phase, 'step': step, 'return': returns,
                  'normalized_score': normalized_score(cfg.env, returns)}
        writer.write(record)
        return record

    def chunk_record(phase: str, metrics, seconds: float, transitions: int, updates: int) -> dict:
        episodes = np.asarray(metrics.episodes)
        mean_return = np.where(episodes > 0, np.asarray(metrics.episode_return_sum) / np.maximum(episodes, 1),
                               np.nan)
        return {'phase': phase, 'step': int(np.asarray(state.env_steps)[0]), 'train_return': mean_return,
                **metrics.losses, 'env_steps_per_s': seeds * transitions / seconds,
                'updates_per_s': seeds * updates / seconds}

    history = []
    with progress_bar(disable=quiet) as bar:
        task = bar.add_task(f'{cfg.name} {cfg.env} x{seeds}', total=cfg.online_steps, speed='', score='')
        if progs.warmup is not None:
            tic = time.perf_counter()
            state, metrics = progs.warmup(state)
            jax.block_until_ready(state)
            wall['warmup'] = time.perf_counter() - tic
            writer.write(chunk_record('warmup', metrics, wall['warmup'], cfg.warmup_steps, 0))
            bar.update(task, completed=cfg.warmup_steps)
        history.append(evaluate_now(cfg.warmup_steps, 'warmup'))
        bar.update(task, score=f"score {np.mean(history[-1]['normalized_score']):.1f}")
        for chunk in range(1, spec.plan.chunks + 1):
            tic = time.perf_counter()
            state, metrics = progs.train(state)
            jax.block_until_ready(state)
            seconds = time.perf_counter() - tic
            wall['finetune'] += seconds
            record = chunk_record('finetune', metrics, seconds, cfg.log_interval,
                                  spec.plan.chunk_iterations * cfg.agent.critic_steps)
            writer.write(record)
            if chunk % spec.plan.eval_every_chunks == 0 or chunk == spec.plan.chunks:
                history.append(evaluate_now(record['step'], 'finetune'))
                bar.update(task, score=f"score {np.mean(history[-1]['normalized_score']):.1f}")
            bar.update(task, advance=cfg.log_interval, speed=f"{record['env_steps_per_s']:.0f} steps/s")

    final = np.asarray(history[-1]['normalized_score'])
    summary = {
        'env': cfg.env, 'seeds': list(range(cfg.seed, cfg.seed + seeds)), 'online_steps': cfg.online_steps,
        'normalized_score': final.tolist(),
        'normalized_score_mean': float(final.mean()), 'normalized_score_std': float(final.std()),
        'return': np.asarray(history[-1]['return']).tolist(),
        'normalized_score_after_warmup': np.asarray(history[0]['normalized_score']).tolist(),
        'wall_clock_s': {k: round(v, 3) for k, v in wall.items()},
    }
    with open(os.path.join(run_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    writer.close()
    plot_runs([run_dir], os.path.join(run_dir, 'curves.png'), title=f'{cfg.name}: {cfg.env}')
    return summary, state


def main(argv: list[str]) -> None:
    try:
        cfg, seeds, run_dir = parse_args(argv)
    except UsageError as e:
        fail(str(e))
    enable_compilation_cache()
    summary, _ = run(cfg, seeds, run_dir, quiet=_QUIET.value)
    print(f"{cfg.env}: normalised score {summary['normalized_score_mean']:.1f} +- "
          f"{summary['normalized_score_std']:.1f} over {seeds} seed(s) after {cfg.online_steps} steps; "
          f"run directory {run_dir}")


if __name__ == '__main__':
    main(sys.argv)
