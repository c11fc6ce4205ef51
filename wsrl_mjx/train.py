"""Entry point: one WSRL run (or a baseline) end to end, seeds in one program.

  python -m wsrl_mjx.train [--config=configs/locomotion.py:<preset>] [--config.<key>=<value> ...]
                           [--seeds=N] [--cpu_devices=D] [--run_dir=DIR] [--resume] [--pretrained_from=DIR]
                           [--quiet]

Presets: default (WSRL on halfcheetah-medium, ~25 min on 2 CPU cores), repro (the reproduction's), smoke,
sac, paper (GPUs); configs/antmaze.py: paper (GPUs), umaze (CPU scale), smoke, controller (the datasets'
goal-reaching ant).
Methods (--config.method): wsrl, no_warmup, retain, rlpd, calql, cql, iql, cql_no_data, calql_no_data,
iql_no_data, scratch.
Phases: dataset (made by name and cached on first use) -> offline pretraining -> policy warmup (no
updates) -> online training in compiled chunks, evaluated every eval_interval. The run directory gets
config.json, metrics.jsonl, TensorBoard events, checkpoints/, policies/, summary.json and curves.png.
`--run_dir=DIR --resume` continues a stopped run from its latest checkpoint (add
`--config.online_steps=N` to extend it). `--pretrained_from=DIR` starts a new run from the
pretrained agent that the run in DIR saved at the end of its pretraining (DIR/pretrained/), instead of
pretraining again: wsrl, no_warmup and retain, say, from one pretraining. The host only times, logs, evaluates and checkpoints; it
never sees a transition. Bad input: one line on stderr, exit code 2, nothing written.
"""
from __future__ import annotations

import copy
import json
import os
import signal
import sys
import time

from absl import flags

from wsrl_mjx.cli import UsageError, exit_on_help, fail
from wsrl_mjx.entry import enable_compilation_cache, load_dataset, parse_config
from wsrl_mjx.runner import PRETRAINED, Diverged, Preempted

_RUN_DIR = flags.DEFINE_string('run_dir', None, 'Run directory (default runs/<name>-<timestamp>).')
_QUIET = flags.DEFINE_bool('quiet', False, 'No progress bar.')
_RESUME = flags.DEFINE_bool('resume', False, 'Continue the run in --run_dir from its latest checkpoint.')
_PRETRAINED_FROM = flags.DEFINE_string(
    'pretrained_from', None, 'Start from the pretrained agent of the run in this directory instead of pretraining '
    '(same env, dataset, dataset_size, episode_length, reward_scale, reward_bias, seed, seeds, agent.* and '
    'pretrain.* but pretrain.eval_interval; the method may differ).')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'host:port of process 0, for runs over several processes (jax.distributed).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes of a multi-process run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process: 0 .. num_processes - 1.')


def parse_args(argv: list[str]):
    """Parses flags and validates the config; raises UsageError with one line on bad input.

    Returns (config, seeds, run_dir, resume).
    """
    cfg, seeds = parse_config(argv)  # --config, its --config.<key> overrides, --seeds and every other flag
    if _RESUME.value and _PRETRAINED_FROM.value:
        raise UsageError('--pretrained_from starts a new run and --resume continues one: give one of them')
    if _RESUME.value:
        cfg, seeds = _resumed_config(argv, cfg, seeds)
        return cfg, seeds, _RUN_DIR.value, True
    run_dir = _RUN_DIR.value or os.path.join('runs', f'{cfg.name}-{time.strftime("%Y%m%d-%H%M%S")}')
    # Other processes of a multi-process run share the directory process 0 is creating.
    if not _PROCESS_ID.value and os.path.exists(run_dir) and os.listdir(run_dir):
        raise UsageError(f'--run_dir={run_dir} already holds files: choose a new directory, or add --resume')
    return cfg, seeds, run_dir, False


def _resumed_config(argv: list[str], cfg, seeds: int):
    """The config and seed count of the run being resumed; refuses a different config or seed count."""
    import ml_collections

    from wsrl_mjx.config import ConfigError, json_config, upgrade, validate

    run_dir = _RUN_DIR.value
    if not run_dir:
        raise UsageError('--resume needs --run_dir=DIR, the run directory to continue')
    path = os.path.join(run_dir, 'config.json')
    try:
        with open(path) as f:
            saved = json.load(f)
        saved_config, saved_seeds = upgrade(saved['config']), int(saved['seeds'])
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f'--run_dir={run_dir}: no readable config.json with config and seeds; not a run directory')
    if latest_checkpoint_step(run_dir) is None:
        raise UsageError(f'--run_dir={run_dir} holds no finished checkpoint to resume from')
    # The run continues with its saved config. --config=<file> must give the same whole config;
    # --config.<key> flags alone are checked key by key. Only online_steps may differ, and only
    # upwards: the run then goes on past its old end (a finished run too).
    if any(a == '--config' or a.startswith('--config=') for a in argv[1:]):
        wanted = json_config(cfg)
    else:
        wanted = copy.deepcopy(saved_config)
        flagged = json_config(cfg)  # the --config preset with the --config.<key> flags applied
        for arg in argv[1:]:
            if arg.startswith('--config.'):
                *parents, leaf = arg[len('--config.'):].split('=')[0].split('.')
                into, source = wanted, flagged
                for part in parents:
                    into, source = into.setdefault(part, {}), source[part]
                into[leaf] = source[leaf]
    steps, started_steps = wanted.get('online_steps'), saved_config.get('online_steps')
    longer = isinstance(steps, int) and isinstance(started_steps, int) and steps > started_steps
    key, given, started = _first_difference(wanted, {**saved_config, 'online_steps': steps} if longer else saved_config)
    if key is not None:
        raise UsageError(f'--resume: config.{key}={given!r} differs from {started!r}, the value the run in '
                         f'{run_dir} started with; resume with the same config (only a larger '
                         f'config.online_steps, to run longer, may differ)')
    cfg = ml_collections.ConfigDict(wanted)
    try:
        validate(cfg)
    except ConfigError as e:
        raise UsageError(f'--resume with {path}: {e}') from None
    if flags.FLAGS['seeds'].present and seeds != saved_seeds:
        raise UsageError(f'--resume: --seeds={seeds} differs from {saved_seeds}, the seeds the run in {run_dir} '
                         f'started with')
    return cfg, saved_seeds


def _first_difference(given, started, prefix: str = ''):
    """(dotted key, given value, started value) of the first difference between two config dicts."""
    for key in sorted(set(given) | set(started)):
        a, b = given.get(key), started.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = _first_difference(a, b, f'{prefix}{key}.')
            if found[0] is not None:
                return found
        elif a != b:
            return f'{prefix}{key}', a, b
    return None, None, None


def latest_checkpoint_step(run_dir: str) -> int | None:
    """Step of the newest finished checkpoint (orbax names them by step; unfinished ones carry a suffix)."""
    directory = os.path.join(run_dir, 'checkpoints')
    steps = [int(n) for n in os.listdir(directory) if n.isdigit()] if os.path.isdir(directory) else []
    return max(steps) if steps else None


# The config keys that make a pretraining what it is (all of pretrain.* but eval_interval): a run may
# start from another's pretrained agent where these are equal, and the seed count is.
PRETRAINING_KEYS = ('env', 'dataset', 'dataset_size', 'episode_length', 'seed', 'reward_scale', 'reward_bias',
                    'agent', 'pretrain')


def read_pretrained(source: str, cfg, seeds: int) -> dict:
    """The host item of the pretrained agent saved by the run in `source`, checked against this run's
    config; raises UsageError (one line) where it is missing or was pretrained otherwise."""
    import ml_collections

    from wsrl_mjx.checkpoint import Checkpointer
    from wsrl_mjx.config import json_config, method, upgrade

    algo = method(cfg).pretrain
    if algo is None:
        raise UsageError(f'--pretrained_from: config.method={cfg.method} does not pretrain')
    if not os.path.isdir(os.path.join(source, PRETRAINED)):
        raise UsageError(f'--pretrained_from={source}: no {PRETRAINED}/ directory there (a run saves it at the end '
                         f'of its pretraining)')
    checkpoints = Checkpointer(source, asynchronous=False, subdir=PRETRAINED)
    try:
        step = checkpoints.latest_step()
        if step is None:
            raise UsageError(f'--pretrained_from={source}: {checkpoints.directory} holds no finished save')
        host = checkpoints.read_host(step)
    finally:
        checkpoints.close()
    saved = upgrade(host['config'])
    if algo != method(ml_collections.ConfigDict(saved)).pretrain:
        raise UsageError(f'--pretrained_from={source}: it pretrained with {method(ml_collections.ConfigDict(saved)).pretrain}, '
                         f'config.method={cfg.method} pretrains with {algo}')
    def pretraining(config: dict) -> dict:  # how often pretraining was evaluated does not change it
        return {k: ({**config[k], 'eval_interval': None} if k == 'pretrain' else config[k]) for k in PRETRAINING_KEYS}

    key, given, there = _first_difference(pretraining(json_config(cfg)), pretraining(saved))
    if key is not None:
        raise UsageError(f'--pretrained_from={source}: config.{key}={given!r} differs from {there!r}, the value it '
                         f'pretrained with (these must match: {", ".join(PRETRAINING_KEYS)})')
    if host['seeds'] != seeds:
        raise UsageError(f'--pretrained_from={source}: --seeds={seeds} differs from {host["seeds"]}, the seeds it '
                         f'pretrained')
    return {**host, 'source': os.path.abspath(source), 'step': step}


def run(cfg, seeds: int, run_dir: str, quiet: bool = False, resume: bool = False, dataset=None,
        pretrained: dict | None = None, on_saved=None, stop=None):
    """The whole run, or its rest from the latest checkpoint in run_dir when `resume`: see runner.Runner.
    Returns (summary dict, final OnlineState with a leading seed axis); raises Preempted on SIGTERM,
    Diverged when a metric is not finite."""
    from wsrl_mjx.runner import Runner

    return Runner(cfg, seeds, run_dir, quiet=quiet, resume=resume, dataset=dataset, pretrained=pretrained,
                  on_saved=on_saved, stop=stop).run()


def main(argv: list[str]) -> None:
    exit_on_help(argv, __doc__)
    try:
        cfg, seeds, run_dir, resume = parse_args(argv)
    except UsageError as e:
        fail(str(e))
    from wsrl_mjx import parallel

    parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    try:
        parallel.check_seeds(seeds)
    except UsageError as e:
        fail(str(e))
    enable_compilation_cache()
    try:
        dataset = load_dataset(cfg, quiet=_QUIET.value)  # before the run directory exists
    except UsageError as e:
        fail(str(e))
    from wsrl_mjx.checkpoint import CheckpointMismatch

    try:
        pretrained = read_pretrained(_PRETRAINED_FROM.value, cfg, seeds) if _PRETRAINED_FROM.value else None
    except UsageError as e:
        fail(str(e))
    try:
        summary, _ = run(cfg, seeds, run_dir, quiet=_QUIET.value, resume=resume, dataset=dataset,
                         pretrained=pretrained)
    except CheckpointMismatch as e:
        fail(f"{'--resume' if resume else '--pretrained_from'}: {e}")
    except Preempted as e:
        if not e.saved:
            print(f'error: stopped by SIGTERM after step {e.step} with nothing saved (config.checkpoint_interval=0): '
                  f'the run cannot be resumed', file=sys.stderr)
            sys.exit(128 + signal.SIGTERM)
        print(f'stopped by SIGTERM at step {e.step}, checkpoint saved; continue with: python -m wsrl_mjx.train '
              f'--run_dir={run_dir} --resume')
        return
    except Diverged as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)
    if jax_process_index() == 0:
        print(result_table(summary))
        print(f'run directory {run_dir}')


def jax_process_index() -> int:
    import jax

    return jax.process_index()


def result_table(summary: dict) -> str:
    """The run's scores as a small table: offline, right after warmup, final (mean +- std over seeds)."""
    import numpy as np

    def cell(scores):
        if scores is None:
            return '-'
        return f'{np.mean(scores):6.1f}' + (f' +- {np.std(scores):4.1f}' if len(scores) > 1 else '')

    dataset_score = summary.get('dataset_normalized_score')
    rows = [('dataset (its episodes)', None if dataset_score is None else [dataset_score]),
            ('offline (end of pretraining)', summary['normalized_score_offline']),
            ('after warmup' if summary.get('warmup_steps', 1) else 'start of fine-tuning (no warmup)',
             summary['normalized_score_after_warmup']),
            (f"final ({summary['online_steps']} online steps)", summary['normalized_score'])]
    seeds = len(summary['seeds'])
    from wsrl_mjx.envs.registry import ENV_SPECS

    spec = ENV_SPECS.get(summary['env'])
    score = spec.score_name if spec else 'D4RL-normalised score'
    title = f"{summary['method']} on {summary['env']}, {seeds} seed{'s' if seeds > 1 else ''}: {score}"
    width = max(len(name) for name, _ in rows)
    return '\n'.join([title] + [f'  {name:<{width}}  {cell(scores)}' for name, scores in rows])


if __name__ == '__main__':
    main(sys.argv)
