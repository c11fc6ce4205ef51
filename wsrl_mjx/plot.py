"""Curves: python -m wsrl_mjx.plot RUN_DIR [RUN_DIR ...] [--out FILE] [--aggregate]

Normalised score against online env steps, one line per run labelled with its method (mean over
seeds, shaded with a 95% bootstrap interval of that mean), the dataset's score and the offline score
(end of pretraining) as horizontal lines; then a table of each run's offline score, score after
warmup, lowest score from the start of the online phase on (the dip) and its step, the step at which
the mean is back at 90% of the offline score, and final score (mean and its 95% interval over seeds),
and offline, after warmup, lowest and final for every seed. A run with pretraining starts at
step 0 with its offline score (the last evaluation of pretraining), so the dip after the start of
fine-tuning shows. Runs on several datasets get one figure per dataset (FILE's name with
_<dataset> before its extension) and one table each. Each run's training also writes its own curves.png.

--aggregate adds, per method, the interquartile mean (IQM) of the final scores over every seed of
every task (dataset) with a 95% stratified-bootstrap interval, computed as rliable computes it:
each bootstrap sample draws the seeds of each task with replacement from that task's own seeds
(the task is the stratum), the interval is the 2.5 and 97.5 percentiles of the samples' IQMs. The
run directories of one method are its tasks: one run per method and task (dataset), each with the
same seed count.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
from absl import app, flags

from wsrl_mjx.cli import exit_on_help, fail

_OUT = flags.DEFINE_string('out', 'curves.png', 'Output image (PNG).')
_AGGREGATE = flags.DEFINE_bool('aggregate', False, 'Also print each method\'s IQM over tasks and seeds, with '
                               'a 95% stratified-bootstrap interval.')
_BOOTSTRAP = 2000  # bootstrap samples (rliable's default is 50,000; 2,000 settle the interval to ~0.1 here)


def mean_interval(values, samples: int = _BOOTSTRAP, seed: int = 0):
    """(mean, low, high) over the last axis (seeds): the mean and the 95% percentile bootstrap interval of
    the mean, redrawing the seeds with replacement; one seed gives the point itself."""
    values = np.asarray(values, np.float64)
    seeds = values.shape[-1]
    picks = np.random.default_rng(seed).integers(0, seeds, size=(samples, seeds))
    means = values[..., picks].mean(axis=-1)  # [..., samples]
    low, high = np.percentile(means, [2.5, 97.5], axis=-1)
    return values.mean(axis=-1), low, high


def _row_iqms(values: np.ndarray) -> np.ndarray:
    """Interquartile mean of each row: the mean of its sorted values with the lowest and the highest
    quarter (rounded down, as scipy.stats.trim_mean cuts) left out."""
    values = np.sort(values, axis=1)
    cut = int(0.25 * values.shape[1])
    return values[:, cut:values.shape[1] - cut].mean(axis=1)


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all values."""
    return float(_row_iqms(np.asarray(scores, np.float64).reshape(1, -1))[0])


def stratified_bootstrap_iqm(scores: np.ndarray, samples: int = _BOOTSTRAP, seed: int = 0):
    """(IQM, low, high) of scores [seeds, tasks]: each sample redraws, for every task separately, as
    many seeds with replacement from that task's own; the 95% percentile interval of the samples' IQMs."""
    scores = np.asarray(scores, np.float64)
    runs, tasks = scores.shape
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, runs, size=(samples, runs, tasks))
    drawn = scores[picks, np.arange(tasks)]  # [samples, runs, tasks]: task j keeps column j
    low, high = np.percentile(_row_iqms(drawn.reshape(samples, -1)), [2.5, 97.5])
    return iqm(scores), float(low), float(high)


def aggregate_table(run_dirs: list[str]) -> str:
    """Per method, the IQM of the final scores over its runs (tasks) and their seeds."""
    by_method: dict[str, list[np.ndarray]] = {}
    tasks: dict[tuple, str] = {}  # (method, dataset or env) -> the run directory that holds it
    for run_dir in run_dirs:
        facts = run_facts(run_dir)
        method = run_label(run_dir).split()[0]
        task = (method, facts['dataset'] or facts['env'])
        if task in tasks:  # an ablation beside its base run: pooling them would count one task twice
            raise ValueError(f'--aggregate: runs {tasks[task]} and {run_dir} are both method {method} on '
                             f'{task[1]}; a method gets one run per task (leave the ablation out)')
        tasks[task] = run_dir
        _, scores, _ = load_scores(run_dir)
        by_method.setdefault(method, []).append(scores[-1])
    lines = [f"{'method':<12} {'tasks':>5} {'seeds':>5} {'IQM':>7}  95% interval (stratified bootstrap)"]
    for name, finals in by_method.items():
        if len({len(f) for f in finals}) > 1:
            raise ValueError(f'--aggregate: the runs of method {name} have different seed counts '
                             f'({", ".join(str(len(f)) for f in finals)}): give each task the same seeds')
        value, low, high = stratified_bootstrap_iqm(np.stack(finals, axis=1))
        lines.append(f'{name:<12} {len(finals):>5} {len(finals[0]):>5} {value:7.1f}  [{low:.1f}, {high:.1f}]')
    return '\n'.join(lines)


def load_scores(run_dir: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(online steps [T], scores [T, seeds], offline scores [seeds] or None) of a run's evaluations:
    the online phase's (after warmup first) and the last evaluation of pretraining, if it pretrained."""
    path = os.path.join(run_dir, 'metrics.jsonl')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'{run_dir}: no metrics.jsonl (not a wsrl_mjx run directory)')
    steps, scores, offline = [], [], None
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            if 'normalized_score' not in record:
                continue
            if record['phase'] == 'pretrain':
                offline = record['normalized_score']
            else:
                steps.append(record['step'])
                scores.append(record['normalized_score'])
    if not steps:
        raise ValueError(f'{run_dir}/metrics.jsonl: no online evaluation yet')
    return np.asarray(steps), np.asarray(scores, np.float64), None if offline is None else np.asarray(offline)


def dataset_score(run_dir: str) -> float | None:
    """The normalised score of the run's offline data (summary.json, written at the run's end), or None."""
    score = _read_json(os.path.join(run_dir, 'summary.json')).get('dataset_normalized_score')
    return None if score is None else float(score)


RECOVERED = 0.9  # a curve is back once it reaches this fraction of its offline score again


def recovery_step(steps: np.ndarray, mean: np.ndarray, offline: float | None) -> int | None:
    """The first online step, from the lowest point of the mean curve on, at which the mean is at least
    RECOVERED x the offline score (the lowest point's own step if it never fell below that); None
    without a positive offline score or if it never gets back."""
    if offline is None or offline <= 0:
        return None
    lowest = int(np.argmin(mean))
    back = np.nonzero(mean[lowest:] >= RECOVERED * offline)[0]
    return int(steps[lowest + back[0]]) if back.size else None


def score_table(run_dirs: list[str]) -> str:
    """One line per run, means over seeds: the dataset's score, offline score, score after warmup, lowest
    score from the start of the online phase on (the dip, the lowest point of the mean curve) and its
    step, the step at which the mean is back at 90% of the offline score (`recovery_step`), and the final
    score with the 95% bootstrap interval of its mean."""
    names, width = _label_column(run_dirs)
    lines = [f"{'run':<{width}} {'seeds':>5} {'data':>8} {'offline':>8} {'warmup':>8} {'lowest':>8} "
             f"{'at':>7} {'back':>7} {'final':>8}  95% interval"]

    def shown(value, width=8, digits=1):
        return f"{'-':>{width}}" if value is None else f'{value:{width}.{digits}f}'

    for run_dir, name in zip(run_dirs, names):
        steps, scores, offline = load_scores(run_dir)
        mean = scores.mean(axis=1)
        offline_mean = None if offline is None else float(offline.mean())
        _, low, high = mean_interval(scores[-1])
        lines.append(f'{name:<{width}} {scores.shape[1]:>5} {shown(dataset_score(run_dir))} '
                     f'{shown(offline_mean)} {mean[0]:8.1f} {mean.min():8.1f} '
                     f'{int(steps[np.argmin(mean)]):>7} {shown(recovery_step(steps, mean, offline_mean), 7, 0)} '
                     f'{mean[-1]:8.1f}  [{low:.1f}, {high:.1f}]')
    return '\n'.join(lines)


def seed_table(run_dirs: list[str]) -> str:
    """Per run and seed: offline score, score after warmup, that seed's lowest score from the start of
    the online phase on, and its final score."""
    names, width = _label_column(run_dirs)
    lines = [f"{'run':<{width}} {'seed':>5} {'offline':>8} {'warmup':>8} {'lowest':>8} {'final':>8}"]
    for run_dir, name in zip(run_dirs, names):
        _, scores, offline = load_scores(run_dir)
        for i, seed in enumerate(run_seeds(run_dir, scores.shape[1])):
            first = f"{'-':>8}" if offline is None else f'{offline[i]:8.1f}'
            lines.append(f'{name:<{width}} {seed:>5} {first} {scores[0, i]:8.1f} '
                         f'{scores[:, i].min():8.1f} {scores[-1, i]:8.1f}')
    return '\n'.join(lines)


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def run_facts(run_dir: str) -> dict:
    """The run's method, env, dataset and first seed: from summary.json once the run has ended, else
    from config.json (a run in progress). `dataset` is the data the run learnt from, None for a run
    that read none (from scratch): the runner writes it so (config.uses_dataset) in both files."""
    summary = _read_json(os.path.join(run_dir, 'summary.json'))
    if 'method' in summary:
        seeds = summary.get('seeds') or [0]
        return {'method': summary['method'], 'env': summary.get('env'), 'dataset': summary.get('dataset'),
                'seed': seeds[0]}
    saved = _read_json(os.path.join(run_dir, 'config.json'))
    config = saved.get('config', {})
    if 'dataset' in saved:
        dataset = saved['dataset']
    else:  # a config.json written before 2026-12-06 has only the config's dataset, unread from scratch
        dataset = None if config.get('method') == 'scratch' else config.get('dataset')
    return {'method': config.get('method'), 'env': config.get('env'), 'dataset': dataset,
            'seed': config.get('seed', 0)}


def run_seeds(run_dir: str, count: int) -> list[int]:
    """The seeds of a run (its first seed and the seed count), else 0 .. count - 1."""
    first = run_facts(run_dir)['seed']
    return list(range(first, first + count)) if isinstance(first, int) else list(range(count))


def by_dataset(run_dirs: list[str]) -> dict[str | None, list[str]]:
    """The run directories grouped by their dataset, in the order given. A run that read no dataset
    (from scratch) joins the first group on its env, or a group of its own."""
    groups: dict[str | None, list[str]] = {}
    envs: dict[str, str | None] = {}
    for run_dir in run_dirs:
        facts = run_facts(run_dir)
        dataset = facts['dataset']
        if dataset is None and facts['env'] in envs:
            dataset = envs[facts['env']]
        envs.setdefault(facts['env'], dataset)
        groups.setdefault(dataset, []).append(run_dir)
    return groups


def run_label(run_dir: str) -> str:
    """'<method> <env>' of the run, else the directory name."""
    facts = run_facts(run_dir)
    if facts['method'] and facts['env']:
        return f"{facts['method']} {facts['env']}"
    return os.path.basename(os.path.normpath(run_dir))


def run_labels(run_dirs: list[str]) -> list[str]:
    """`run_label` of each run; where two runs would share one (the same method and env, e.g. an
    ablation beside its base run), each of those gets its directory's name after it."""
    labels = [run_label(run_dir) for run_dir in run_dirs]
    return [f'{label} ({os.path.basename(os.path.normpath(run_dir))})' if labels.count(label) > 1 else label
            for label, run_dir in zip(labels, run_dirs)]


def _label_column(run_dirs: list[str]) -> tuple[list[str], int]:
    """`run_labels` and the width of a table's column that holds them."""
    names = run_labels(run_dirs)
    return names, max([28, *map(len, names)])


def plot_runs(run_dirs: list[str], out: str, title: str | None = None) -> list[str]:
    """Writes the figure to `out`; returns its legend's labels (the runs, the dataset's and offline lines)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.0, 4.0))
    drawn, curves, references = set(), [], []  # the legend lists the runs' curves, then the dataset's and offline lines
    for run_dir, name in zip(run_dirs, run_labels(run_dirs)):
        steps, scores, offline = load_scores(run_dir)
        if offline is not None:  # the pretrained policy's score at online step 0
            steps, scores = np.concatenate([[0], steps]), np.concatenate([offline[None], scores])
        mean, low, high = mean_interval(scores)
        seeds = scores.shape[1]
        label = f"{name} ({seeds} seed{'s' if seeds > 1 else ''})"
        line, = ax.plot(steps, mean, label=label)
        curves.append(line)
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        data = dataset_score(run_dir)
        if data is not None and ('data', round(data, 1)) not in drawn:  # runs on one dataset share one line
            drawn.add(('data', round(data, 1)))
            references.append(ax.axhline(data, color='0.4', linestyle='--', linewidth=1,
                                         label=f'its dataset ({data:.1f})'))
        if offline is not None and ('offline', round(mean[0], 1)) not in drawn:  # as do runs of one pretraining
            drawn.add(('offline', round(mean[0], 1)))
            references.append(ax.axhline(mean[0], color='0.4', linestyle=':', linewidth=1,
                                         label=f'offline ({mean[0]:.1f})'))
    ax.set_xlabel('online env steps')
    ax.set_ylabel('D4RL-normalised score')
    ax.grid(alpha=0.3)
    ax.set_title(title or '', fontsize='medium')
    # Beside the axes, not over the curves: with five or six methods no corner is free.
    legend = ax.legend(handles=curves + references, fontsize='small', loc='upper left', bbox_to_anchor=(1.01, 1.0),
                       borderaxespad=0.0)
    labels = [text.get_text() for text in legend.get_texts()]
    fig.tight_layout()
    fig.savefig(out, dpi=120, bbox_inches='tight')
    plt.close(fig)
    return labels


def figure_path(out: str, dataset: str | None, several: bool) -> str:
    """--out itself for runs on one dataset; with several, <stem>_<dataset><ext> for each, the dataset's
    name (or file name) with every character but letters and digits made '_' (hopper-medium: hopper_medium)."""
    if not several:
        return out
    stem, ext = os.path.splitext(out)
    name = ''.join(c if c.isalnum() else '_' for c in os.path.basename(dataset or 'no_dataset'))
    return f"{stem}_{name}{ext or '.png'}"


def main(argv):
    if len(argv) < 2:
        fail('name at least one run directory')
    try:
        groups = by_dataset(argv[1:])
        # Before any figure is written, so that runs --aggregate refuses leave nothing behind.
        aggregate = aggregate_table(argv[1:]) if _AGGREGATE.value else None
        written = []
        for dataset, run_dirs in groups.items():
            path = figure_path(_OUT.value, dataset, len(groups) > 1)
            plot_runs(run_dirs, path, title=dataset)
            written.append(path)
            print(f"{dataset or 'dataset unknown'}: mean over seeds, 95% bootstrap interval of the final mean")
            print(score_table(run_dirs))
            print(seed_table(run_dirs))
            print()
        if aggregate is not None:
            print(aggregate)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))
    print(f"wrote {', '.join(written)}")


if __name__ == '__main__':
    exit_on_help(sys.argv, __doc__)
    app.run(main)
