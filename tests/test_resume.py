"""Checkpoints and --resume on the smoke config: a run killed with SIGKILL, resumed, stopped by SIGTERM
and resumed again equals the uninterrupted run (the session's smoke_run) bit for bit; half-written
checkpoints and mismatched configs are handled.

The killed run is a CLI subprocess (it loads the programs the smoke_run fixture compiled from the
session's XLA cache); the resumes run in this process with the fixture's programs, which keeps the
test run short (a new process traces the MJX programs again before it finds them in the cache). The
CLI's --resume path runs in tests/test_parallel.py (slow) and in the refusals below.
"""
import copy
import dataclasses
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
from wsrl_mjx.checkpoint import Checkpointer, keys_to_data
from wsrl_mjx.experiment import Experiment
from wsrl_mjx.pipeline.programs import compile_online_programs
from wsrl_mjx.runner import StopFlag

TIMING = ('env_steps_per_s', 'updates_per_s')


def cli(args, env=None, timeout=600):
    return subprocess.run([sys.executable, '-m', 'wsrl_mjx.train', '--quiet', *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def metrics(run_dir):
    with open(os.path.join(run_dir, 'metrics.jsonl')) as f:
        return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f]


def restore_final(cfg, run_dir, seeds=2):
    progs = compile_online_programs(Experiment.from_config(cfg, seeds).spec)
    checkpointer = Checkpointer(run_dir)
    step = checkpointer.latest_step()
    (state, _), host = checkpointer.restore(step, (progs.state_shape, progs.state_shape.key))
    checkpointer.close()
    return step, state, host


# The CLI's main, with a run that sends itself a signal right after its save at a given step began.
SIGNAL_AFTER_SAVE = """
import functools, os, signal, sys
from wsrl_mjx import train
at, name = int(sys.argv[1]), sys.argv[2]
send = lambda step: step == at and os.kill(os.getpid(), getattr(signal, 'SIG' + name))
train.run = functools.partial(train.run, on_saved=send)
train.main(['train', '--quiet', *sys.argv[3:]])
"""


@pytest.fixture(scope='module')
def killed_run(smoke_run, tmp_path_factory):
    """The smoke run (2 seeds) started from the CLI and SIGKILLed right after its save at 240 began
    (checkpoints are numbered by pretraining updates + online env steps: 40 + 200)."""
    run_dir = str(tmp_path_factory.mktemp('killed') / 'run')
    result = subprocess.run([sys.executable, '-c', SIGNAL_AFTER_SAVE, '240', 'KILL',
                             '--config=configs/locomotion.py:smoke', '--seeds=2', f'--run_dir={run_dir}'],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    return run_dir


def test_killed_run_resumes_to_the_same_metrics_and_parameters(smoke_run, killed_run, tmp_path, monkeypatch):
    cfg, full_dir, _, full_state, dataset = smoke_run
    run_dir = str(tmp_path / 'run')
    shutil.copytree(killed_run, run_dir)
    assert not os.path.exists(os.path.join(run_dir, 'summary.json'))
    assert train.latest_checkpoint_step(run_dir) in (140, 240)  # 240 if its async save finished in time
    # A save that a kill interrupted: orbax writes into a temporary directory and renames it when done.
    half = os.path.join(run_dir, 'checkpoints', '340.orbax-checkpoint-tmp-1')
    shutil.copytree(os.path.join(run_dir, 'checkpoints', str(train.latest_checkpoint_step(run_dir))), half)
    shutil.rmtree(os.path.join(half, 'state'))

    # Resumed (in this process, with the programs the fixture compiled), then preempted by SIGTERM
    # right after the save at 340: the run stops at the chunk boundary, saved.
    def terminate(step):
        if step == 340:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(train.Preempted) as stopped:
        train.run(cfg, 2, run_dir, quiet=True, resume=True, dataset=dataset, on_saved=terminate)
    assert stopped.value.step == 300 and stopped.value.saved and train.latest_checkpoint_step(run_dir) == 340
    assert not os.path.exists(os.path.join(run_dir, 'summary.json'))
    summary, state = train.run(cfg, 2, run_dir, quiet=True, resume=True, dataset=dataset)

    assert metrics(run_dir) == metrics(full_dir)
    with open(os.path.join(full_dir, 'summary.json')) as f:
        full = json.load(f)
    assert summary['normalized_score'] == full['normalized_score']
    for a, b in zip(jax.tree.leaves(keys_to_data(state)), jax.tree.leaves(keys_to_data(full_state)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    step, restored, host = restore_final(cfg, run_dir)
    assert step == 40 + cfg.online_steps and host['chunks_done'] == 3
    for a, b in zip(jax.tree.leaves(restored.agent), jax.tree.leaves(full_state.agent), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_uninterrupted_run_checkpoint_holds_the_final_state(smoke_run):
    cfg, run_dir, _, full_state, _ = smoke_run
    step, state, host = restore_final(cfg, run_dir)
    assert step == 40 + cfg.online_steps and host['warmup_done'] and host['seeds'] == 2
    for a, b in zip(jax.tree.leaves(state.agent), jax.tree.leaves(full_state.agent)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_finished_run_continued_to_more_steps_equals_the_longer_run(smoke_run, tmp_path):
    cfg, full_dir, _, _, dataset = smoke_run
    longer = copy.deepcopy(cfg)
    longer.online_steps = cfg.online_steps + cfg.log_interval
    run_dir = str(tmp_path / 'continued')
    shutil.copytree(full_dir, run_dir)
    _, continued = train.run(longer, 2, run_dir, quiet=True, resume=True, dataset=dataset)
    reference_dir = str(tmp_path / 'longer')
    _, reference = train.run(longer, 2, reference_dir, quiet=True, dataset=dataset)

    records = metrics(run_dir)
    assert records[-1]['step'] == longer.online_steps and records == metrics(reference_dir)
    for a, b in zip(jax.tree.leaves(continued.agent), jax.tree.leaves(reference.agent), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with open(os.path.join(run_dir, 'config.json')) as f:
        assert json.load(f)['config']['online_steps'] == longer.online_steps  # a later --resume matches


@pytest.mark.parametrize('args,named', [
    (['--config=configs/locomotion.py:smoke', '--config.agent.batch_size=8'], 'config.agent.batch_size'),
    (['--seeds=3'], '--seeds'),
    (['--config.online_steps=300'], 'config.online_steps'),  # shorter: only a longer run may continue
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


def test_run_from_another_runs_pretraining_equals_the_whole_run(smoke_run, tmp_path):
    """--pretrained_from: the smoke run's saved pretrained agent, fine-tuned again by a new run, gives the
    same metrics.jsonl (pretraining records copied, online ones computed) and final agent bit for bit."""
    cfg, full_dir, summary, full_state, dataset = smoke_run
    pretrained = train.read_pretrained(full_dir, cfg, 2)
    assert pretrained['step'] == cfg.pretrain.steps
    run_dir = str(tmp_path / 'from_pretrained')
    again, state = train.run(cfg, 2, run_dir, quiet=True, dataset=dataset, pretrained=pretrained)
    assert metrics(run_dir) == metrics(full_dir)
    for a, b in zip(jax.tree.leaves(state.agent), jax.tree.leaves(full_state.agent), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert again['normalized_score_offline'] == summary['normalized_score_offline']
    assert again['pretrained_from'] == os.path.abspath(full_dir) and again['wall_clock_s']['pretrain'] == 0.0


@pytest.mark.parametrize('args,named', [
    (['--config.pretrain.steps=80'], 'config.pretrain.steps=80'),
    (['--config.seed=3'], 'config.seed=3'),
    (['--seeds=1'], '--seeds=1'),
    (['--config.method=rlpd'], 'does not pretrain'),
    (['--resume'], '--resume'),
])
def test_pretrained_from_another_pretraining_is_refused(smoke_run, tmp_path, args, named):
    _, full_dir, _, _, _ = smoke_run
    run_dir = tmp_path / 'run'
    result = cli(['--config=configs/locomotion.py:smoke', '--seeds=2', f'--run_dir={run_dir}',
                  f'--pretrained_from={full_dir}', *args], timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip() and 'warp' not in line
             and not line.startswith('WARNING')]
    assert result.returncode == 2 and len(lines) == 1 and named in lines[0], result.stderr
    assert not run_dir.exists()


class _StopAfterChecks(StopFlag):
    """SIGTERM as the run sees it: `requested` turns true at the third time the run looks."""

    def __init__(self):
        super().__init__()
        self.looks = 0

    @property
    def requested(self):
        self.looks += 1
        return self.looks > 2

    @requested.setter
    def requested(self, value):
        pass


def test_sigterm_without_checkpoints_says_nothing_was_saved(smoke_run, tmp_path, monkeypatch, capsys):
    cfg, _, _, _, dataset = smoke_run
    cfg = copy.deepcopy(cfg)
    cfg.checkpoint_interval = 0
    with pytest.raises(train.Preempted) as stopped:
        train.run(cfg, 2, str(tmp_path / 'run'), quiet=True, dataset=dataset, stop=_StopAfterChecks())
    assert not stopped.value.saved and not (tmp_path / 'run' / 'checkpoints').exists()

    # What the CLI makes of it: one error line, the exit status of a SIGTERM, no "checkpoint saved".
    def preempted(*args, **kwargs):
        raise stopped.value

    monkeypatch.setattr(train, 'run', preempted)
    with pytest.raises(SystemExit) as exited:
        train.main(['train', '--config=configs/locomotion.py:smoke', '--config.checkpoint_interval=0', '--seeds=2',
                    f'--run_dir={tmp_path / "cli"}'])
    out, err = capsys.readouterr()
    assert exited.value.code == 128 + signal.SIGTERM, (out, err)
    assert 'nothing saved' in err and 'saved;' not in out + err


def test_non_finite_metric_stops_the_run_and_names_it(smoke_run, tmp_path):
    """A NaN reward in the data makes the pretraining losses NaN: the run writes that record, stops
    with Diverged naming the metric, and leaves no state of it saved."""
    cfg, _, _, _, dataset = smoke_run
    rewards = dataset.rewards.copy()
    rewards[:] = np.nan
    run_dir = tmp_path / 'run'
    with pytest.raises(train.Diverged, match='is not finite in the pretrain record at step 20'):
        train.run(cfg, 2, str(run_dir), quiet=True, dataset=dataclasses.replace(dataset, rewards=rewards))
    lines = (run_dir / 'metrics.jsonl').read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])['step'] == 20
    assert train.latest_checkpoint_step(str(run_dir)) is None
