"""Offline datasets: the in-memory schema, HDF5 files with D4RL's keys, and their validation.

Files read:
  - this project's files and D4RL-style files: root datasets `observations` [N, obs], `actions` [N, act],
    `rewards` [N], `terminals` [N], `timeouts` [N], and optionally `next_observations` [N, obs].
    Without `next_observations` (original D4RL locomotion files) they are rebuilt by shifting within an
    episode, as D4RL's qlearning_dataset does: the step that ends an episode by time limit has no next
    observation in the file and is dropped, and so is an unfinished last step of the file; a terminal
    step is kept (its mask is 0, so its next observation is never used) with next observation equal to
    its own observation, never the next episode's first one.
  - Minari datasets (a `main_data.hdf5` with `episode_<i>` groups holding observations [T+1, obs],
    actions [T, act], rewards, terminations, truncations [T]). Minari's D4RL/antmaze data, whose
    observation is a dict (achieved_goal, desired_goal, observation), is flattened to D4RL's 29 values
    and moved into D4RL's frame (wsrl_mjx/data/minari_antmaze.py); which maze it is comes from the
    dataset id (the root attribute `dataset_id`, or `dataset_id` in the metadata.json beside the file).
Metadata (env, level, seed, generator, policy returns) is a JSON string in the root attribute `metadata`.
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from wsrl_mjx.files import atomic_path
from wsrl_mjx.cli import UsageError

FIELDS = ('observations', 'actions', 'rewards', 'next_observations', 'terminals', 'timeouts')


class DatasetError(UsageError):
    """A malformed dataset file; one line naming the file, the field and what is allowed."""


@dataclasses.dataclass
class Dataset:
    observations: np.ndarray  # [N, obs_dim] float32
    actions: np.ndarray  # [N, act_dim] float32
    rewards: np.ndarray  # [N] float32
    next_observations: np.ndarray  # [N, obs_dim] float32, never an observation of another episode
    terminals: np.ndarray  # [N] bool: the episode ended in a terminal state (mask 0)
    timeouts: np.ndarray  # [N] bool: the episode was cut here (time limit or end of collection)
    meta: dict = dataclasses.field(default_factory=dict)
    # Per-row extras written as infos/<name> (D4RL's antmaze files: goal, qpos, qvel); not read back.
    infos: dict = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def episode_ends(self) -> np.ndarray:
        """[N] bool: the last step of each episode (terminal or cut)."""
        return self.terminals | self.timeouts

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of every finished episode (an unfinished trailing piece is left out)."""
        ends = np.flatnonzero(self.episode_ends)
        sums = np.cumsum(self.rewards, dtype=np.float64)
        totals = sums[ends]
        return np.diff(np.concatenate([[0.0], totals])).astype(np.float64)

    def mc_returns(self, discount: float, failure_reward: float | None = None) -> np.ndarray:
        """[N] float32 discounted return-to-go within each episode (Cal-QL's Monte-Carlo lower bound).

        A cut episode's return-to-go sums only the rewards in the data (no bootstrap beyond it).
        failure_reward (sparse-reward tasks: the reward of every step short of the goal): an episode
        with no other reward gets failure_reward / (1 - discount) at every step, the return of failing
        forever, as the reference's calc_return_to_go does.
        """
        out = np.zeros(len(self), np.float64)
        running = 0.0
        ends = self.episode_ends
        for i in range(len(self) - 1, -1, -1):
            if ends[i]:
                running = 0.0
            running = float(self.rewards[i]) + discount * running
            out[i] = running
        if failure_reward is not None:
            # Episode ids from the ends; a trailing unfinished piece counts as one more episode.
            episode = np.concatenate([[0], np.cumsum(ends[:-1])])
            failed = np.bincount(episode, weights=self.rewards != failure_reward) == 0
            out[failed[episode]] = failure_reward / (1.0 - discount)
        return out.astype(np.float32)

    @staticmethod
    def concatenate(parts: list['Dataset'], meta: dict) -> 'Dataset':
        arrays = {f: np.concatenate([getattr(p, f) for p in parts]) for f in FIELDS}
        return Dataset(**arrays, meta=meta)


def write_hdf5(path: str, data: Dataset) -> None:
    """D4RL keys plus next_observations and the metadata attribute; written atomically."""
    import h5py

    validate(data, path)
    with atomic_path(path) as tmp, h5py.File(tmp, 'w') as f:  # several processes may generate one dataset
        for name in FIELDS:
            f.create_dataset(name, data=getattr(data, name))
        for name, value in data.infos.items():
            f.create_dataset(f'infos/{name}', data=value)
        f.attrs['metadata'] = json.dumps(data.meta)


def load(path: str, obs_dim: int | None = None, act_dim: int | None = None) -> Dataset:
    """Reads and validates a dataset file (format detected); raises DatasetError naming file and field."""
    import h5py

    if not os.path.isfile(path):
        raise DatasetError(f'{path}: no such file')
    if os.path.isdir(path) or not h5py.is_hdf5(path):
        raise DatasetError(f'{path}: not an HDF5 file (empty, truncated or another format)')
    try:
        with h5py.File(path, 'r') as f:
            if 'observations' in f:
                data = _read_d4rl(f, path)
            elif any(k.startswith('episode_') for k in f.keys()):
                data = _read_minari(f, path)
            else:
                raise DatasetError(f'{path}: field observations is missing: expected D4RL keys '
                                   f'({", ".join(FIELDS[:3])}, terminals, timeouts) or Minari episode_<i> groups')
    except OSError as e:
        raise DatasetError(f'{path}: unreadable HDF5 ({e})') from None
    validate(data, path, obs_dim, act_dim)
    return data


def _array(f, name: str, path: str) -> np.ndarray:
    import h5py

    if name not in f or not isinstance(f[name], h5py.Dataset):
        raise DatasetError(f'{path}: field {name} is missing (an array)')
    value = f[name][()]
    if isinstance(value, np.generic) and value.dtype.kind in 'biuf':
        raise DatasetError(f'{path}: field {name} is a single number: an array with one row per step expected')
    if not isinstance(value, np.ndarray) or value.dtype.kind not in 'biuf':
        raise DatasetError(f'{path}: field {name} has dtype {getattr(value, "dtype", type(value))}: numbers expected')
    return value


def _read_d4rl(f, path: str) -> Dataset:
    obs = _array(f, 'observations', path)
    fields = {'observations': obs}
    for name in ('actions', 'rewards', 'terminals'):
        fields[name] = _array(f, name, path)
    timeouts = _array(f, 'timeouts', path) if 'timeouts' in f else np.zeros(len(fields['rewards']), bool)
    fields['timeouts'] = timeouts
    _check_rows(fields, path)
    fields = _per_step(fields, path)
    meta = {'source': 'd4rl'}
    if 'metadata' in f.attrs:
        try:
            meta = json.loads(f.attrs['metadata'])
        except (TypeError, ValueError):
            raise DatasetError(f'{path}: attribute metadata is not JSON text (wsrl_mjx writes a JSON object)') from None
    if 'next_observations' in f:
        next_obs = _array(f, 'next_observations', path)
        _check_rows({**fields, 'next_observations': next_obs}, path)
        return _dataset(fields, _per_step({'next_observations': next_obs}, path)['next_observations'], meta)
    return _shift_within_episodes(fields, meta)


def _shift_within_episodes(fields: dict, meta: dict) -> Dataset:
    """D4RL qlearning_dataset's rebuild of next observations (see the module docstring)."""
    obs = fields['observations']
    terminals, timeouts = fields['terminals'].astype(bool), fields['timeouts'].astype(bool)
    n = len(obs)
    next_obs = np.empty_like(obs)
    next_obs[:-1] = obs[1:]
    next_obs[-1] = obs[-1]
    next_obs[terminals] = obs[terminals]
    index = np.arange(n)
    # A timed-out step's successor in the file is the next episode's first observation, and the file's
    # last step has none: both are dropped unless terminal.
    keep = terminals | (~timeouts & (index < n - 1))
    # The step before a dropped one now ends its (shortened) episode: mark it cut.
    ends = terminals | timeouts
    dropped = np.flatnonzero(~keep)
    before = dropped[dropped > 0] - 1
    cut = np.zeros(n, bool)
    cut[before[~ends[before]]] = True
    fields = {**fields, 'terminals': terminals, 'timeouts': cut}
    return _dataset({k: v[keep] for k, v in fields.items()}, next_obs[keep], meta)


def _read_minari(f, path: str) -> Dataset:
    import h5py

    names = [k for k in f.keys() if k.startswith('episode_')]
    for name in names:
        if not name[len('episode_'):].isdigit() or not isinstance(f[name], h5py.Group):
            raise DatasetError(f'{path}: field {name} is not an episode group episode_<i> (Minari layout)')
    names.sort(key=lambda k: int(k[len('episode_'):]))
    parts = {k: [] for k in FIELDS}
    maze = None
    for name in names:
        episode = f[name]
        if isinstance(episode.get('observations'), h5py.Group):
            maze = maze or _minari_maze(f, path)
            obs = _dict_observation(episode['observations'], f'{path}:{name}/observations')
        else:
            obs = _array(episode, 'observations', f'{path}:{name}')
        steps = {k: _array(episode, k, f'{path}:{name}') for k in ('actions', 'rewards', 'terminations', 'truncations')}
        for key, value in steps.items():
            if value.ndim == 0 or len(value) != len(steps['rewards']):
                raise DatasetError(f'{path}: field {name}/{key} has shape {value.shape}; expected '
                                   f'{len(steps["rewards"])} rows like {name}/rewards')
        steps = _per_step(steps, f'{path}:{name}')
        obs = _per_step({'observations': obs}, f'{path}:{name}')['observations']
        if len(obs) != len(steps['rewards']) + 1:
            raise DatasetError(f'{path}: field {name}/observations has {len(obs)} rows; expected rewards + 1 '
                               f'= {len(steps["rewards"]) + 1}')
        parts['observations'].append(obs[:-1])
        parts['next_observations'].append(obs[1:])
        parts['actions'].append(steps['actions'])
        parts['rewards'].append(steps['rewards'])
        parts['terminals'].append(steps['terminations'].astype(bool))
        timeouts = steps['truncations'].astype(bool)
        if len(timeouts) and not (timeouts[-1] or steps['terminations'][-1]):
            timeouts = timeouts.copy()
            timeouts[-1] = True  # the episode ends with the stored data
        parts['timeouts'].append(timeouts)
    if not names:
        raise DatasetError(f'{path}: no episode_<i> groups')
    fields = {k: np.concatenate(v) for k, v in parts.items()}
    next_obs = fields.pop('next_observations')
    meta = {'source': 'minari', **{k: str(v) for k, v in f.attrs.items()}}
    if maze is not None:
        from wsrl_mjx.data import minari_antmaze

        fields['observations'] = minari_antmaze.observations_to_d4rl(fields['observations'], maze)
        next_obs = minari_antmaze.observations_to_d4rl(next_obs, maze)
        fields['actions'] = minari_antmaze.actions_to_d4rl(fields['actions'], maze)
        mirrored, offset = minari_antmaze.FRAMES[maze]
        meta.update(env=f'antmaze-{maze}', frame=f"Gymnasium-Robotics's, {'mirrored in y and ' if mirrored else ''}"
                    f"moved by {offset} into D4RL's", ant=minari_antmaze.ANT_NOTE)
    return _dataset(fields, next_obs, meta)


def _minari_maze(f, path: str) -> str:
    """The antmaze maze of a Minari file with dict observations, from its dataset id."""
    from wsrl_mjx.data.minari_antmaze import maze_of

    dataset_id = f.attrs.get('dataset_id')
    beside = os.path.join(os.path.dirname(os.path.abspath(path)), 'metadata.json')
    if dataset_id is None and os.path.isfile(beside):
        try:
            with open(beside) as meta:
                dataset_id = json.load(meta).get('dataset_id')
        except (OSError, ValueError, AttributeError):
            raise DatasetError(f'{beside}: field dataset_id is unreadable: Minari writes metadata.json as a JSON object') from None
    if dataset_id is None:
        raise DatasetError(f'{path}: field dataset_id is missing (a root attribute, or in metadata.json beside the '
                           f'file): dict observations are read for Minari\'s D4RL/antmaze datasets, whose maze it names')
    if isinstance(dataset_id, bytes):
        dataset_id = dataset_id.decode()
    maze = maze_of(str(dataset_id))
    if maze is None:
        raise DatasetError(f'{path}: field dataset_id is {dataset_id!r}: dict observations are read only for '
                           f'D4RL/antmaze/<umaze|medium|large>-... datasets')
    return maze


def _dict_observation(group, where: str) -> np.ndarray:
    """Minari antmaze's dict observation as [T+1, 29]: achieved_goal (x, y), then observation (27)."""
    from wsrl_mjx.data.minari_antmaze import flatten

    keys = sorted(group.keys())
    if not {'achieved_goal', 'observation'} <= set(keys):
        raise DatasetError(f'{where}: a dict observation with keys {keys}: achieved_goal and observation '
                           f'expected (Minari\'s antmaze layout)')
    goal, rest = _array(group, 'achieved_goal', where), _array(group, 'observation', where)
    if goal.ndim != 2 or goal.shape[1] != 2 or rest.ndim != 2 or rest.shape[1] != 27 or len(goal) != len(rest):
        raise DatasetError(f'{where}: field achieved_goal has shape {goal.shape} and observation {rest.shape}; '
                           f'expected [T+1, 2] and [T+1, 27] (the ant\'s x, y and its other qpos and qvel)')
    return flatten(goal, rest)


def _per_step(fields: dict, path: str) -> dict:
    """Observation-like fields as [rows, values], per-step fields as [rows] ([rows, 1] is taken as
    [rows]); DatasetError naming the field otherwise."""
    out = {}
    for name, value in fields.items():
        if name in ('observations', 'actions', 'next_observations'):
            if value.ndim != 2:
                raise DatasetError(f'{path}: field {name} has shape {value.shape}; expected [rows, values]')
        elif value.ndim == 2 and value.shape[1] == 1:
            value = value[:, 0]
        elif value.ndim != 1:
            raise DatasetError(f'{path}: field {name} has shape {value.shape}; expected one value per row')
        out[name] = value
    return out


def _check_rows(fields: dict, path: str) -> None:
    n = len(fields['observations'])
    for name, value in fields.items():
        if value.ndim == 0 or len(value) != n:
            raise DatasetError(f'{path}: field {name} has shape {value.shape}; expected {n} rows like observations')


def _dataset(fields: dict, next_obs: np.ndarray, meta: dict) -> Dataset:
    return Dataset(
        observations=np.asarray(fields['observations'], np.float32),
        actions=np.asarray(fields['actions'], np.float32),
        rewards=np.asarray(fields['rewards'], np.float32).reshape(-1),
        next_observations=np.asarray(next_obs, np.float32),
        terminals=np.asarray(fields['terminals']).astype(bool).reshape(-1),
        timeouts=np.asarray(fields['timeouts']).astype(bool).reshape(-1),
        meta=meta,
    )


def validate(data: Dataset, path: str, obs_dim: int | None = None, act_dim: int | None = None) -> None:
    """Shapes, dtypes, finiteness and sizes; raises DatasetError naming the file and the field."""
    n = len(data.rewards)
    if n == 0:
        raise DatasetError(f'{path}: field rewards is empty: a dataset needs at least one transition')
    expected = {'observations': 2, 'actions': 2, 'rewards': 1, 'next_observations': 2, 'terminals': 1,
                'timeouts': 1}
    for name, ndim in expected.items():
        value = getattr(data, name)
        if value.ndim != ndim or len(value) != n:
            raise DatasetError(f'{path}: field {name} has shape {value.shape}; expected {ndim} axes and {n} rows')
    if data.next_observations.shape != data.observations.shape:
        raise DatasetError(f'{path}: field next_observations has shape {data.next_observations.shape}; expected '
                           f'{data.observations.shape} like observations')
    for name in ('observations', 'actions', 'rewards', 'next_observations'):
        bad = ~np.isfinite(getattr(data, name))
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise DatasetError(f'{path}: field {name} holds NaN or inf (first at row {row}): finite values only')
    if obs_dim is not None and data.observations.shape[1] != obs_dim:
        raise DatasetError(f'{path}: field observations has {data.observations.shape[1]} columns; the env '
                           f'observes {obs_dim}')
    if act_dim is not None and data.actions.shape[1] != act_dim:
        raise DatasetError(f'{path}: field actions has {data.actions.shape[1]} columns; the env takes {act_dim}')


def summarize(data: Dataset, env: str | None = None) -> dict:
    """Transitions, episodes, and return / normalised-score statistics over finished episodes."""
    from wsrl_mjx.envs.registry import ENV_SPECS, normalized_score

    returns = data.episode_returns()
    out = {'transitions': len(data), 'episodes': int(len(returns)), 'terminals': int(data.terminals.sum())}
    env = env or data.meta.get('env')
    stats = {'mean': np.mean, 'std': np.std, 'min': np.min, 'max': np.max}
    for name, fn in stats.items():
        out[f'return_{name}'] = float(fn(returns)) if len(returns) else float('nan')
    if env in ENV_SPECS and len(returns):
        scores = np.asarray(normalized_score(env, returns))
        for name, fn in stats.items():
            out[f'normalized_score_{name}'] = float(fn(scores))
    if env in ENV_SPECS and ENV_SPECS[env].failure_reward is not None:
        # Sparse rewards (antmaze): terminals split D4RL's trajectories, which go on after the goal; a
        # trajectory is what runs between time-outs, and it succeeds if it pays anything.
        trajectory = np.concatenate([[0], np.cumsum(data.timeouts[:-1])])
        paid = np.bincount(trajectory, weights=data.rewards != ENV_SPECS[env].failure_reward) > 0
        out['trajectories'] = int(len(paid))
        out['trajectory_success_rate'] = float(100.0 * paid.mean())
    return out
