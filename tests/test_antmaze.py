"""AntMaze (wsrl_mjx/envs/antmaze.py): D4RL's maze geometry, goals and ant, and on MJX solid walls,
the 29-value observation and the sparse reward that ends the episode."""
import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from wsrl_mjx.envs import antmaze


@pytest.mark.parametrize('maze', sorted(antmaze.EVAL_MAZES))
def test_wall_boxes_cover_exactly_the_wall_cells(maze):
    layout = antmaze.EVAL_MAZES[maze]
    boxes = antmaze.wall_boxes(layout)
    assert len(boxes) < len(antmaze.cells(layout, '1'))  # runs along a row are merged
    for i, row in enumerate(layout):
        for j, c in enumerate(row):
            x, y = antmaze.cell_xy(layout, i, j)
            inside = any(abs(x - bx) < hx and abs(y - by) < hy for bx, by, hx, hy in boxes)
            assert inside == (c == '1'), (maze, i, j)


def test_start_and_goal_cells_where_d4rl_has_them():
    # D4RL: the start cell is the origin; the v2 tasks' goal cells are at (0, 8), (20, 20), (32, 24).
    expected = {'umaze': (0.0, 8.0), 'medium': (20.0, 20.0), 'large': (32.0, 24.0)}
    for maze, goal in expected.items():
        layout = antmaze.EVAL_MAZES[maze]
        (r,), (g,) = antmaze.cells(layout, 'r'), antmaze.cells(layout, 'g')
        assert antmaze.cell_xy(layout, *r) == (0.0, 0.0)
        assert antmaze.cell_xy(layout, *g) == goal
        assert [row.replace('g', '0') for row in antmaze.DATA_MAZES[maze]] == [
            row.replace('g', '0') for row in layout]  # the data were collected in the same walls


def test_model_is_d4rls_ant():
    m = mujoco.MjModel.from_xml_string(antmaze.model_xml(antmaze.EVAL_MAZES['umaze']))
    assert (m.nq, m.nv, m.nu) == (15, 14, 8)
    assert m.opt.timestep == 0.02 and m.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    np.testing.assert_array_equal(m.actuator_ctrlrange, np.tile([-30.0, 30.0], (8, 1)))
    np.testing.assert_array_equal(m.actuator_gear[:, 0], np.ones(8))
    torso = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, 'torso')
    np.testing.assert_allclose(m.body_pos[torso], [0.0, 0.0, 0.75])
    ranges = {mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_JOINT, j): np.degrees(m.jnt_range[j]).round(6).tolist()
              for j in range(1, m.njnt)}
    assert ranges == {'hip_1': [-30, 30], 'ankle_1': [30, 70], 'hip_2': [-30, 30], 'ankle_2': [-70, -30],
                      'hip_3': [-30, 30], 'ankle_3': [-70, -30], 'hip_4': [-30, 30], 'ankle_4': [30, 70]}
    np.testing.assert_array_equal(m.dof_damping, [0] * 6 + [1] * 8)
    np.testing.assert_array_equal(m.dof_armature, [0] * 6 + [1] * 8)
    # The ant touches the floor and the walls, never itself.
    ant = m.geom_bodyid != 0
    assert np.all(m.geom_contype[ant] == 1) and np.all(m.geom_conaffinity[ant] == 0)
    assert np.all(m.geom_conaffinity[~ant] == 1)


def test_the_solver_bounds_keep_d4rls_dynamics():
    """One env step (5 substeps) with the env's solver bounds against MuJoCo's defaults (D4RL's), from
    each of 500 states of random play, in native MuJoCo: the same next state (the solver's tolerance
    ends both within the bounds)."""
    xml = antmaze.model_xml(antmaze.EVAL_MAZES['umaze'])
    d4rl = mujoco.MjModel.from_xml_string(xml)
    bounded = mujoco.MjModel.from_xml_string(xml)
    bounded.opt.iterations, bounded.opt.ls_iterations = antmaze.SOLVER_ITERATIONS, antmaze.LS_ITERATIONS
    assert (d4rl.opt.iterations, d4rl.opt.ls_iterations) == (100, 50)
    assert antmaze.SOLVER_ITERATIONS < 100 and antmaze.LS_ITERATIONS < 50

    def env_step(model, qpos, qvel, action):
        data = mujoco.MjData(model)
        data.qpos[:], data.qvel[:], data.ctrl[:] = qpos, qvel, antmaze.ACTION_SCALE * action
        for _ in range(5):
            mujoco.mj_step(model, data)
        return np.concatenate([data.qpos, data.qvel])

    rng = np.random.default_rng(0)
    qpos, qvel = d4rl.qpos0 + rng.uniform(-0.1, 0.1, d4rl.nq), 0.1 * rng.normal(size=d4rl.nv)
    for _ in range(500):
        action = rng.uniform(-1.0, 1.0, 8)
        state = env_step(d4rl, qpos, qvel, action)
        np.testing.assert_allclose(env_step(bounded, qpos, qvel, action), state, rtol=0, atol=1e-9)
        qpos, qvel = state[:d4rl.nq], state[d4rl.nq:]


@pytest.fixture(scope='module')
def umaze():
    from wsrl_mjx.envs import make_env

    return make_env('antmaze-umaze', antmaze.EPISODE_LENGTHS['umaze'])


def test_on_mjx_walls_are_solid_and_the_goal_pays_once_and_ends_the_episode(umaze):
    """The torso launched at 20 m/s at the east wall of the start corridor (its face at x = 10) stops
    in front of it; an ant put on the goal gets reward 1 and a terminal step."""
    assert (umaze.env.sys.opt.iterations, umaze.env.sys.opt.ls_iterations) == (
        antmaze.SOLVER_ITERATIONS, antmaze.LS_ITERATIONS)
    state = jax.jit(umaze.reset, static_argnums=1)(jax.random.key(0), 2)
    assert state.observation.shape == (2, 29)
    pipeline = state.brax_state.pipeline_state
    np.testing.assert_array_equal(state.observation, jnp.concatenate([pipeline.q[:, :15], pipeline.qd[:, :14]], -1))
    goal = state.brax_state.info['goal']
    # D4RL's noise: the goal cell's centre (0, 8) + U(0, 1) + U(0, 0.5) per axis.
    assert bool(jnp.all((goal >= jnp.array([0.0, 8.0])) & (goal <= jnp.array([1.5, 9.5]))))
    # Env 0 runs at the wall; env 1 stands on its goal.
    q = pipeline.q.at[0, 0].set(6.0).at[1, :2].set(goal[1])
    qd = pipeline.qd.at[0, 0].set(20.0)
    both = jax.jit(jax.vmap(umaze.env.pipeline_init))(q, qd)
    state = state.replace(brax_state=state.brax_state.replace(pipeline_state=both, obs=state.observation))

    @jax.jit
    def run(state):
        def body(state, key):
            state, transition, info = umaze.step(state, jnp.zeros((2, 8)), key)
            return state, (state.brax_state.pipeline_state.q[:, 0], transition.reward, transition.mask, info.done)
        return jax.lax.scan(body, state, jax.random.split(jax.random.key(1), 30))

    _, (x, reward, mask, done) = run(state)
    assert float(x[:, 0].max()) < 10.0 - 0.25 + 0.05, float(x[:, 0].max())  # the torso sphere's radius
    assert float(x[:, 0].max()) > 9.0  # it did reach the wall
    assert float(reward[0, 1]) == 1.0 and float(mask[0, 1]) == 0.0 and bool(done[0, 1])
