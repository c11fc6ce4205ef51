"""The entry point: bad input fails fast with one line and exit code 2, writing nothing."""
import subprocess
import sys

import pytest

from conftest import REPO

CASES = [
    (['--config.env=cartpole'], 'config.env'),
    (['--config.nonexistent_key=3'], 'nonexistent_key'),
    (['--config.agent.batch_size=0'], 'config.agent.batch_size'),
    (['--config.buffer_capacity=100', '--config.agent.batch_size=64'], 'config.agent.batch_size'),
    (['--seeds=0'], '--seeds'),
    (['--cpu_devices=0'], '--cpu_devices'),
    (['--seeds=3', '--cpu_devices=2'], '--seeds=3'),
    (['--config=configs/locomotion.py:nope'], 'nope'),
    (['--config.method=nope'], 'config.method'),
    (['--config.pretrain.algo=bc'], 'config.pretrain.algo'),
    (['--config.dataset=hopper-medium'], 'config.dataset'),  # another env's dataset
    (['--config.dataset=README.md'], 'config.dataset'),
    (['--config.dataset=/nonexistent/d4rl.hdf5'], '/nonexistent/d4rl.hdf5'),
    (['--config.env=ant', '--config.dataset=ant-medium'], 'ant-random'),  # no shipped ant policy to make it
]


@pytest.mark.parametrize('args,named', CASES)
def test_bad_input_one_line_exit_2_no_run_dir(tmp_path, args, named):
    run_dir = tmp_path / 'run'
    base = ['--config=configs/locomotion.py:smoke'] if not any(a.startswith('--config=') for a in args) else []
    result = subprocess.run([sys.executable, '-m', 'wsrl_mjx.train', *base, *args, f'--run_dir={run_dir}'],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('error: ') and named in lines[0], result.stderr
    assert not run_dir.exists()


@pytest.mark.parametrize('module,flag', [('wsrl_mjx.train', '--seeds'), ('wsrl_mjx.collect', '--level'),
                                         ('wsrl_mjx.plot', '--out'), ('wsrl_mjx.bench', '--steps'),
                                         ('wsrl_mjx.bench', '--config')])  # the flags bench shares with train
def test_help_prints_usage_and_flags_exit_0(module, flag):
    result = subprocess.run([sys.executable, '-m', module, '--help'], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert f'python -m {module}' in result.stdout
    usage, flags = result.stdout.split('\nflags:\n', 1)
    assert flag in flags and 'error' not in result.stdout.lower()


@pytest.mark.parametrize('args,named', [(['offline', '--buffer_capacity=5000'], '--buffer_capacity'),
                                        (['online', '--buffer_capacity=0'], '--buffer_capacity'),
                                        (['checkpoint', '--rounds=2'], '--rounds'),
                                        (['profile', '--rounds=2'], '--rounds'),
                                        (['checkpoint', '--seeds=2'], '--seeds'),
                                        (['offline', '--cpu_devices=2'], '--seeds=1'),  # one seed, two devices
                                        (['profile', '--seeds=2', '--cpu_devices=2'], '--cpu_devices'),
                                        (['checkpoint', '--config=configs/locomotion.py:default'], '--config'),
                                        (['offline', '--config=configs/locomotion.py:nope'], 'nope'),
                                        (['online', '--config.agent.critic_hidden=(0,)'], 'config.agent.critic_hidden'),
                                        (['online', '--run_dir=x'], '--run_dir'),
                                        (['nope'], 'name one benchmark')])
def test_bench_refuses_flags_its_benchmark_does_not_take(tmp_path, args, named):
    out = tmp_path / 'bench.json'
    result = subprocess.run([sys.executable, '-m', 'wsrl_mjx.bench', *args, f'--out={out}'], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith('error: ') and named in lines[0], result.stderr
    assert not out.exists()


def test_cpu_devices_sets_the_device_count_before_jax_starts():
    # What train, screen and bench do first: parse the flags; the CPU backend then has that many devices.
    code = ('import sys, jax\n'
            'from wsrl_mjx import entry\n'
            'entry.parse_config(sys.argv)\n'
            'print(jax.device_count(), jax.local_device_count("cpu"))')
    result = subprocess.run([sys.executable, '-c', code, '--cpu_devices=2', '--seeds=4'], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['2', '2']
