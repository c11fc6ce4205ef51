"""Seeds over devices and processes (marked slow: each device layout compiles the programs again).

  python -m pytest tests -m slow

CPU devices are forced with XLA_FLAGS=--xla_force_host_platform_device_count, and with the entry
points' --cpu_devices flag (which takes precedence over the XLA flag) for the 2-device run. A device runs a vmap
over its 2 seeds in every layout compared here, and every record of the same seeds is the same bit for
bit on one device and on two: wsrl_mjx.optim (Adam's bias correction), parallel.compiler_options (the
dots of MJX's solver) and the package's XLA flag (no FMA contraction, wsrl_mjx/__init__.py) keep XLA's
different optimisation of the partitioned program from rounding differently. Two processes (one device
each) against two devices of one process compare exactly too.
"""
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

pytestmark = pytest.mark.slow
TIMING = ('env_steps_per_s', 'updates_per_s')


def cli(args, devices=1, env=None, timeout=1200):
    env = {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}', **(env or {})}
    return subprocess.Popen([sys.executable, '-m', 'wsrl_mjx.train', '--quiet', *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process, timeout=1200):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return out


def final_scores(records):
    return [r for r in records if 'normalized_score' in r][-1]['normalized_score']


def per_seed_records(run_dir, seeds):
    """metrics.jsonl with every per-seed list cut to `seeds` (timings dropped)."""
    out = []
    with open(os.path.join(run_dir, 'metrics.jsonl')) as f:
        for line in f:
            record = {k: v for k, v in json.loads(line).items() if k not in TIMING}
            out.append({k: v[seeds] if isinstance(v, list) else v for k, v in record.items()})
    return out


@pytest.fixture(scope='module')
def two_devices(smoke_run, tmp_path_factory):
    """The smoke run with 4 seeds split over 2 CPU devices (2 seeds per device) by --cpu_devices=2, in a
    process whose XLA_FLAGS ask for one."""
    run_dir = str(tmp_path_factory.mktemp('devices') / 'run')
    finish(cli(['--config=configs/locomotion.py:smoke', '--seeds=4', '--cpu_devices=2', f'--run_dir={run_dir}'],
               devices=1))  # on one device the 4-seed vmap would round differently from the 2-seed one
    return run_dir


def test_seeds_over_two_devices_equal_one_device(smoke_run, two_devices):
    _, one_device_dir, _, _, _ = smoke_run  # seeds 0 and 1 on one device
    records, reference = per_seed_records(two_devices, slice(0, 2)), per_seed_records(one_device_dir, slice(0, 2))
    assert {r['phase'] for r in reference} == {'pretrain', 'warmup', 'finetune'}
    for record, expected in zip(records, reference, strict=True):
        assert record == expected, (record['phase'], record['step'])
    assert len(set(final_scores(per_seed_records(two_devices, slice(0, 4))))) == 4  # four different seeds


def test_seed_count_must_divide_over_devices(tmp_path):
    process = cli(['--config=configs/locomotion.py:smoke', '--seeds=3', f'--run_dir={tmp_path / "run"}'], devices=2)
    out, err = process.communicate(timeout=300)
    lines = [line for line in err.splitlines() if line.startswith('error:')]
    assert process.returncode == 2 and len(lines) == 1 and '--seeds=3' in lines[0], err[-2000:]
    assert not (tmp_path / 'run').exists()


def test_resume_on_another_device_count(two_devices, tmp_path):
    # The 2-device run's checkpoint at 340 (40 pretraining updates + 300 env steps) continued on
    # 4 devices (1 seed each): the state is restored onto the new layout and the run completes.
    run_dir = str(tmp_path / 'run')
    shutil.copytree(two_devices, run_dir)
    checkpoints = os.path.join(run_dir, 'checkpoints')
    for name in os.listdir(checkpoints):
        if name.isdigit() and int(name) > 340:
            shutil.rmtree(os.path.join(checkpoints, name))
    assert os.path.isdir(os.path.join(checkpoints, '340'))
    finish(cli([f'--run_dir={run_dir}', '--resume'], devices=4))
    with open(os.path.join(run_dir, 'summary.json')) as f:
        resumed = json.load(f)
    assert len(resumed['normalized_score']) == 4 and np.all(np.isfinite(resumed['normalized_score']))


def test_two_processes_equal_one_process(two_devices, tmp_path):
    # Two processes with one CPU device each (2 seeds per device, like the 2-device run) and gloo.
    with socket.socket() as s:
        s.bind(('localhost', 0))
        port = s.getsockname()[1]
    run_dir = str(tmp_path / 'run')
    args = ['--config=configs/locomotion.py:smoke', '--seeds=4', f'--run_dir={run_dir}',
            f'--coordinator_address=localhost:{port}', '--num_processes=2']
    processes = [cli([*args, f'--process_id={i}'], devices=1) for i in range(2)]
    for process in processes:
        finish(process)
    # The same per-device program as the 2-device run: every logged value is equal, not just close.
    assert per_seed_records(run_dir, slice(0, 4)) == per_seed_records(two_devices, slice(0, 4))
