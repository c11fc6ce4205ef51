"""Generate a D4RL-style dataset, or say what is in a dataset file.

  python -m wsrl_mjx.collect --env=halfcheetah --level=medium --size=1000000 --seed=0 --out=FILE
  python -m wsrl_mjx.collect --env=antmaze-umaze --level=diverse --size=1000000 --out=FILE [--policy=NPZ]
  python -m wsrl_mjx.collect --info FILE [--json]

How each level is made: wsrl_mjx/data/collect.py and, for antmaze, wsrl_mjx/data/antmaze_collect.py
(their text follows in --help).
"""
from __future__ import annotations

import json
import os
import sys

from wsrl_mjx.cli import UsageError, exit_on_help, fail
from wsrl_mjx.data import antmaze_collect, collect as library
from wsrl_mjx.data.collect import LEVELS, collect
from wsrl_mjx.data.dataset import load, summarize, write_hdf5


def main(argv: list[str]) -> None:
    from absl import flags

    f = flags.FLAGS
    flags.DEFINE_string('env', 'halfcheetah', 'Task.')
    flags.DEFINE_string('level', 'medium', f'One of {", ".join(LEVELS)}; antmaze: random, play, diverse.')
    flags.DEFINE_integer('size', 1_000_000, 'Transitions (per part for medium-expert).')
    flags.DEFINE_integer('seed', 0, 'Seed of the rollouts.')
    flags.DEFINE_integer('envs', 64, 'Vmapped MJX envs (keep <= 512 on CPUs).')
    flags.DEFINE_string('out', None, 'Output HDF5 file.')
    flags.DEFINE_string('policy', None, 'A policy file (policies/*.npz of a run) instead of the shipped one.')
    flags.DEFINE_string('info', None, 'Print what is in this dataset file and exit.')
    flags.DEFINE_bool('json', False, 'With --info: one JSON object.')
    flags.DEFINE_bool('quiet', False, 'No progress bar.')
    exit_on_help(argv, __doc__ + '\n' + library.__doc__ + '\n' + antmaze_collect.__doc__)
    try:
        f(argv)
    except flags.Error as e:
        fail(str(e).splitlines()[0])
    if f.info:
        try:
            data = load(f.info)
        except UsageError as e:
            fail(str(e))
        info = summarize(data)
        if f.json:
            print(json.dumps(info))
        else:
            print(f'{f.info}: {data.meta.get("env", "?")} {data.meta.get("level", "")}')
            for k, v in info.items():
                print(f'  {k:24s} {v:.3f}' if isinstance(v, float) else f'  {k:24s} {v}')
        return
    if not f.out:
        fail('--out=FILE is required (or --info FILE)')
    if f.policy and not os.path.isfile(f.policy):
        fail(f'--policy={f.policy}: no such file')
    from wsrl_mjx.entry import enable_compilation_cache

    enable_compilation_cache()  # as train does: a second collection loads the rollout program
    try:
        data = collect(f.env, f.level, f.size, f.seed, f.envs, f.policy, f.quiet)
        write_hdf5(f.out, data)
    except UsageError as e:
        fail(str(e))
    info = summarize(data)
    if 'trajectory_success_rate' in info:
        print(f"{f.out}: {info['transitions']} transitions, {info['trajectories']} trajectories, "
              f"{info['trajectory_success_rate']:.1f}% of them reach the evaluation goal")
        return
    print(f"{f.out}: {info['transitions']} transitions, {info['episodes']} episodes, normalised score "
          f"{info.get('normalized_score_mean', float('nan')):.1f} "
          f"[{info.get('normalized_score_min', float('nan')):.1f}, {info.get('normalized_score_max', float('nan')):.1f}]")


if __name__ == '__main__':
    main(sys.argv)
