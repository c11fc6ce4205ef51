"""Checkpoints and --resume on the smoke config: a run killed with SIGKILL, resumed, stopped by SIGTERM
and resumed again equals the uninterrupted run (the session's smoke_run) bit for bit; half-written
checkpoints and mismatched configs are handled.

The subprocesses load the programs the smoke_run fixture compiled from the session's XLA cache.
"""
import json
import os
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import REPO
from wsrl_mjx import train
from wsrl_mjx.checkpoint import Checkpointer
from wsrl_mjx.pipeline.programs import compile_online_programs

TIMING = ('env_steps_per_s', 'updates_per_s')


def cli(args, env=None, timeout=600):
    return subprocess.run([sys.executable, '-m', 'wsrl_mjx.train', '--quiet', *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def metrics(run_dir):
    with open(os.path.join(run_dir, 'metrics.jsonl')) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f]


def restore_final(cfg, run_dir, seeds=2):
    progs = compile_online_programs(train.program_spec(cfg, seeds))
    checkpointer = Checkpointer(run_dir)
    step = checkpointer.latest_step()
    (state, _), host = checkpointer.restore(step, (progs.state_shape, progs.state_shape.key))
    checkpointer.close()
    return step, state, host


@pytest.fixture(scope='module')
def killed_run(smoke_run, tmp_path_factory):
    """The smoke run (2 seeds) started from the CLI and SIGKILLed right after its save at 240 began
    (checkpoints are numbered by pretraining updates + online env steps: 40 + 200)."""
    run_dir = str(tmp_path_factory.mktemp('killed') / 'run')
    result = cli(['--config=configs/locomotion.py:smoke', '--seeds=2', f'--run_dir={run_dir}'],
                 env={'WSRL_MJX_SIGNAL_AFTER_SAVE': '240:KILL'})
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    return run_dir


def test_killed_run_resumes_to_the_same_metrics_and_parameters(smoke_run, killed_run, tmp_path):
    cfg, full_dir, _, full_state, _ = smoke_run
    run_dir = str(tmp_path / 'run')
    shutil.copytree(killed_run, run_dir)
    assert not os.path.exists(os.path.join(run_dir, 'summary.json'))
    assert train.latest_checkpoint_step(run_dir) in (140, 240)  # 240 if its async save finished in time
    # A save that a kill interrupted: orbax writes into a temporary directory and renames it when done.
    half = os.path.join(run_dir, 'checkpoints', '340.orbax-checkpoint-tmp-1')
    shutil.copytree(os.path.join(run_dir, 'checkpoints', str(train.latest_checkpoint_step(run_dir))), half)
    shutil.rmtree(os.path.join(half, 'state'))

    # Resumed, then preempted by SIGTERM right after the save at 340: it stops cleanly, saved.
    result = cli([f'--run_dir={run_dir}', '--resume'], env={'WSRL_MJX_SIGNAL_AFTER_SAVE': '340:TERM'})
    assert result.returncode == 0 and 'stopped by SIGTERM at step 300' in result.stdout, result.stderr[-2000:]
    assert train.latest_checkpoint_step(run_dir) == 340
    assert not os.path.exists(os.path.join(run_dir, 'summary.json'))
    result = cli([f'--run_dir={run_dir}', '--resume'])
    assert result.returncode == 0, result.stderr[-2000:]
    assert metrics(run_dir) == metrics(full_dir)
    with open(os.path.join(run_dir, 'summary.json')) as f, open(os.path.join(full_dir, 'summary.json')) as g:
        resumed, full = json.load(f), json.load(g)
    assert resumed['normalized_score'] == full['normalized_score']
    step, state, host = restore_final(cfg, run_dir)
    assert step == 40 + cfg.online_steps and host['chunks_done'] == 3
    np.testing.assert_array_equal(jax.random.key_data(state.key), jax.random.key_data(full_state.key))
    leaves = jax.tree.leaves((state.agent, state.buffer, state.env, state.env_steps))
    full_leaves = jax.tree.leaves((full_state.agent, full_state.buffer, full_state.env, full_state.env_steps))
    assert len(leaves) == len(full_leaves)
    for a, b in zip(leaves, full_leaves):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_uninterrupted_run_checkpoint_holds_the_final_state(smoke_run):
    cfg, run_dir, _, full_state, _ = smoke_run
    step, state, host = restore_final(cfg, run_dir)
    assert step == 40 + cfg.online_steps and host['warmup_done'] and host['seeds'] == 2
    for a, b in zip(jax.tree.leaves(state.agent), jax.tree.leaves(full_state.agent)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize('args,named', [
    (['--config=configs/locomotion.py:smoke', '--config.agent.batch_size=8'], 'config.agent.batch_size'),
    (['--seeds=3'], '--seeds'),
])
def test_resume_with_another_config_is_refused(killed_run, tmp_path, args, named):
    run_dir = str(tmp_path / 'run')
    shutil.copytree(killed_run, run_dir)
    before = sorted(os.listdir(os.path.join(run_dir, 'checkpoints')))
    result = cli([f'--run_dir={run_dir}', '--resume', *args])
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('error: ') and named in lines[0], result.stderr
    assert sorted(os.listdir(os.path.join(run_dir, 'checkpoints'))) == before


def test_resume_without_checkpoint_is_refused(tmp_path):
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    (run_dir / 'config.json').write_text(json.dumps({'config': {}, 'seeds': 1}))
    result = cli([f'--run_dir={run_dir}', '--resume'], timeout=120)
    assert result.returncode == 2 and 'no finished checkpoint' in result.stderr, result.stderr
