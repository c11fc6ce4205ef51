"""python -m wsrl_mjx.screen: a pretraining curve alone, and a saved state that another run continues."""
import json
import subprocess
import sys

import numpy as np

from conftest import REPO
from wsrl_mjx import train


def screen(*args):
    return subprocess.run([sys.executable, '-m', 'wsrl_mjx.screen', '--config=configs/locomotion.py:smoke',
                           '--episodes=2', *args], cwd=REPO, capture_output=True, text=True, timeout=900)


def records(path):
    return [json.loads(line) for line in open(path)]


def test_curve_save_and_continue(smoke_run, tmp_path):
    # smoke: 40 updates in chunks of 20, evaluated after 40 (the smoke_run fixture made its dataset).
    first, state = tmp_path / 'first.jsonl', tmp_path / 'state'
    result = screen(f'--out={first}', f'--save={state}', '--save_at=40')
    assert result.returncode == 0, result.stderr
    lines = records(first)
    assert [r['step'] for r in lines] == [20, 40]
    assert 'normalized_score' not in lines[0] and len(lines[1]['normalized_score']) == 1
    assert np.isfinite(lines[1]['normalized_score'][0]) and np.all(np.isfinite(lines[1]['critic_loss']))
    assert lines[1]['train_s'] >= lines[0]['train_s'] > 0
    # Saved as a run saves its pretrained agent: a run of the smoke config may start from it.
    cfg = smoke_run[0]
    saved = train.read_pretrained(str(state), cfg, 1)
    assert saved['step'] == 40 and [r['step'] for r in saved['records']] == [20, 40, 40]
    assert saved['records'][-1]['normalized_score'] == lines[1]['normalized_score']

    # Continuing from the saved state numbers its updates on from 40, and differs from a fresh start.
    second = tmp_path / 'second.jsonl'
    result = screen(f'--out={second}', f'--load={state}')
    assert result.returncode == 0, result.stderr
    lines_after = records(second)
    assert [r['step'] for r in lines_after] == [60, 80]
    assert lines_after[0]['critic_loss'] != lines[0]['critic_loss']


def test_load_of_another_shape_is_one_error_line(smoke_run, tmp_path):
    # The smoke run's own pretrained agent (2 seeds, 32x32 critics) loaded into 16x16 critics.
    run_dir = smoke_run[1]
    result = screen(f'--out={tmp_path / "b.jsonl"}', f'--load={run_dir}', '--seeds=2',
                    '--config.agent.critic_hidden=(16,16)')
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('error: --load=') and "this run's state" in lines[0], result.stderr
    result = screen(f'--out={tmp_path / "c.jsonl"}', f'--load={tmp_path / "nothing"}')
    assert result.returncode == 2 and 'no pretrained/' in result.stderr.splitlines()[-1], result.stderr
    assert not (tmp_path / 'nothing').exists() and not (tmp_path / 'c.jsonl').exists()


def test_bad_input_is_one_error_line(tmp_path):
    for args, named in (([], '--out'), ([f'--out={tmp_path / "c.jsonl"}', '--config.pretrain.bc_steps=-1'],
                                        'config.pretrain.bc_steps'),
                        ([f'--out={tmp_path / "c.jsonl"}', '--config.method=rlpd'], 'does not pretrain'),
                        ([f'--out={tmp_path / "c.jsonl"}', f'--save={tmp_path}', '--save_at=40', f'--load={tmp_path}'],
                         '--save with --load'),
                        ([f'--out={tmp_path / "c.jsonl"}', f'--save={tmp_path}', '--save_at=30'], '--save_at=30')):
        result = screen(*args)
        assert result.returncode == 2, result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith('error: ') and named in lines[0], result.stderr
    assert not (tmp_path / 'c.jsonl').exists()
