"""wsrl_mjx.plot on hand-made run directories: intervals, per-seed tables, one figure per dataset."""
import json
import os

import numpy as np
import pytest

from wsrl_mjx import plot


def _run(root, name, dataset, method, offline, online, seed=0, env=None, finished=True):
    """A run directory as training leaves it: config.json, metrics.jsonl, and once it has ended
    summary.json. `dataset` is config.dataset; a run from scratch learns from none."""
    run_dir = os.path.join(root, name)
    os.makedirs(run_dir)
    env = env or dataset.split('-')[0]
    learnt_from = None if method == 'scratch' else dataset
    with open(os.path.join(run_dir, 'config.json'), 'w') as f:
        json.dump({'config': {'dataset': dataset, 'method': method, 'env': env, 'seed': seed},
                   'seeds': len(online[0]), 'dataset': learnt_from}, f)
    with open(os.path.join(run_dir, 'metrics.jsonl'), 'w') as f:
        if offline is not None:
            f.write(json.dumps({'phase': 'pretrain', 'step': 100, 'normalized_score': offline}) + '\n')
        for i, scores in enumerate(online):
            f.write(json.dumps({'phase': 'online', 'step': 1000 * (i + 1), 'normalized_score': scores}) + '\n')
    if finished:
        with open(os.path.join(run_dir, 'summary.json'), 'w') as f:
            json.dump({'env': env, 'method': method, 'dataset': learnt_from,
                       'seeds': list(range(seed, seed + len(online[0]))), 'dataset_normalized_score': 42.0}, f)
    return run_dir


def test_mean_interval_brackets_the_mean_and_collapses_on_equal_seeds():
    mean, low, high = plot.mean_interval(np.array([[5.0, 5.0, 5.0], [0.0, 10.0, 20.0]]), samples=500)
    assert mean.tolist() == [5.0, 10.0]
    assert low[0] == high[0] == 5.0  # every redraw of equal seeds has the same mean
    assert 0.0 <= low[1] < 10.0 < high[1] <= 20.0
    # Against the normal approximation: with many seeds the interval of the mean is mean +- 1.96 std / sqrt(n).
    values = np.random.default_rng(3).normal(50.0, 10.0, size=400)
    mean, low, high = plot.mean_interval(values, samples=4000)
    half = 1.96 * values.std() / np.sqrt(values.size)
    np.testing.assert_allclose([low, high], [mean - half, mean + half], atol=0.15 * half)


def test_seed_table_has_each_seeds_offline_warmup_lowest_and_final(tmp_path):
    run_dir = _run(str(tmp_path), 'a', 'hopper-medium', 'wsrl', [30.0, 40.0],
                   [[20.0, 35.0], [10.0, 50.0], [25.0, 45.0]], seed=3)
    rows = [line.split() for line in plot.seed_table([run_dir]).splitlines()[1:]]
    assert rows == [['wsrl', 'hopper', '3', '30.0', '20.0', '10.0', '25.0'],
                    ['wsrl', 'hopper', '4', '40.0', '35.0', '35.0', '45.0']]
    row = plot.score_table([run_dir]).splitlines()[1].split()
    # seeds, data, offline, warmup, lowest (of the mean) and its step, back at 90% of offline, final
    assert row[2:10] == ['2', '42.0', '35.0', '27.5', '27.5', '1000', '3000', '35.0']


def test_recovery_step_is_the_first_step_after_the_dip_back_at_90_percent_of_offline():
    steps = np.array([0, 10, 20, 30, 40])
    assert plot.recovery_step(steps, np.array([50.0, 10.0, 44.0, 46.0, 20.0]), 50.0) == 30  # 44 < 45 <= 46
    assert plot.recovery_step(steps, np.array([50.0, 48.0, 46.0, 47.0, 49.0]), 50.0) == 20  # never below 45
    assert plot.recovery_step(steps, np.array([50.0, 10.0, 44.0, 40.0, 30.0]), 50.0) is None  # never back
    assert plot.recovery_step(steps, np.array([50.0, 10.0, 44.0, 46.0, 20.0]), None) is None  # no offline score
    assert plot.recovery_step(steps, np.array([0.0, 0.0, 10.0, 0.0, 0.0]), 0.0) is None  # nothing to recover


def test_figure_marks_the_dataset_and_the_offline_score_once(tmp_path):
    root = str(tmp_path)
    runs = [_run(root, 'a', 'hopper-medium', 'wsrl', [30.0, 40.0], [[20.0, 35.0]]),
            _run(root, 'b', 'hopper-medium', 'no_warmup', [30.0, 40.0], [[10.0, 15.0]]),
            _run(root, 'c', 'hopper-medium', 'rlpd', None, [[5.0, 6.0]])]
    labels = plot.plot_runs(runs, os.path.join(root, 'f.png'))
    assert labels == ['wsrl hopper (2 seeds)', 'no_warmup hopper (2 seeds)', 'rlpd hopper (2 seeds)',
                      'its dataset (42.0)', 'offline (35.0)']


def test_plot_writes_one_figure_per_dataset(tmp_path, capsys):
    root = str(tmp_path)
    runs = [_run(root, 'h1', 'hopper-medium', 'wsrl', [30.0, 40.0], [[20.0, 35.0], [25.0, 45.0]]),
            _run(root, 'h2', 'hopper-medium', 'rlpd', None, [[5.0, 6.0], [30.0, 31.0]]),
            _run(root, 'w1', 'walker2d-medium', 'wsrl', [50.0, 52.0], [[40.0, 41.0], [60.0, 61.0]]),
            # From scratch on walker2d, the default dataset's name kept in its config.
            _run(root, 'w2', 'halfcheetah-medium', 'scratch', None, [[1.0, 2.0], [3.0, 4.0]], env='walker2d')]
    out = os.path.join(root, 'fig.png')
    with pytest.raises(SystemExit) as e:
        from absl import app
        app.run(plot.main, argv=['plot', f'--out={out}', *runs])
    assert e.value.code in (None, 0)
    assert sorted(os.listdir(root)) == ['fig_hopper_medium.png', 'fig_walker2d_medium.png', 'h1', 'h2', 'w1', 'w2']
    printed = capsys.readouterr().out
    assert printed.count('hopper-medium:') == 1 and printed.count('walker2d-medium:') == 1
    assert 'rlpd hopper' in printed.split('walker2d-medium:')[0]
    assert 'scratch walker2d' in printed.split('walker2d-medium:')[1]  # with the runs on its env, not halfcheetah's
    assert plot.figure_path('f.png', 'data/hopper-mr.hdf5', True) == 'f_hopper_mr_hdf5.png'


def test_a_run_in_progress_is_labelled_and_grouped_from_its_config(tmp_path):
    root = str(tmp_path)
    running = _run(root, 'r', 'hopper-medium', 'scratch', None, [[1.0, 2.0]], env='walker2d', seed=7, finished=False)
    assert not os.path.exists(os.path.join(running, 'summary.json'))
    assert plot.run_label(running) == 'scratch walker2d'
    assert plot.run_seeds(running, 2) == [7, 8]
    assert plot.by_dataset([running]) == {None: [running]}  # config.json says it learns from no dataset


def test_an_older_run_in_progress_from_scratch_reads_no_dataset(tmp_path):
    """config.json before 2026-12-06 had no top-level dataset: a run from scratch still reads none."""
    running = _run(str(tmp_path), 'old', 'halfcheetah-medium', 'scratch', None, [[1.0]], env='walker2d', finished=False)
    with open(os.path.join(running, 'config.json'), 'w') as f:
        json.dump({'config': {'dataset': 'halfcheetah-medium', 'method': 'scratch', 'env': 'walker2d', 'seed': 0},
                   'seeds': 1}, f)
    assert plot.run_facts(running)['dataset'] is None
    wsrl = _run(str(tmp_path), 'old_wsrl', 'hopper-medium', 'wsrl', [1.0], [[1.0]], finished=False)
    with open(os.path.join(wsrl, 'config.json'), 'w') as f:
        json.dump({'config': {'dataset': 'hopper-medium', 'method': 'wsrl', 'env': 'hopper', 'seed': 0}}, f)
    assert plot.run_facts(wsrl)['dataset'] == 'hopper-medium'


def test_runs_of_one_method_and_env_are_told_apart_by_their_directories(tmp_path):
    base = _run(str(tmp_path), 'wsrl', 'walker2d-medium', 'wsrl', [80.0], [[10.0], [50.0]])
    ablation = _run(str(tmp_path), 'wsrl_handover_temperature_1', 'walker2d-medium', 'wsrl', [80.0], [[60.0], [70.0]])
    other = _run(str(tmp_path), 'rlpd', 'walker2d-medium', 'rlpd', None, [[5.0], [20.0]])
    assert plot.run_labels([base, ablation, other]) == [
        'wsrl walker2d (wsrl)', 'wsrl walker2d (wsrl_handover_temperature_1)', 'rlpd walker2d']
    assert plot.run_labels([base, other]) == ['wsrl walker2d', 'rlpd walker2d']
    rows = plot.score_table([base, ablation]).splitlines()[1:]
    assert [row.split()[2] for row in rows] == ['(wsrl)', '(wsrl_handover_temperature_1)']
    assert [row.split()[-3] for row in rows] == ['50.0', '70.0']  # final mean of each
    labels = plot.plot_runs([base, ablation], str(tmp_path / 'f.png'))
    assert {'wsrl walker2d (wsrl) (1 seed)', 'wsrl walker2d (wsrl_handover_temperature_1) (1 seed)'} <= set(labels)


def test_aggregate_takes_one_run_per_method_and_task(tmp_path):
    """The stratified bootstrap's strata are tasks: an ablation beside its base run is refused, not pooled."""
    root = str(tmp_path)
    hopper = _run(root, 'h', 'hopper-medium', 'wsrl', [30.0, 30.0], [[10.0, 20.0], [40.0, 60.0]])
    walker = _run(root, 'w', 'walker2d-medium', 'wsrl', [80.0, 80.0], [[10.0, 20.0], [50.0, 70.0]])
    ablation = _run(root, 'w_ablation', 'walker2d-medium', 'wsrl', [80.0, 80.0], [[10.0, 20.0], [0.0, 0.0]])
    row = plot.aggregate_table([hopper, walker]).splitlines()[1].split()
    assert row[:4] == ['wsrl', '2', '2', f'{plot.iqm(np.array([40.0, 60.0, 50.0, 70.0])):.1f}']
    with pytest.raises(ValueError, match='w_ablation are both method wsrl on walker2d-medium'):
        plot.aggregate_table([hopper, walker, ablation])
    out = os.path.join(root, 'fig.png')
    from absl import app
    from absl.testing import flagsaver
    with flagsaver.flagsaver(), pytest.raises(SystemExit) as e:  # --aggregate does not outlive this test
        app.run(plot.main, argv=['plot', f'--out={out}', '--aggregate', hopper, walker, ablation])
    assert e.value.code == 2
    assert not [name for name in os.listdir(root) if name.endswith('.png')]  # no figure half-written
