"""Pretraining curves alone:

  python -m wsrl_mjx.screen --out=FILE.jsonl [--config=FILE:PRESET] [--config.<key>=...] [--seeds=N]

Runs only the pretraining phase of a run's config (the same compiled pretraining program as
`python -m wsrl_mjx.train`, the dataset made or loaded the same way) and evaluates the policy every
`pretrain.eval_interval` updates on `--episodes` deterministic episodes. It compiles no online
program, so a recipe is screened in the time its updates take: the tool behind docs/pretraining.md.
Each line of FILE.jsonl: `step`, `train_s` (seconds of updates so far), the chunk's mean metrics and,
at evaluations, per-seed `normalized_score` lists (mean over the episodes) and `normalized_score_std`
over the episodes of each seed.

`--save=DIR --save_at=N` writes the whole pretraining state after N updates the way a run saves its
pretrained agent (DIR/pretrained/N, with the config of a run of N updates that computes the same
state), so `python -m wsrl_mjx.train --pretrained_from=DIR` fine-tunes it. `--load=DIR` starts from
the state saved in DIR/pretrained (a config with the same shapes; the update counter goes on from the
saved one), so two recipes can be compared from one shared start; such a continued state has no
config of its own, so --load and --save do not go together.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time

from absl import flags

from wsrl_mjx import entry
from wsrl_mjx.cli import UsageError, exit_on_help, fail
from wsrl_mjx.runner import PRETRAINED, save_pretrained

# --config (default: the default preset) and --seeds are the flags train has too (wsrl_mjx.entry).
_OUT = flags.DEFINE_string('out', None, 'Write the curve here (JSON lines).')
_EPISODES = flags.DEFINE_integer('episodes', 10, 'Deterministic episodes per evaluation and seed.')
_SAVE = flags.DEFINE_string('save', None, 'Checkpoint the pretraining state into this directory (with --save_at).')
_SAVE_AT = flags.DEFINE_integer('save_at', None, 'Updates after which --save writes the state.')
_LOAD = flags.DEFINE_string('load', None, 'Start from the pretraining state saved in this directory (DIR/pretrained).')


def main(argv: list[str]) -> None:
    exit_on_help(argv, __doc__)
    from wsrl_mjx.config import method

    try:
        cfg, seeds = entry.parse_config(argv)  # the same flags, validation and error lines as train's
        from wsrl_mjx import parallel

        parallel.check_seeds(seeds)
    except UsageError as e:
        fail(str(e))
    if not _OUT.value:
        fail('--out is required: the JSON-lines file of the curve')
    if _EPISODES.value < 1:
        fail(f'--episodes={_EPISODES.value} is not allowed: a positive integer')
    if (_SAVE.value is None) != (_SAVE_AT.value is None):
        fail('--save and --save_at go together')
    if _SAVE.value is not None and _LOAD.value is not None:
        fail('--save with --load: a state continued from another has no config of its own to be saved with')
    if _SAVE_AT.value is not None and not (0 < _SAVE_AT.value <= cfg.pretrain.steps
                                           and _SAVE_AT.value % cfg.pretrain.log_interval == 0):
        fail(f'--save_at={_SAVE_AT.value} is not allowed: a multiple of config.pretrain.log_interval='
             f'{cfg.pretrain.log_interval} up to config.pretrain.steps={cfg.pretrain.steps}')
    if method(cfg).pretrain is None:
        fail(f'config.method={cfg.method} does not pretrain')

    import jax
    import numpy as np

    from wsrl_mjx.checkpoint import Checkpointer, CheckpointMismatch
    from wsrl_mjx.config import json_config
    from wsrl_mjx.envs import make_env, normalized_score
    from wsrl_mjx.envs.registry import ENV_SPECS
    from wsrl_mjx.experiment import Experiment
    from wsrl_mjx.pipeline import evaluate, offline
    from wsrl_mjx.pipeline.programs import compile_pretrain_programs

    entry.enable_compilation_cache()
    try:
        dataset = entry.load_dataset(cfg, quiet=True)
    except UsageError as e:
        fail(str(e))
    p = cfg.pretrain
    experiment = Experiment.from_config(cfg, seeds, len(dataset))
    spec = experiment.pretrain_spec
    env = make_env(cfg.env, cfg.episode_length)
    tic = time.perf_counter()
    progs = compile_pretrain_programs(spec)
    evaluate_fn = jax.jit(jax.vmap(functools.partial(evaluate.evaluate, env=env, cfg=spec.algo_cfg.sac,
                                                     episodes=_EPISODES.value)))
    _, agent_key, eval_key, pretrain_key = experiment.keys()
    state = progs.init(pretrain_key, progs.init_agent(agent_key))
    if _LOAD.value:
        if not os.path.isdir(os.path.join(_LOAD.value, PRETRAINED)):
            fail(f'--load={_LOAD.value}: no {PRETRAINED}/ directory there (written by --save or by a run)')
        checkpoints = Checkpointer(_LOAD.value, subdir=PRETRAINED)
        step = checkpoints.latest_step()
        if step is None:
            fail(f'--load={_LOAD.value}: no finished save in {checkpoints.directory}')
        try:
            (state, _), _ = checkpoints.restore(step, (state, eval_key))  # this screen's own evaluation keys
        except CheckpointMismatch as e:
            fail(f'--load={_LOAD.value}: {e}')
        checkpoints.close()
    data = offline.from_dataset(dataset, cfg.agent.discount, cfg.reward_scale, cfg.reward_bias,
                                sharding=progs.data_sharding, failure_reward=ENV_SPECS[cfg.env].failure_reward)
    jax.block_until_ready(evaluate_fn(state.agent.actor, eval_key))
    print(f'compiled in {time.perf_counter() - tic:.0f} s', flush=True)
    start = int(np.asarray(state.updates).reshape(-1)[0])
    seconds = 0.0
    records = []  # as a run writes them, for --save
    with open(_OUT.value, 'w') as out:
        for chunk in range(1, p.steps // p.log_interval + 1):
            tic = time.perf_counter()
            state, metrics = progs.train(state, data)
            jax.block_until_ready(state)
            chunk_s = time.perf_counter() - tic
            seconds += chunk_s
            step = start + chunk * p.log_interval
            losses = {k: np.asarray(v).tolist() for k, v in metrics.items()}
            record = {'step': step, 'train_s': round(seconds, 2), **losses}
            records.append({'phase': 'pretrain', 'step': step, **losses, 'env_steps_per_s': 0.0,
                            'updates_per_s': seeds * p.log_interval / chunk_s})
            if (chunk * p.log_interval) % p.eval_interval == 0:
                eval_key = jax.vmap(lambda k: jax.random.fold_in(k, step))(eval_key)
                returns = np.asarray(evaluate_fn(state.agent.actor, eval_key))
                scores = np.asarray(normalized_score(cfg.env, returns))
                record['normalized_score'] = scores.mean(axis=1).tolist()
                record['normalized_score_std'] = scores.std(axis=1).tolist()
                records.append({'phase': 'pretrain', 'step': step, 'return': returns.mean(axis=1).tolist(),
                                'normalized_score': record['normalized_score']})
                print(f"{step} updates ({seconds:.0f} s): score {np.mean(record['normalized_score']):.1f}", flush=True)
            out.write(json.dumps(record) + '\n')
            out.flush()
            if _SAVE.value and step == _SAVE_AT.value:
                config = json_config(cfg)  # the run of `step` updates that computes this state
                config['pretrain'] = {**config['pretrain'], 'steps': step, 'bc_steps': min(p.bc_steps, step)}
                save_pretrained(_SAVE.value, (state, eval_key), config, seeds, records, seconds)


if __name__ == '__main__':
    main(sys.argv)
