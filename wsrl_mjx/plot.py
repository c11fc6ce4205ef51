"""Curves: python -m wsrl_mjx.plot RUN_DIR [RUN_DIR ...] [--out FILE]

Normalised score against online env steps, one line per run labelled with its method (mean over
seeds, shaded +- one std). A run with pretraining starts at step 0 with its offline score (the last
evaluation of pretraining), so the dip after the start of fine-tuning shows. Each run's training also
writes its own curves.png.
"""
from __future__ import annotations

import json
import os
import sys

import numpy as np
from absl import app, flags

_OUT = flags.DEFINE_string('out', 'curves.png', 'Output image (PNG).')


def load_scores(run_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """(online steps [T], scores [T, seeds]) of a run's evaluation points; the offline score at step 0."""
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
    if offline is not None:
        steps, scores = [0, *steps], [offline, *scores]
    if not steps:
        raise ValueError(f'{run_dir}/metrics.jsonl: no evaluation points yet')
    return np.asarray(steps), np.asarray(scores, np.float64)


def run_label(run_dir: str) -> str:
    """'<method> <env>' from the run's config.json, else the directory name."""
    try:
        with open(os.path.join(run_dir, 'config.json')) as f:
            config = json.load(f)['config']
        return f"{config['method']} {config['env']}"
    except (OSError, ValueError, KeyError):
        return os.path.basename(os.path.normpath(run_dir))


def plot_runs(run_dirs: list[str], out: str, title: str | None = None) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for run_dir in run_dirs:
        steps, scores = load_scores(run_dir)
        mean, std = scores.mean(axis=1), scores.std(axis=1)
        label = f'{run_label(run_dir)} ({scores.shape[1]} seeds)'
        line, = ax.plot(steps, mean, label=label)
        ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel('online env steps')
    ax.set_ylabel('D4RL-normalised score')
    ax.grid(alpha=0.3)
    ax.legend(fontsize='small')
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv):
    if len(argv) < 2:
        print('error: name at least one run directory', file=sys.stderr)
        sys.exit(2)
    try:
        plot_runs(argv[1:], _OUT.value)
    except (FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    print(f'wrote {_OUT.value}')


if __name__ == '__main__':
    app.run(main)
