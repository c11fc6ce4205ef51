"""AntMaze datasets made here (wsrl_mjx/data/antmaze_collect.py) and the goal-reaching ant that makes
them (`antgoal`, wsrl_mjx/envs/antmaze.py): the planner by hand, then the MJX programs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wsrl_mjx import networks
from wsrl_mjx.data import antmaze_collect, collect as collect_lib, registry
from wsrl_mjx.data.policies import save_actor
from wsrl_mjx.envs import antmaze


def test_next_cell_table_follows_shortest_paths():
    umaze = antmaze.DATA_MAZES['umaze']
    cells = antmaze_collect.free_cells(umaze)
    table = antmaze_collect.next_cell_table(umaze)
    index = {c: k for k, c in enumerate(cells)}
    # From the start (1, 1) to the goal cell (3, 1): round the U, one cell at a time.
    path, here = [], index[(1, 1)]
    while here != index[(3, 1)]:
        here = table[here, index[(3, 1)]]
        path.append(cells[here])
    assert path == [(1, 2), (1, 3), (2, 3), (3, 3), (3, 2), (3, 1)]
    assert all(table[k, k] == k for k in range(len(cells)))
    # A tie (two shortest paths from (1, 1) to (2, 2)) goes to the first of left, right, down, up.
    square = ('1111', '1r01', '1001', '1111')
    cells = antmaze_collect.free_cells(square)
    table = antmaze_collect.next_cell_table(square)
    assert cells[table[cells.index((1, 1)), cells.index((2, 2))]] == (1, 2)
    assert cells[table[cells.index((2, 2)), cells.index((1, 1))]] == (2, 1)


def test_waypoint_is_the_next_cell_centre_then_the_goal():
    maze, table, grid, centres, _, _ = antmaze_collect._maze_arrays('umaze')
    (origin,) = antmaze.cells(maze, 'r')
    goal = jnp.array([0.6, 8.3])  # in the goal cell (3, 1), centre (0, 8)

    def at(x, y):
        return np.asarray(antmaze_collect.waypoint(jnp.array([x, y]), goal, jnp.asarray(grid), jnp.asarray(table),
                                                   jnp.asarray(centres), jnp.asarray(origin)))

    np.testing.assert_array_equal(at(0.0, 0.0), [4.0, 0.0])  # start cell: on to (1, 2)
    np.testing.assert_array_equal(at(1.9, -0.5), [4.0, 0.0])  # still in the start cell's square
    np.testing.assert_array_equal(at(2.1, 0.0), [8.0, 0.0])  # in (1, 2): on to (1, 3)
    np.testing.assert_array_equal(at(8.0, 3.0), [8.0, 8.0])  # (2, 3) to (3, 3)
    np.testing.assert_allclose(at(1.0, 7.0), goal)  # in the goal's cell: the goal itself


def test_antmaze_dataset_names_and_levels():
    assert registry.parse_name('antmaze-umaze-diverse') == ('antmaze-umaze', 'diverse')
    assert registry.parse_name('antmaze-large-play') == ('antmaze-large', 'play')
    assert registry.parse_name('antmaze-umaze-random') == ('antmaze-umaze', 'random')
    assert registry.parse_name('antmaze-umaze-medium') is None  # a locomotion level: a file path
    assert collect_lib.levels_of('antmaze-medium') == ('random', 'play', 'diverse')
    with pytest.raises(collect_lib.CollectError, match=r'--level=expert is unknown for antmaze-umaze'):
        collect_lib.collect('antmaze-umaze', 'expert', 10, 0)


def test_info_counts_trajectories_between_time_outs_and_those_that_reach_the_goal():
    from wsrl_mjx.data.dataset import Dataset, summarize

    n = 12  # three 4-step trajectories; the second reaches the goal twice (terminal, then goes on)
    rewards = np.zeros(n, np.float32)
    rewards[[5, 6]] = 1.0
    timeouts = np.zeros(n, bool)
    timeouts[[3, 7, 11]] = True
    data = Dataset(np.zeros((n, 29), np.float32), np.zeros((n, 8), np.float32), rewards, np.zeros((n, 29), np.float32),
                   rewards > 0, timeouts, meta={'env': 'antmaze-umaze'})
    info = summarize(data)
    assert info['trajectories'] == 3 and info['trajectory_success_rate'] == pytest.approx(100.0 / 3)
    assert info['episodes'] == 5  # terminals split D4RL's trajectories into episodes
    assert 'trajectories' not in summarize(Dataset(**{**data.__dict__, 'meta': {'env': 'hopper'}}))


def _controller(tmp_path):
    actor = networks.init_actor(jax.random.key(3), 29, 8, (16, 16), False, 1.0)
    path = str(tmp_path / 'controller.npz')
    save_actor(path, jax.tree.map(lambda x: np.asarray(x), actor), {'env': 'antgoal', 'step': 0})
    return path


@pytest.mark.slow
def test_collection_records_d4rls_fields_and_relabels_at_the_evaluation_goal(tmp_path, monkeypatch):
    """A small play collection: D4RL's fields, goals near the goal cell, and the reward / terminal
    exactly where the next torso is within 0.5 of the reward goal (moved next to the start here so
    that the data holds both kinds of step); the same seed gives the same data; diverse starts are in
    free cells."""
    path = _controller(tmp_path)
    maze, table, grid, centres, goals, _ = antmaze_collect._maze_arrays('umaze')
    arrays = (maze, table, grid, centres, goals, np.array([0.45, 0.0], np.float32))
    monkeypatch.setattr(antmaze_collect, '_maze_arrays', lambda name: arrays)
    data = antmaze_collect.collect('umaze', 'play', 60, 0, num_envs=3, policy=path, quiet=True)
    assert data.observations.shape == (60, 29) and data.actions.shape == (60, 8)
    assert set(data.infos) == {'goal', 'qpos', 'qvel'}
    np.testing.assert_array_equal(data.infos['qpos'], data.observations[:, :15])
    np.testing.assert_array_equal(data.infos['qvel'], data.observations[:, 15:])
    near = np.linalg.norm(data.next_observations[:, :2] - arrays[-1], axis=1) <= antmaze.GOAL_RADIUS
    assert near.any() and not near.all()
    np.testing.assert_array_equal(data.rewards, near.astype(np.float32))
    np.testing.assert_array_equal(data.terminals, near)
    # Each env's 20 steps are one trajectory, cut at its end; within it observations chain.
    assert np.flatnonzero(data.timeouts).tolist() == [19, 39, 59]
    chained = ~data.timeouts[:-1]
    np.testing.assert_array_equal(data.observations[1:][chained], data.next_observations[:-1][chained])
    # Commanded goal: the goal cell (0, 8) + U(0, 1) + U(0, 0.5); play starts at the origin (+-0.1).
    assert np.all((data.infos['goal'] >= [0.0, 8.0]) & (data.infos['goal'] <= [1.5, 9.5]))
    assert np.abs(data.observations[::20, :2]).max() <= 0.1
    assert np.abs(data.actions).max() <= 1.0
    again = antmaze_collect.collect('umaze', 'play', 60, 0, num_envs=3, policy=path, quiet=True)
    np.testing.assert_array_equal(again.observations, data.observations)
    # diverse (the same compiled program): starts at a free cell's centre + U(0, 1) (+-0.1), other seeds.
    diverse = antmaze_collect.collect('umaze', 'diverse', 60, 0, num_envs=3, policy=path, quiet=True)
    offsets = diverse.observations[::20, None, :2] - centres[None]
    assert np.all(np.any(np.all((offsets > -0.1) & (offsets < 1.1), axis=-1), axis=1))
    assert not np.array_equal(diverse.observations, data.observations)


@pytest.mark.slow
def test_antgoal_pays_the_speed_towards_the_goal_and_draws_a_new_goal_on_arrival():
    env = antmaze.make_goal_env_class()()
    state = jax.jit(env.reset)(jax.random.key(0))
    goal = state.info['goal']
    assert float(jnp.linalg.norm(goal - state.pipeline_state.q[:2])) <= antmaze.GOAL_REGION_RADIUS
    np.testing.assert_allclose(state.obs[-2:], goal - state.pipeline_state.q[:2], rtol=1e-6)
    step = jax.jit(env.step)
    action = jax.random.uniform(jax.random.key(1), (8,), minval=-1.0, maxval=1.0)
    after = step(state, action)
    distance = lambda s, g: float(jnp.linalg.norm(s.pipeline_state.q[:2] - g))
    np.testing.assert_allclose(float(after.reward), (distance(state, goal) - distance(after, goal)) / 0.1, rtol=1e-4)
    np.testing.assert_array_equal(after.info['goal'], goal)  # not there yet
    assert float(after.done) == 0.0
    # Put the goal under the torso: the step pays, and the next goal is a new one around the torso.
    there = state.replace(info={**state.info, 'goal': state.pipeline_state.q[:2]})
    arrived = step(there, action)
    assert not np.allclose(arrived.info['goal'], state.pipeline_state.q[:2])
    assert float(jnp.linalg.norm(arrived.info['goal'] - arrived.pipeline_state.q[:2])) <= antmaze.GOAL_REGION_RADIUS + 0.5
    assert float(arrived.metrics['goals_reached']) == 1.0
    # A torso lifted above 1.0 has fallen out of the healthy range: the episode ends.
    lifted = env.pipeline_init(state.pipeline_state.q.at[2].set(1.5), state.pipeline_state.qd)
    assert float(step(state.replace(pipeline_state=lifted), action).done) == 1.0
