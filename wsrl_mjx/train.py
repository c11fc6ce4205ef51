"""Entry point: one WSRL run (or a baseline) end to end, seeds vmapped in one program.

  python -m wsrl_mjx.train [--config=configs/locomotion.py:<preset>] [--config.<key>=<value> ...]
                           [--seeds=N] [--run_dir=DIR] [--resume] [--pretrained_from=DIR] [--quiet]

Presets: default (WSRL on halfcheetah-medium, ~20 min on 2 CPU cores), smoke, sac, paper (GPUs).
Methods (--config.method): wsrl, no_warmup, retain, rlpd, calql, cql, iql, scratch.
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
import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path

from absl import flags
from ml_collections import config_flags

from wsrl_mjx.cli import exit_on_help, fail

# The presets, installed as wsrl_mjx.configs from the repository's configs/ (pyproject.toml).
CONFIG_DIR = os.path.dirname(importlib.util.find_spec('wsrl_mjx.configs').origin)
DEFAULT_CONFIG = os.path.join(CONFIG_DIR, 'locomotion.py')


def _installed_config(arg: str) -> str:
    """--config=configs/<file>.py[:preset] names the installed preset file when the working directory
    has no such file (a run started outside the repository)."""
    if not arg.startswith('--config='):
        return arg
    path, colon, preset = arg[len('--config='):].partition(':')
    name = os.path.normpath(path)
    if not os.path.exists(path) and os.path.dirname(name) == 'configs':
        installed = os.path.join(CONFIG_DIR, os.path.basename(name))
        if os.path.exists(installed):
            return f'--config={installed}{colon}{preset}'
    return arg

_CONFIG = config_flags.DEFINE_config_file('config', f'{DEFAULT_CONFIG}:default', 'Config file and preset.')
_RUN_DIR = flags.DEFINE_string('run_dir', None, 'Run directory (default runs/<name>-<timestamp>).')
_SEEDS = flags.DEFINE_integer('seeds', 1, 'Number of seeds, vmapped in one program and split over devices.')
_QUIET = flags.DEFINE_bool('quiet', False, 'No progress bar.')
_RESUME = flags.DEFINE_bool('resume', False, 'Continue the run in --run_dir from its latest checkpoint.')
_PRETRAINED_FROM = flags.DEFINE_string(
    'pretrained_from', None, 'Start from the pretrained agent of the run in this directory instead of pretraining '
    '(same env, dataset, seed, seeds, agent.* and pretrain.*; the method may differ).')
_COORDINATOR = flags.DEFINE_string('coordinator_address', None,
                                   'host:port of process 0, for runs over several processes (jax.distributed).')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes of a multi-process run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This process: 0 .. num_processes - 1.')


class UsageError(Exception):
    """Bad input: reported as one line on stderr with exit code 2."""


def parse_args(argv: list[str]):
    """Parses flags and validates the config; raises UsageError with one line on bad input.

    Returns (config, seeds, run_dir, resume).
    """
    from wsrl_mjx.config import ConfigError, base_config, validate

    argv = [_installed_config(arg) for arg in argv]
    # config_flags reads the --config.<key> overrides from sys.argv, not from the list it is given.
    saved_argv, sys.argv = sys.argv, argv
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
    finally:
        sys.argv = saved_argv
    seeds = _SEEDS.value
    if seeds < 1:
        raise UsageError(f'--seeds={seeds} is not allowed: a positive integer')
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

    from wsrl_mjx.config import ConfigError, validate

    run_dir = _RUN_DIR.value
    if not run_dir:
        raise UsageError('--resume needs --run_dir=DIR, the run directory to continue')
    path = os.path.join(run_dir, 'config.json')
    try:
        with open(path) as f:
            saved = json.load(f)
        saved_config, saved_seeds = saved['config'], int(saved['seeds'])
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


PRETRAINED = 'pretrained'  # <run_dir>/pretrained/<updates>: the agent at the end of pretraining
# The config keys that make a pretraining what it is (all of pretrain.* but eval_interval): a run may
# start from another's pretrained agent where these are equal, and the seed count is.
PRETRAINING_KEYS = ('env', 'dataset', 'dataset_size', 'episode_length', 'seed', 'agent', 'pretrain')


def read_pretrained(source: str, cfg, seeds: int) -> dict:
    """The host item of the pretrained agent saved by the run in `source`, checked against this run's
    config; raises UsageError (one line) where it is missing or was pretrained otherwise."""
    import ml_collections

    from wsrl_mjx.checkpoint import Checkpointer
    from wsrl_mjx.config import method

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
    saved = host['config']
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


def program_spec(cfg, seeds: int, dataset_rows: int = 0):
    """The static description of a run's online programs."""
    from wsrl_mjx.config import method, offline_config, sac_config, schedule, warmup_policy
    from wsrl_mjx.envs import make_env
    from wsrl_mjx.pipeline import online, programs

    env = make_env(cfg.env, cfg.episode_length)
    agent = sac_config(cfg, env.observation_size, env.action_size)
    m = method(cfg)
    online_spec = online.OnlineSpec(
        agent=agent, num_envs=cfg.num_envs, buffer_capacity=cfg.buffer_capacity, update=m.online,
        offline_cfg=None if m.online == 'sac' else offline_config(cfg, agent, m.online),
        offline_ratio=m.offline_ratio)
    return programs.ProgramSpec(
        env_name=cfg.env, episode_length=cfg.episode_length, online=online_spec, plan=schedule(cfg),
        warmup_policy=warmup_policy(cfg), eval_episodes=cfg.eval_episodes, seeds=seeds,
        dataset_rows=dataset_rows if m.offline_ratio > 0 else 0,
    )


def pretrain_spec(cfg, seeds: int, dataset_rows: int):
    """The static description of the pretraining program, or None for methods without pretraining."""
    from wsrl_mjx.config import method, offline_config, sac_config
    from wsrl_mjx.envs import make_env
    from wsrl_mjx.pipeline import programs

    algo = method(cfg).pretrain
    if algo is None:
        return None
    env = make_env(cfg.env, cfg.episode_length)
    agent = sac_config(cfg, env.observation_size, env.action_size)
    return programs.PretrainSpec(algo=algo, algo_cfg=offline_config(cfg, agent, algo),
                                 batch_size=cfg.pretrain.batch_size, chunk_updates=cfg.pretrain.log_interval,
                                 dataset_rows=dataset_rows, seeds=seeds)


def seed_keys(cfg, seeds: int):
    """Per-seed keys (online run, agent init, evaluation, pretraining), each [seeds]: seed s derives
    them from jax.random.key(cfg.seed + s)."""
    import jax
    import jax.numpy as jnp

    keys = jax.vmap(jax.random.key)(jnp.arange(cfg.seed, cfg.seed + seeds))
    return jax.vmap(lambda k: jax.random.split(k, 4), out_axes=1)(keys)


def load_dataset(cfg, quiet: bool = False):
    """The run's offline dataset (generated on first use for a name), validated against the env;
    None for methods that use none. Raises UsageError on a bad file."""
    from wsrl_mjx.config import uses_dataset
    from wsrl_mjx.data import registry
    from wsrl_mjx.data.dataset import DatasetError, load
    from wsrl_mjx.envs.registry import ENV_SPECS

    if not uses_dataset(cfg):
        return None
    spec = ENV_SPECS[cfg.env]
    path = registry.resolve(cfg.dataset, cfg.dataset_size, quiet=quiet)
    try:
        return load(path, spec.obs_dim, spec.act_dim)
    except DatasetError as e:
        raise UsageError(f'config.dataset: {e}') from None


class Preempted(Exception):
    """SIGTERM arrived: the run stopped after `step`, saved there unless it keeps no checkpoints."""

    def __init__(self, step: int, saved: bool = True):
        super().__init__(step, saved)
        self.step, self.saved = step, saved


class Diverged(Exception):
    """A metric of the training became NaN or infinite: the run stopped without saving that state."""


# Metrics that may be NaN without anything being wrong: no episode ended in a chunk.
_MAY_BE_NAN = ('train_return',)


def non_finite(record: dict) -> str | None:
    """'name (seeds ...)' of the first metric of `record` that is NaN or infinite for some seed, else None."""
    import numpy as np

    for name, value in record.items():
        if name in ('phase', 'step', *_MAY_BE_NAN) or isinstance(value, str):
            continue
        values = np.asarray(value, np.float64).reshape(-1)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            return f'{name} ({"seed index" if values.size > 1 else "value"} {", ".join(map(str, bad.tolist()))})'
    return None


def _fresh_host(cfg, seeds: int, pretraining: bool) -> dict:
    """The host's part of a run's state: what a checkpoint holds besides the device arrays."""
    return {'config': json_config(cfg), 'seeds': seeds, 'phase': 'pretrain' if pretraining else 'online',
            'pretrain_chunks_done': 0, 'step': 0, 'warmup_done': False, 'chunks_done': 0,
            'history': [], 'metrics_lines': 0, 'pretrained_from': None,
            'wall': {'compile': 0.0, 'pretrain': 0.0, 'warmup': 0.0, 'finetune': 0.0, 'evaluate': 0.0}}


def json_config(cfg) -> dict:
    """The config as plain JSON values (tuples become lists), for config.json and comparisons."""
    return json.loads(json.dumps(cfg.to_dict(), default=list))


def run(cfg, seeds: int, run_dir: str, quiet: bool = False, resume: bool = False, dataset=None,
        pretrained: dict | None = None, on_saved=None):
    """The whole run, or its rest from the latest checkpoint in run_dir when `resume`.

    `pretrained` (read_pretrained) takes another run's pretrained agent instead of pretraining: its
    pretraining records open this run's metrics.jsonl and history, its wall-clock is not counted here.
    `on_saved(step)` is called after each checkpoint save has started (the crash-recovery tests use it).

    Phases: pretrain (methods with an offline algorithm) -> warmup -> fine-tune. `dataset` is the host
    Dataset (load_dataset) for the methods that use one. Writes config.json, metrics.jsonl,
    summary.json, TensorBoard events, policies/ and checkpoints/ (process 0 writes the files; every
    process writes its shards of a checkpoint). Returns (summary dict, final OnlineState with a leading
    seed axis). Raises Preempted on SIGTERM, Diverged when a metric is not finite.
    """
    import jax
    import numpy as np

    from wsrl_mjx import parallel
    from wsrl_mjx.checkpoint import Checkpointer
    from wsrl_mjx.config import method
    from wsrl_mjx.data.policies import save_actor
    from wsrl_mjx.envs import normalized_score
    from wsrl_mjx.metrics import RunWriter, progress_bar, to_python
    from wsrl_mjx.pipeline import offline
    from wsrl_mjx.pipeline.programs import compile_online_programs, compile_pretrain_programs, pretrain_state_shape
    from wsrl_mjx.plot import plot_runs

    lead = jax.process_index() == 0
    m = method(cfg)
    if (m.pretrain is not None or m.offline_ratio > 0) and dataset is None:
        raise ValueError(f'method {cfg.method} needs a dataset (train.load_dataset)')
    rows = len(dataset) if dataset is not None else 0
    os.makedirs(run_dir, exist_ok=True)
    checkpointer = Checkpointer(run_dir, max_to_keep=cfg.checkpoint_keep) if cfg.checkpoint_interval else None

    tic = time.perf_counter()
    if lead and not quiet:  # XLA prints nothing while it works, and a first run's compile takes minutes
        print('compiling the run\'s programs (1-5 minutes on a 2-core CPU the first time; cached on disk '
              'for later runs) ...', flush=True)
    spec = program_spec(cfg, seeds, rows)
    progs = compile_online_programs(spec)
    pspec = pretrain_spec(cfg, seeds, rows)
    host = checkpointer.read_host(checkpointer.latest_step()) if resume else None
    # The pretraining programs only when this process will pretrain (not when resuming after it).
    pretraining = pspec is not None and pretrained is None and (host is None or host['phase'] == 'pretrain')
    pprogs = compile_pretrain_programs(pspec) if pretraining else None

    run_key, agent_key, eval_key, pretrain_key = seed_keys(cfg, seeds)
    if resume:
        step = checkpointer.latest_step()
        like = pprogs.state_shape if host['phase'] == 'pretrain' else progs.state_shape
        (state, eval_key), host = checkpointer.restore(step, (like, progs.state_shape.key))
        host['metrics_lines'] = _truncate_metrics(run_dir, host['metrics_lines']) if lead else host['metrics_lines']
        config = json_config(cfg)
        if host['config'] != config:  # a longer online_steps (the only difference parse_args lets by)
            host['config'] = config
            if lead:
                _write_json(os.path.join(run_dir, 'config.json'), {
                    'config': host['config'], 'seeds': seeds,
                    **({'pretrained_from': host['pretrained_from']} if host.get('pretrained_from') else {})})
    else:
        host = _fresh_host(cfg, seeds, pspec is not None)
        host['pretrained_from'] = pretrained['source'] if pretrained else None
        if lead:
            _write_json(os.path.join(run_dir, 'config.json'), {
                'config': host['config'], 'seeds': seeds,
                **({'pretrained_from': pretrained['source']} if pretrained else {})})
        # Every process computes every seed's keys and initial agent (cheap), then keeps its own shards.
        if pretrained is not None:
            # The evaluation keys go on from the source's: its evaluations during pretraining used some.
            source = Checkpointer(pretrained['source'], asynchronous=False, subdir=PRETRAINED)
            (state, eval_key), _ = source.restore(pretrained['step'], (pretrain_state_shape(pspec), progs.state_shape.key))
            source.close()
        elif pprogs is not None:
            state = pprogs.init(pretrain_key, pprogs.init_agent(agent_key))
        else:
            state = progs.init(run_key, progs.init_agent(agent_key))
        eval_key = parallel.put(eval_key, progs.sharding)
    data = None
    if dataset is not None and (pprogs is not None or m.offline_ratio > 0):
        data = offline.from_dataset(dataset, cfg.agent.discount, cfg.pretrain.reward_scale, cfg.pretrain.reward_bias,
                                    sharding=pprogs.data_sharding if pprogs else parallel.replicated(progs.sharding.mesh))
    jax.block_until_ready(state)
    wall = host['wall']
    wall['compile'] += time.perf_counter() - tic
    writer = RunWriter(run_dir, purge_step=_purge_step(host, cfg) if resume else None) if lead else None
    history = host['history']
    stop = _StopFlag()

    def write(record: dict) -> None:
        if lead:
            writer.write(record)
        host['metrics_lines'] += 1
        bad = non_finite(record)
        if bad is not None:
            saved = checkpointer.latest_step() if checkpointer is not None else None
            raise Diverged(f"training diverged: {bad} is not finite in the {record['phase']} record at step "
                           f"{record['step']} (metrics.jsonl); the run stopped there"
                           + (f', its last checkpoint is {saved}' if saved is not None else ''))

    def evaluate_now(actor, step: int, phase: str) -> None:
        nonlocal eval_key
        tic = time.perf_counter()
        eval_key, this_key = _split_keys(eval_key)
        returns = parallel.gather(progs.evaluate(actor, this_key)).mean(axis=1)
        wall['evaluate'] += time.perf_counter() - tic
        record = to_python({'phase': phase, 'step': step, 'return': returns,
                            'normalized_score': normalized_score(cfg.env, returns)})
        write(record)
        history.append(record)
        actors = parallel.gather(actor)
        tag = f'pretrain{step:07d}' if phase == 'pretrain' else f'step{step:07d}'
        for s in range(seeds) if lead else ():
            # Every evaluated actor is kept (a few hundred kB): behaviour policies are picked from these.
            save_actor(os.path.join(run_dir, 'policies', f'seed{cfg.seed + s}_{tag}.npz'),
                       jax.tree.map(lambda x: x[s], actors), {
                           'env': cfg.env, 'seed': cfg.seed + s, 'phase': phase, 'step': step, 'config': cfg.name,
                           'return': record['return'][s], 'normalized_score': record['normalized_score'][s],
                           'log_std_min': spec.online.agent.log_std_min,
                           'log_std_max': spec.online.agent.log_std_max})

    def chunk_record(phase: str, metrics, seconds: float, transitions: int, updates: int, step: int) -> dict:
        metrics = parallel.gather(metrics)
        record = {'phase': phase, 'step': step}
        if phase != 'pretrain':
            episodes = metrics.episodes
            record['train_return'] = np.where(episodes > 0, metrics.episode_return_sum / np.maximum(episodes, 1),
                                              np.nan)
            metrics = metrics.losses
        return {**record, **metrics, 'env_steps_per_s': seeds * transitions / seconds,
                'updates_per_s': seeds * updates / seconds}

    def checkpoint(step: int) -> None:
        if checkpointer is None:
            return
        checkpointer.save(step, (state, eval_key), json.loads(json.dumps(host)))
        if on_saved is not None:
            on_saved(step)

    def score() -> str:
        return f"score {np.mean(history[-1]['normalized_score']):.1f}"

    try:
        with stop, progress_bar(disable=quiet or not lead) as bar:
            if host['phase'] == 'pretrain':
                p = cfg.pretrain
                chunks = p.steps // p.log_interval
                task = bar.add_task(f'{cfg.name} pretrain {pspec.algo} x{seeds}', total=p.steps,
                                    completed=host['pretrain_chunks_done'] * p.log_interval, speed='', score='')
                if pretrained is not None:  # another run's pretraining: its records, then the phase change
                    for record in pretrained['records']:
                        write(record)
                        if 'normalized_score' in record:
                            history.append(record)
                    host['pretrain_chunks_done'] = chunks
                    bar.update(task, completed=p.steps, score=score())
                for chunk in range(host['pretrain_chunks_done'] + 1, chunks + 1):
                    if stop.requested:
                        break
                    tic = time.perf_counter()
                    state, metrics = pprogs.train(state, data)
                    jax.block_until_ready(state)
                    seconds = time.perf_counter() - tic
                    wall['pretrain'] += seconds
                    host['pretrain_chunks_done'] = chunk
                    record = chunk_record('pretrain', metrics, seconds, 0, p.log_interval, chunk * p.log_interval)
                    write(record)
                    last = chunk == chunks
                    evaluated = chunk % (p.eval_interval // p.log_interval) == 0 or last
                    if evaluated:
                        evaluate_now(state.agent.actor, chunk * p.log_interval, 'pretrain')
                        bar.update(task, score=score())
                    if (evaluated or stop.requested) and not last:  # the last one is saved at the phase change
                        checkpoint(_checkpoint_step(host, cfg))
                    bar.update(task, completed=chunk * p.log_interval, speed=f"{record['updates_per_s']:.0f} updates/s")
                if host['pretrain_chunks_done'] == chunks:
                    # Phase change: the pretrained agent is kept for runs that start from it (--pretrained_from);
                    # the online state takes it unchanged; the offline data leaves the device unless the
                    # method keeps training on it.
                    if pretrained is None:
                        save_pretrained(run_dir, (state, eval_key), host['config'], seeds,
                                        _metrics_lines(run_dir, host, lead), wall['pretrain'])
                    state = hand_over(state, progs, run_key, spec, pspec)
                    if m.offline_ratio == 0 and data is not None:
                        data.delete()
                        data = None
                    host['phase'] = 'online'
                    checkpoint(_checkpoint_step(host, cfg))
                bar.remove_task(task)

            task = bar.add_task(f'{cfg.name} {cfg.env} x{seeds}', total=cfg.online_steps, completed=host['step'],
                                speed='', score='')
            extra = (data,) if m.offline_ratio > 0 else ()
            k = spec.plan.warmup_iterations * cfg.num_envs
            if host['phase'] == 'online' and not host['warmup_done'] and not stop.requested:
                if progs.warmup is not None:
                    tic = time.perf_counter()
                    state, metrics = progs.warmup(state)
                    jax.block_until_ready(state)
                    wall['warmup'] = time.perf_counter() - tic
                    write(chunk_record('warmup', metrics, wall['warmup'], k, 0, k))
                evaluate_now(state.agent.actor, k, 'warmup')
                host['step'], host['warmup_done'] = k, True
                if k > 0:  # without warmup the state is the phase change's, saved under the same number
                    checkpoint(_checkpoint_step(host, cfg))
                bar.update(task, completed=host['step'], score=score())
            every = cfg.checkpoint_interval // cfg.log_interval
            for chunk in range(host['chunks_done'] + 1, spec.plan.chunks + 1):
                if stop.requested or host['phase'] != 'online':
                    break
                tic = time.perf_counter()
                state, metrics = progs.train(state, *extra)
                jax.block_until_ready(state)
                seconds = time.perf_counter() - tic
                wall['finetune'] += seconds
                host['step'] += cfg.log_interval
                host['chunks_done'] = chunk
                # Critic updates per env step: SAC's critic_steps; the offline algorithms continued online do one.
                per_step = spec.online.critic_steps
                write(chunk_record('finetune', metrics, seconds, cfg.log_interval,
                                   spec.plan.chunk_iterations * per_step, host['step']))
                last = chunk == spec.plan.chunks
                if chunk % spec.plan.eval_every_chunks == 0 or last:
                    evaluate_now(state.agent.actor, host['step'], 'finetune')
                    bar.update(task, score=score())
                if every and (chunk % every == 0 or last or stop.requested):
                    checkpoint(_checkpoint_step(host, cfg))
                bar.update(task, completed=host['step'],
                           speed=f"{cfg.log_interval * seeds / max(seconds, 1e-9):.0f} steps/s")
    finally:  # also when the run stops on an error: saves finish, files close, device data is freed
        if data is not None:
            data.delete()
        if checkpointer is not None:
            checkpointer.wait()
            checkpointer.close()
        if writer is not None:
            writer.close()
    if host['chunks_done'] < spec.plan.chunks:
        raise Preempted(host['step'] if host['phase'] == 'online' else host['pretrain_chunks_done'] *
                        cfg.pretrain.log_interval, saved=checkpointer is not None)

    summary = _summary(cfg, seeds, history, wall, dataset)
    if host.get('pretrained_from'):
        summary['pretrained_from'] = host['pretrained_from']
    if lead:
        _write_json(os.path.join(run_dir, 'summary.json'), summary)
        plot_runs([run_dir], os.path.join(run_dir, 'curves.png'), title=f'{cfg.name}: {cfg.method} on {cfg.env}')
    return summary, state


def save_pretrained(run_dir: str, state, config: dict, seeds: int, records: list, seconds: float) -> None:
    """Saves (pretraining state (agent, key, update counter), evaluation keys [S]) under
    <run_dir>/pretrained/<updates>, with
    the config (as json_config) that pretrained it, its seed count, the records of its pretraining
    (metrics.jsonl lines) and its seconds of updates: what read_pretrained checks and a run copies."""
    from wsrl_mjx.checkpoint import Checkpointer

    saver = Checkpointer(run_dir, max_to_keep=1, asynchronous=False, subdir=PRETRAINED)
    saver.save(config['pretrain']['steps'], state, {'config': config, 'seeds': seeds, 'records': records,
                                                    'wall_pretrain_s': seconds})
    saver.wait()
    saver.close()


def _metrics_lines(run_dir: str, host: dict, lead: bool) -> list:
    """The records this run wrote so far (process 0's metrics.jsonl; other processes: none)."""
    path = os.path.join(run_dir, 'metrics.jsonl')
    if not lead or not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f.readlines()[:host['metrics_lines']]]


def _write_json(path: str, obj) -> None:
    """Writes `obj` to `path` atomically: a reader sees the old file or the new one, never half of one."""
    tmp = f'{path}.{os.getpid()}.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def hand_over(pretrain_state, progs, run_key, spec, pspec):
    """The online phase's first state: the pretrained agent, unchanged (IQL's becomes a SAC state with a
    fresh temperature unless IQL itself continues online), an empty buffer and freshly reset envs."""
    import jax

    from wsrl_mjx.agents import registry

    agent = pretrain_state.agent
    if spec.online.update == 'sac':  # else the offline algorithm goes on with its own state
        agent = jax.vmap(lambda a: registry.get(pspec.algo).to_sac(a, spec.online.agent))(agent)
    return progs.init(run_key, agent)


def _checkpoint_step(host: dict, cfg) -> int:
    """A checkpoint's number: pretraining updates + online env steps (per seed) done, always increasing."""
    return host['pretrain_chunks_done'] * cfg.pretrain.log_interval + host['step']


def _purge_step(host: dict, cfg) -> int | None:
    """On resume, TensorBoard hides the events at and after this step (they are written again). One
    step applies to every tag, so it is only used where it cannot hide the other phase's events; the
    exact record is metrics.jsonl, which is cut back to the checkpoint."""
    pretrained = host['pretrain_chunks_done'] * cfg.pretrain.log_interval
    if host['phase'] == 'pretrain':
        return pretrained
    return host['step'] if host['step'] >= pretrained else None


def _summary(cfg, seeds: int, history: list, wall: dict, dataset=None) -> dict:
    import numpy as np

    from wsrl_mjx.config import warmup_steps
    from wsrl_mjx.data.dataset import summarize

    def scores(phase):
        found = [r for r in history if r['phase'] == phase]
        return found[-1]['normalized_score'] if found else None

    final = np.asarray(history[-1]['normalized_score'])
    return {
        'env': cfg.env, 'method': cfg.method, 'dataset': cfg.dataset if cfg.method not in ('scratch',) else None,
        'seeds': list(range(cfg.seed, cfg.seed + seeds)), 'online_steps': cfg.online_steps,
        'normalized_score': final.tolist(),
        'normalized_score_mean': float(final.mean()), 'normalized_score_std': float(final.std()),
        'return': list(history[-1]['return']),
        'normalized_score_offline': scores('pretrain'),
        'normalized_score_after_warmup': scores('warmup'),
        'warmup_steps': warmup_steps(cfg),
        # The behaviour the offline data came from: mean over the dataset's finished episodes.
        'dataset_normalized_score': (summarize(dataset, cfg.env).get('normalized_score_mean')
                                     if dataset is not None else None),
        'wall_clock_s': {k: round(v, 3) for k, v in wall.items()},
    }


def _split_keys(keys):
    """Per-seed split of typed keys [S] -> (next keys [S], keys to use now [S])."""
    import jax

    split = jax.vmap(jax.random.split)(keys)  # [S, 2]; sliced, not iterated: it may span processes
    return split[:, 0], split[:, 1]


def _truncate_metrics(run_dir: str, lines: int) -> int:
    """Drops metrics.jsonl lines written after the checkpoint being resumed (they will be written again)."""
    path = os.path.join(run_dir, 'metrics.jsonl')
    with open(path) as f:
        kept = f.readlines()[:lines]
    with open(f'{path}.tmp', 'w') as f:
        f.writelines(kept)
    os.replace(f'{path}.tmp', path)
    return len(kept)


class _StopFlag:
    """While active, SIGTERM only sets `requested`: the run stops at the next chunk boundary, saved."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False


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
    except parallel.ParallelError as e:
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
    title = f"{summary['method']} on {summary['env']}, {seeds} seed{'s' if seeds > 1 else ''}: D4RL-normalised score"
    width = max(len(name) for name, _ in rows)
    return '\n'.join([title] + [f'  {name:<{width}}  {cell(scores)}' for name, scores in rows])


if __name__ == '__main__':
    main(sys.argv)
