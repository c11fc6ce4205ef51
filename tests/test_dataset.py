"""Dataset files: round trip, D4RL files without next_observations, Minari files, validation, --info."""
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import REPO
from wsrl_mjx.data.dataset import Dataset, DatasetError, load, summarize, write_hdf5

OBS, ACT = 17, 6  # halfcheetah


def episodes_dataset(lengths, terminal_last, cut_last, rng):
    """Episodes laid end to end; observation[:2] = (episode, t) so every row says where it came from."""
    obs, next_obs, terminals, timeouts = [], [], [], []
    for e, (length, terminal, cut) in enumerate(zip(lengths, terminal_last, cut_last)):
        o = rng.normal(size=(length + 1, OBS)).astype(np.float32)
        o[:, 0], o[:, 1] = e, np.arange(length + 1)
        obs.append(o[:-1])
        next_obs.append(o[1:])
        terminals.append(np.arange(length) == length - 1 if terminal else np.zeros(length, bool))
        timeouts.append(np.arange(length) == length - 1 if cut else np.zeros(length, bool))
    n = sum(lengths)
    return Dataset(
        observations=np.concatenate(obs), actions=rng.uniform(-1, 1, (n, ACT)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32), next_observations=np.concatenate(next_obs),
        terminals=np.concatenate(terminals), timeouts=np.concatenate(timeouts),
        meta={'env': 'halfcheetah', 'level': 'test', 'seed': 3},
    )


def test_round_trip_keeps_arrays_and_metadata(tmp_path):
    data = episodes_dataset([5, 3], [False, True], [True, False], np.random.default_rng(0))
    path = str(tmp_path / 'd.hdf5')
    write_hdf5(path, data)
    with h5py.File(path) as f:
        assert {'observations', 'actions', 'rewards', 'terminals', 'timeouts', 'next_observations'} <= set(f)
    loaded = load(path, OBS, ACT)
    for name in ('observations', 'actions', 'rewards', 'next_observations', 'terminals', 'timeouts'):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(data, name))
    assert loaded.meta == data.meta


def test_d4rl_file_without_next_observations_never_crosses_an_episode_end(tmp_path):
    # Episode 0 times out after 5 steps, episode 1 ends terminal after 3, episode 2 is cut by the end
    # of the file after 4 (D4RL's own layout: no next_observations, timeouts on the time-limit step).
    data = episodes_dataset([5, 3, 4], [False, True, False], [True, False, False], np.random.default_rng(1))
    path = str(tmp_path / 'd4rl.hdf5')
    with h5py.File(path, 'w') as f:
        for name in ('observations', 'actions', 'rewards', 'terminals', 'timeouts'):
            f.create_dataset(name, data=getattr(data, name))
    loaded = load(path, OBS, ACT)
    # Dropped: the time-out step of episode 0 and the file's last step; the terminal step is kept.
    assert len(loaded) == 4 + 3 + 3
    episode, t = loaded.observations[:, 0], loaded.observations[:, 1]
    next_episode, next_t = loaded.next_observations[:, 0], loaded.next_observations[:, 1]
    assert np.all(next_episode == episode)  # no transition crosses an episode end
    live = ~loaded.terminals
    assert np.all(next_t[live] == t[live] + 1)
    np.testing.assert_array_equal(loaded.next_observations[loaded.terminals], loaded.observations[loaded.terminals])
    assert np.flatnonzero(loaded.terminals).tolist() == [6]
    assert np.flatnonzero(loaded.timeouts).tolist() == [3, 9]  # the shortened episodes end there
    assert summarize(loaded)['episodes'] == 3
    rows = np.concatenate([np.arange(0, 4), np.arange(5, 8), np.arange(8, 11)])
    np.testing.assert_array_equal(loaded.rewards, data.rewards[rows])
    np.testing.assert_array_equal(loaded.actions, data.actions[rows])


def test_minari_file(tmp_path):
    rng = np.random.default_rng(2)
    path = str(tmp_path / 'main_data.hdf5')
    lengths = [4, 6]
    with h5py.File(path, 'w') as f:
        for i, length in enumerate(lengths):
            g = f.create_group(f'episode_{i}')
            g['observations'] = rng.normal(size=(length + 1, OBS))
            g['actions'] = rng.uniform(-1, 1, (length, ACT))
            g['rewards'] = rng.normal(size=length)
            g['terminations'] = np.arange(length) == length - 1 if i == 0 else np.zeros(length, bool)
            g['truncations'] = np.arange(length) == length - 1 if i == 1 else np.zeros(length, bool)
        obs1 = f['episode_1/observations'][()]
    loaded = load(path, OBS, ACT)
    assert len(loaded) == 10 and loaded.terminals.tolist().count(True) == 1 and loaded.timeouts[-1]
    np.testing.assert_allclose(loaded.next_observations[4:], obs1[1:].astype(np.float32))
    assert summarize(loaded, 'halfcheetah')['episodes'] == 2


def test_mc_returns_by_hand():
    data = Dataset(
        observations=np.zeros((5, 1), np.float32), actions=np.zeros((5, 1), np.float32),
        rewards=np.array([1, 2, 3, 4, 5], np.float32), next_observations=np.zeros((5, 1), np.float32),
        terminals=np.array([0, 1, 0, 0, 0], bool), timeouts=np.array([0, 0, 0, 0, 1], bool))
    np.testing.assert_allclose(data.mc_returns(0.5), [1 + 0.5 * 2, 2, 3 + 0.5 * 4 + 0.25 * 5, 4 + 0.5 * 5, 5])
    np.testing.assert_allclose(data.episode_returns(), [3, 12])


def test_mc_returns_of_sparse_episodes_that_never_reach_the_goal():
    # antmaze (reward 0 / 1, scaled 10 / -5): an episode without a success gets the return of failing
    # forever, r / (1 - discount), at every step (the reference's calc_return_to_go); others sum.
    from wsrl_mjx.envs.registry import ENV_SPECS
    from wsrl_mjx.pipeline import offline

    data = Dataset(
        observations=np.zeros((6, 1), np.float32), actions=np.zeros((6, 1), np.float32),
        rewards=np.array([0, 0, 1, 0, 0, 0], np.float32), next_observations=np.zeros((6, 1), np.float32),
        terminals=np.array([0, 0, 1, 0, 0, 0], bool), timeouts=np.array([0, 0, 0, 0, 1, 0], bool))
    failure = ENV_SPECS['antmaze-umaze'].failure_reward
    host = offline.from_dataset(data, 0.5, 10.0, -5.0, failure_reward=failure)
    np.testing.assert_array_equal(np.asarray(host.transitions.reward), [-5, -5, 5, -5, -5, -5])
    np.testing.assert_allclose(np.asarray(host.mc_return), [-5 + 0.5 * (-5 + 0.5 * 5), -5 + 0.5 * 5, 5, -10, -10, -10])
    dense = offline.from_dataset(data, 0.5, 10.0, -5.0)  # locomotion's rule: sums only
    np.testing.assert_allclose(np.asarray(dense.mc_return)[3:], [-5 - 2.5, -5, -5])
    assert ENV_SPECS['halfcheetah'].failure_reward is None


def corrupt(tmp_path, kind):
    data = episodes_dataset([5, 3], [False, True], [True, False], np.random.default_rng(0))
    path = str(tmp_path / f'{kind}.hdf5')
    if kind in ('empty', 'text'):
        open(path, 'w').write('' if kind == 'empty' else 'observations,actions\n1,2\n')
        return path, 'not an HDF5 file'
    arrays = {k: getattr(data, k) for k in ('observations', 'actions', 'rewards', 'terminals', 'timeouts',
                                            'next_observations')}
    named = {'nan': 'rewards', 'rows': 'actions', 'missing': 'terminals', 'dtype': 'observations',
             'obs_size': 'observations', 'truncated': 'HDF5', 'terminals_2d': 'terminals',
             'obs_1d': 'observations', 'metadata': 'metadata', 'scalar': 'rewards', 'minari_not_group': 'episode_0',
             'minari_name': 'episode_x', 'minari_rows': 'episode_0/actions'}[kind]
    if kind.startswith('minari'):
        with h5py.File(path, 'w') as f:
            if kind == 'minari_not_group':
                f.create_dataset('episode_0', data=np.zeros(3))
            else:
                episode = f.create_group('episode_x' if kind == 'minari_name' else 'episode_0')
                episode.create_dataset('observations', data=np.zeros((4, OBS), np.float32))
                episode.create_dataset('actions', data=np.zeros((3 if kind == 'minari_name' else 2, ACT), np.float32))
                for name in ('rewards', 'terminations', 'truncations'):
                    episode.create_dataset(name, data=np.zeros(3))
        return path, named
    if kind == 'nan':
        arrays['rewards'][2] = np.nan
    elif kind == 'rows':
        arrays['actions'] = arrays['actions'][:-1]
    elif kind == 'missing':
        del arrays['terminals']
    elif kind == 'dtype':
        arrays['observations'] = np.array([b'x'] * len(arrays['rewards']))
    elif kind == 'obs_size':
        arrays['observations'] = arrays['observations'][:, :11]
        arrays['next_observations'] = arrays['next_observations'][:, :11]
    elif kind == 'terminals_2d':  # without next_observations: rebuilt from the episode ends
        arrays['terminals'] = np.stack([arrays['terminals']] * 2, axis=1)
        del arrays['next_observations']
    elif kind == 'obs_1d':
        arrays['observations'] = arrays['observations'][:, 0]
        del arrays['next_observations']
    elif kind == 'scalar':
        arrays['rewards'] = np.float32(1.0)
    with h5py.File(path, 'w') as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
        if kind == 'metadata':
            f.attrs['metadata'] = '{not json'

    if kind == 'truncated':
        size = len(open(path, 'rb').read())
        with open(path, 'r+b') as f:
            f.truncate(size // 2)
    return path, named


@pytest.mark.parametrize('kind', ['empty', 'text', 'truncated', 'nan', 'rows', 'missing', 'dtype', 'obs_size',
                                  'terminals_2d', 'obs_1d', 'metadata', 'scalar', 'minari_not_group',
                                  'minari_name', 'minari_rows'])
def test_malformed_files_are_refused_naming_file_and_field(tmp_path, kind):
    path, named = corrupt(tmp_path, kind)
    with pytest.raises(DatasetError) as info:
        load(path, OBS, ACT)
    message = str(info.value)
    assert message.startswith(path) and named in message and '\n' not in message


def test_info_command_json_and_bad_file(tmp_path):
    data = episodes_dataset([5, 3], [False, True], [True, False], np.random.default_rng(0))
    path = str(tmp_path / 'd.hdf5')
    write_hdf5(path, data)
    result = subprocess.run([sys.executable, '-m', 'wsrl_mjx.collect', '--info', path, '--json'], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    returns = [data.rewards[:5].sum(), data.rewards[5:].sum()]
    assert info['transitions'] == 8 and info['episodes'] == 2
    np.testing.assert_allclose(info['return_mean'], np.mean(returns), rtol=1e-6)
    for key in ('normalized_score_mean', 'normalized_score_min', 'normalized_score_max'):
        assert key in info
    bad, _ = corrupt(tmp_path, 'nan')
    result = subprocess.run([sys.executable, '-m', 'wsrl_mjx.collect', '--info', bad], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and 'rewards' in lines[0], result.stderr


@pytest.mark.parametrize('args,named', [
    (['--env=cartpole', '--level=random'], '--env=cartpole'),
    (['--env=halfcheetah', '--level=expertish'], '--level=expertish'),
    (['--env=ant', '--level=medium'], 'medium policy of ant'),
    (['--env=ant', '--level=expert'], 'expert policy of ant'),
    (['--env=halfcheetah', '--level=random', '--size=0'], '--size=0'),
])
def test_collect_bad_input_one_line_exit_2_no_file(tmp_path, args, named):
    out = tmp_path / 'd.hdf5'
    result = subprocess.run([sys.executable, '-m', 'wsrl_mjx.collect', *args, f'--out={out}', '--quiet'], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and named in lines[0], result.stderr
    assert not out.exists()


def test_cached_dataset_name_changes_with_the_shipped_policies(tmp_path, monkeypatch):
    import shutil

    from wsrl_mjx.data import collect, registry

    shutil.copy(os.path.join(collect.POLICY_DIR, 'halfcheetah_medium.npz'), tmp_path / 'halfcheetah_medium.npz')
    monkeypatch.setattr(collect, 'POLICY_DIR', str(tmp_path))
    before = registry._policies_digest('halfcheetah')
    assert registry._policies_digest('hopper') != before  # no hopper files here: the empty digest
    with open(tmp_path / 'halfcheetah_medium.npz', 'ab') as f:
        f.write(b'\0')
    assert registry._policies_digest('halfcheetah') != before


@pytest.mark.parametrize('steps,bound,envs', [
    (100_000, 64, 50),  # whole 2000-step runs per env
    (20_000, 64, 20),
    (3_000, 64, 3),
    (1_500, 64, 64),  # no count gives whole episodes: as many envs as allowed
    (10, 64, 10),  # never more envs than steps
])
def test_envs_for_splits_into_whole_episodes(steps, bound, envs):
    from wsrl_mjx.data.collect import envs_for

    assert envs_for(steps, bound) == envs


def test_per_step_fields_stored_as_columns_are_read(tmp_path):
    """[rows, 1] rewards, terminals and timeouts (a shape some converters write) read as [rows]."""
    data = episodes_dataset([5, 3], [False, True], [True, False], np.random.default_rng(0))
    path = str(tmp_path / 'columns.hdf5')
    with h5py.File(path, 'w') as f:
        for k in ('observations', 'actions', 'next_observations'):
            f.create_dataset(k, data=getattr(data, k))
        for k in ('rewards', 'terminals', 'timeouts'):
            f.create_dataset(k, data=getattr(data, k)[:, None])
    loaded = load(path, OBS, ACT)
    for k in ('rewards', 'terminals', 'timeouts'):
        np.testing.assert_array_equal(getattr(loaded, k), getattr(data, k))


def test_d4rl_antmaze_v2_layout_is_read_for_the_antmaze_envs(tmp_path):
    """D4RL's antmaze-v2 files: 29 observations, 8 actions, sparse rewards with a terminal at the goal,
    timeouts, and infos/goal, infos/qpos, infos/qvel groups beside them (read past)."""
    from wsrl_mjx.envs.registry import ENV_SPECS

    rng = np.random.default_rng(4)
    n = 12
    rewards = np.zeros(n, np.float32)
    rewards[4] = 1.0  # the goal reached on step 4: D4RL's v2 data mark it terminal
    path = str(tmp_path / 'antmaze-umaze-v2.hdf5')
    with h5py.File(path, 'w') as f:
        f.create_dataset('observations', data=rng.normal(size=(n, 29)).astype(np.float32))
        f.create_dataset('actions', data=rng.uniform(-1, 1, (n, 8)).astype(np.float32))
        f.create_dataset('rewards', data=rewards)
        f.create_dataset('terminals', data=rewards > 0)
        f.create_dataset('timeouts', data=np.arange(n) == n - 1)
        f.create_dataset('infos/goal', data=np.tile([0.5, 8.3], (n, 1)))
        f.create_dataset('infos/qpos', data=rng.normal(size=(n, 15)))
        f.create_dataset('infos/qvel', data=rng.normal(size=(n, 14)))
    spec = ENV_SPECS['antmaze-umaze']
    loaded = load(path, spec.obs_dim, spec.act_dim)
    assert len(loaded) == n - 1  # the file's last (timed-out) step has no successor
    assert loaded.terminals.tolist() == [i == 4 for i in range(n - 1)]
    with pytest.raises(DatasetError, match='observations'):
        load(path, ENV_SPECS['ant'].obs_dim, ENV_SPECS['ant'].act_dim)  # brax's ant observes 27


def minari_antmaze_file(path, rng, dataset_id=None, keys=('achieved_goal', 'desired_goal', 'observation')):
    """Two episodes of Minari's antmaze layout with random values: [(observations [T+1, 29] flattened by hand,
    actions [T, 8])]."""
    episodes = []
    with h5py.File(path, 'w') as f:
        if dataset_id is not None:
            f.attrs['dataset_id'] = dataset_id
        for i, length in enumerate([3, 4]):
            g = f.create_group(f'episode_{i}')
            ag, obs = rng.normal(size=(length + 1, 2)), rng.normal(size=(length + 1, 27))
            sizes = {'achieved_goal': ag, 'desired_goal': rng.normal(size=(length + 1, 2)), 'observation': obs}
            for key in keys:
                g[f'observations/{key}'] = sizes[key]
            g['actions'] = rng.uniform(-1, 1, (length, 8))
            g['rewards'] = np.zeros(length)
            g['terminations'] = np.zeros(length, bool)
            g['truncations'] = np.arange(length) == length - 1
            episodes.append((np.concatenate([ag, obs], axis=1), g['actions'][()]))
    return episodes


def test_minari_antmaze_medium_is_mirrored_and_moved_into_d4rls_frame(tmp_path):
    path = str(tmp_path / 'main_data.hdf5')
    (raw, actions), _ = minari_antmaze_file(path, np.random.default_rng(3), 'D4RL/antmaze/medium-diverse-v1')
    loaded = load(path, 29, 8)
    assert len(loaded) == 7 and loaded.meta['env'] == 'antmaze-medium' and loaded.timeouts.sum() == 2
    r, o = raw[0], loaded.observations[0]
    # By hand: x + 10, 10 - y (medium is 8 x 8 cells of 4); quaternion (w, -x, y, -z); legs 1 <-> 4 and
    # 2 <-> 3 with the hips negated (angles at 7..14, velocities at 21..28); vy, wx, wz negated.
    expected = [r[0] + 10, 10 - r[1], r[2], r[3], -r[4], r[5], -r[6],
                -r[13], r[14], -r[11], r[12], -r[9], r[10], -r[7], r[8],
                r[15], -r[16], r[17], -r[18], r[19], -r[20],
                -r[27], r[28], -r[25], r[26], -r[23], r[24], -r[21], r[22]]
    np.testing.assert_allclose(o, np.float32(expected), rtol=1e-6)
    np.testing.assert_allclose(loaded.next_observations[0], loaded.observations[1])
    a = actions[0]  # motor order hip_4, ankle_4, hip_1, ankle_1, hip_2, ankle_2, hip_3, ankle_3
    np.testing.assert_allclose(loaded.actions[0], np.float32([-a[2], a[3], -a[0], a[1], -a[6], a[7], -a[4], a[5]]))


def test_minari_antmaze_umaze_is_moved_only(tmp_path):
    # Minari's umaze map is D4RL's upside down: the two worlds differ by (4, 4); the id from metadata.json.
    path = str(tmp_path / 'main_data.hdf5')
    (raw, actions), _ = minari_antmaze_file(path, np.random.default_rng(4))
    with open(tmp_path / 'metadata.json', 'w') as f:
        json.dump({'dataset_id': 'D4RL/antmaze/umaze-v1'}, f)
    loaded = load(path, 29, 8)
    np.testing.assert_allclose(loaded.observations[:3], np.float32(raw[:3] + np.r_[4, 4, np.zeros(27)]), rtol=1e-6)
    np.testing.assert_allclose(loaded.actions[:3], np.float32(actions))


@pytest.mark.parametrize('dataset_id,keys,named', [
    (None, ('achieved_goal', 'desired_goal', 'observation'), 'dataset_id'),
    ('D4RL/pointmaze/medium-v2', ('achieved_goal', 'desired_goal', 'observation'), 'dataset_id'),
    ('D4RL/antmaze/large-play-v1', ('desired_goal', 'observation'), 'achieved_goal'),
])
def test_minari_dict_observations_are_refused_naming_the_field(tmp_path, dataset_id, keys, named):
    path = str(tmp_path / 'main_data.hdf5')
    minari_antmaze_file(path, np.random.default_rng(5), dataset_id, keys)
    with pytest.raises(DatasetError) as info:
        load(path, 29, 8)
    assert path in str(info.value) and named in str(info.value)


def test_the_mirror_commutes_with_the_ants_dynamics():
    # Native MuJoCo, D4RL's ant (this env's model) in a maze symmetric in y: stepping a state and then
    # mirroring it gives the mirrored state stepped with the mirrored actions.
    import mujoco

    from wsrl_mjx.data.minari_antmaze import mirror_actions, mirror_state
    from wsrl_mjx.envs import antmaze

    model = mujoco.MjModel.from_xml_string(antmaze.model_xml(('111', '1r1', '111')))
    data = mujoco.MjData(model)
    rng = np.random.default_rng(6)

    def rollout(state, actions):
        data.qpos[:], data.qvel[:] = state[:15], state[15:]
        out = []
        for action in actions:
            data.ctrl[:] = antmaze.ACTION_SCALE * action
            for _ in range(5):
                mujoco.mj_step(model, data)
            out.append(np.concatenate([data.qpos, data.qvel]))
        return np.array(out)

    for _ in range(3):
        qpos = model.qpos0 + rng.uniform(-0.3, 0.3, 15)
        qpos[3:7] /= np.linalg.norm(qpos[3:7])
        state = np.concatenate([qpos, rng.normal(0, 0.5, 14)])
        actions = rng.uniform(-1, 1, (8, 8))
        ours = rollout(state, actions)
        theirs = rollout(mirror_state(state), mirror_actions(actions))
        assert np.abs(ours[-1] - state).max() > 0.1  # the ant moved
        np.testing.assert_allclose(mirror_state(ours), theirs, atol=1e-6)
        assert np.abs(mirror_state(ours) - ours).max() > 0.1  # and its mirror image is another state
