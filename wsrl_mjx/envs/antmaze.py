"""AntMaze on MJX: D4RL's ant in D4RL's mazes, with its evaluation goals, sparse reward and score.

Facts from D4RL (Farama-Foundation/D4RL, d4rl/locomotion/{maze_env,ant,goal_reaching_env}.py,
assets/ant.xml and the antmaze-*-v2 registrations; the model and code here are written anew):
- Maze maps: one character per cell, '1' a wall block, '0' free, 'r' the start cell, 'g' a goal cell.
  The v2 tasks evaluate on the *_TEST maps (`EVAL_MAZES`); their datasets were collected on the
  maps in `DATA_MAZES`: the same walls, with the goal cells the data's commanded goals came from
  (medium 3, large 7; the evaluation goal of medium is not one of them).
- Cells are 4 x 4 (maze_size_scaling 4). Cell (row, col) is centred at
  x = 4 (col - col_r), y = 4 (row - row_r): the start cell is the origin and y grows with the row.
  Each wall cell is a box of half-sizes (2, 2, 1) centred 1 above the floor.
- The ant: D4RL's ant.xml (timestep 0.02 with RK4, 5 substeps per env step, so dt 0.1; joint
  armature and damping 1; every geom collides with the floor and walls, not with the ant itself;
  motors with ctrlrange +-30, gear 1, reached from actions in [-1, 1] as 30 a).
- Observation (29): qpos[:15] (torso x, y, z, orientation quaternion, 8 joint angles) and qvel[:14].
  The goal is not observed (D4RL's eval=True tasks).
- Reset (v2): qpos0 + U(-0.1, 0.1), qvel 0.1 N(0, 1); the goal is drawn at every reset: the
  evaluation map's goal cell centre + U(0, 1) + U(0, 0.5) in x and in y.
- Reward 1 when the torso's (x, y) is within 0.5 of the goal, and the episode ends there, so an
  episode's return is 1 (success) or 0; D4RL normalises antmaze returns with 0 and 1, so the
  normalised score is the success rate in percent. Time limits: umaze 700 steps, medium and large 1000.

Where the MJX model differs from D4RL's MuJoCo one: runs of wall cells in a row are one box (the same
solid, fewer collision pairs); MJX computes in float32 where MuJoCo uses float64; and the Newton solver
stops after SOLVER_ITERATIONS iterations of at most LS_ITERATIONS line-search steps instead of
MuJoCo's 100 and 50 (its tolerance ends it earlier, but under vmap a while loop runs as long as its
slowest env). Measured with native MuJoCo on 1,000 states of random play in umaze, one env step (5
substeps): with 6 / 15 every next state equals the one under MuJoCo's defaults exactly; with 4 / 10
the torso's (x, y) was up to 1.3e-3 off; with brax's ant setting for MJX, 1 / 4, 2.8e-3 on average
and 3e-2 at most (the velocities 7% of a step's change), so that one is not used. What the bounds
cost in MJX's step time is not measured yet. tests/test_antmaze.py checks the bounds against the
defaults.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

MAZE_SCALING = 4.0  # cell size
WALL_HALF_HEIGHT = 1.0  # D4RL: maze_height 0.5 x scaling / 2
GOAL_RADIUS = 0.5
ACTION_SCALE = 30.0  # motors take +-30; actions are in [-1, 1]
EPISODE_LENGTHS = {'umaze': 700, 'medium': 1000, 'large': 1000}
SOLVER_ITERATIONS, LS_ITERATIONS = 6, 15  # Newton solver bounds (module docstring)

# D4RL's maps (U_MAZE_TEST, BIG_MAZE_TEST, HARDEST_MAZE_TEST): what the antmaze-*-v2 tasks evaluate on.
EVAL_MAZES = {
    'umaze': ('11111',
              '1r001',
              '11101',
              '1g001',
              '11111'),
    'medium': ('11111111',
               '1r011001',
               '10010001',
               '11000111',
               '10010001',
               '10100101',
               '100010g1',
               '11111111'),
    'large': ('111111111111',
              '1r0001000001',
              '101101010101',
              '100000010001',
              '101111011101',
              '100101000001',
              '110101010111',
              '100100010g01',
              '111111111111'),
}
# The maps the datasets were collected on (U_MAZE, BIG_MAZE, HARDEST_MAZE): their goal cells are the
# commanded goals of the "diverse" data.
DATA_MAZES = {
    'umaze': EVAL_MAZES['umaze'],
    'medium': ('11111111',
               '1r011001',
               '100100g1',
               '11000111',
               '10010001',
               '1g100101',
               '10001g01',
               '11111111'),
    'large': ('111111111111',
              '1r0001g00001',
              '101101010101',
              '10000g0100g1',
              '101111011101',
              '10g101000001',
              '110101010111',
              '1001g0g10g01',
              '111111111111'),
}


def cells(maze: tuple[str, ...], kind: str) -> list[tuple[int, int]]:
    """(row, col) of every cell of `kind` ('1', '0', 'r' or 'g'), row-major."""
    return [(i, j) for i, row in enumerate(maze) for j, c in enumerate(row) if c == kind]


def cell_xy(maze: tuple[str, ...], row: int, col: int) -> tuple[float, float]:
    """World (x, y) of a cell's centre: the start cell is the origin, y grows with the row."""
    (r0, c0), = cells(maze, 'r')
    return MAZE_SCALING * (col - c0), MAZE_SCALING * (row - r0)


def wall_boxes(maze: tuple[str, ...]) -> list[tuple[float, float, float, float]]:
    """Walls as boxes (x, y, half-size x, half-size y): each run of wall cells along a row is one box,
    which covers exactly the cells' own boxes."""
    boxes = []
    for i, row in enumerate(maze):
        j = 0
        while j < len(row):
            if row[j] != '1':
                j += 1
                continue
            end = j
            while end + 1 < len(row) and row[end + 1] == '1':
                end += 1
            (x0, y), (x1, _) = cell_xy(maze, i, j), cell_xy(maze, i, end)
            boxes.append(((x0 + x1) / 2, y, MAZE_SCALING / 2 * (end - j + 1), MAZE_SCALING / 2))
            j = end + 1
    return boxes


_LEGS = (  # (name, hip/ankle index, direction of the leg in x and y, ankle axis, ankle range in degrees)
    ('front_left_leg', 1, (1, 1), '-1 1 0', '30 70'),
    ('front_right_leg', 2, (-1, 1), '1 1 0', '-70 -30'),
    ('back_leg', 3, (-1, -1), '-1 1 0', '-70 -30'),
    ('right_back_leg', 4, (1, -1), '1 1 0', '30 70'),
)
_MOTOR_ORDER = ('hip_4', 'ankle_4', 'hip_1', 'ankle_1', 'hip_2', 'ankle_2', 'hip_3', 'ankle_3')


def model_xml(maze: tuple[str, ...]) -> str:
    """MJCF of D4RL's ant in `maze` (see the module docstring)."""
    legs = []
    for name, k, (sx, sy), ankle_axis, ankle_range in _LEGS:
        a = f'{0.2 * sx} {0.2 * sy} 0'
        legs.append(f'''
      <body name="{name}" pos="0 0 0">
        <geom fromto="0 0 0 {a}" name="aux_{k}_geom" size="0.08" type="capsule"/>
        <body name="aux_{k}" pos="{a}">
          <joint axis="0 0 1" name="hip_{k}" pos="0 0 0" range="-30 30" type="hinge"/>
          <geom fromto="0 0 0 {a}" name="leg_{k}_geom" size="0.08" type="capsule"/>
          <body pos="{a}">
            <joint axis="{ankle_axis}" name="ankle_{k}" pos="0 0 0" range="{ankle_range}" type="hinge"/>
            <geom fromto="0 0 0 {0.4 * sx} {0.4 * sy} 0" name="ankle_{k}_geom" size="0.08" type="capsule"/>
          </body>
        </body>
      </body>''')
    walls = ''.join(
        f'\n    <geom name="wall_{n}" type="box" pos="{x} {y} {WALL_HALF_HEIGHT}" '
        f'size="{hx} {hy} {WALL_HALF_HEIGHT}" contype="1" conaffinity="1" rgba="0.7 0.5 0.3 1"/>'
        for n, (x, y, hx, hy) in enumerate(wall_boxes(maze)))
    motors = ''.join(f'\n    <motor joint="{j}" ctrlrange="-{ACTION_SCALE} {ACTION_SCALE}" ctrllimited="true"/>'
                     for j in _MOTOR_ORDER)
    return f'''<mujoco model="antmaze">
  <compiler angle="degree" coordinate="local" inertiafromgeom="true"/>
  <option timestep="0.02" integrator="RK4"/>
  <default>
    <joint armature="1" damping="1" limited="true"/>
    <geom condim="3" contype="1" conaffinity="0" margin="0.01" friction="1 0.5 0.5" solref=".02 1"
          solimp=".8 .8 .01" density="5.0" rgba="0.8 0.6 0.4 1"/>
  </default>
  <worldbody>
    <geom name="floor" type="plane" pos="0 0 0" size="40 40 40" conaffinity="1" rgba="0.8 0.9 0.8 1"/>{walls}
    <body name="torso" pos="0 0 0.75">
      <geom name="torso_geom" pos="0 0 0" size="0.25" type="sphere"/>
      <joint armature="0" damping="0" limited="false" margin="0.01" name="root" pos="0 0 0" type="free"/>{''.join(legs)}
    </body>
  </worldbody>
  <actuator>{motors}
  </actuator>
</mujoco>'''


def system(maze: tuple[str, ...]):
    """The MJX system of D4RL's ant in `maze`, with the env's Newton solver bounds."""
    import mujoco
    from brax.io import mjcf

    sys = mjcf.loads(model_xml(maze))
    return sys.tree_replace({'opt.solver': mujoco.mjtSolver.mjSOL_NEWTON, 'opt.iterations': SOLVER_ITERATIONS,
                             'opt.ls_iterations': LS_ITERATIONS})


def initial_state(sys, q_key: jax.Array, qd_key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """D4RL's reset of the ant: (qpos0 + U(-0.1, 0.1), 0.1 N(0, 1))."""
    q = sys.init_q + jax.random.uniform(q_key, (sys.q_size(),), minval=-0.1, maxval=0.1)
    return q, 0.1 * jax.random.normal(qd_key, (sys.qd_size(),))


def noisy_goal(cell: jax.Array, key: jax.Array, key2: jax.Array) -> jax.Array:
    """D4RL's goal in a goal cell: its centre + U(0, 1) + U(0, 0.5) in x and in y."""
    return (cell + jax.random.uniform(key, (2,), maxval=0.25 * MAZE_SCALING)
            + jax.random.uniform(key2, (2,), maxval=0.125 * MAZE_SCALING))


def ant_observation(pipeline_state) -> jax.Array:
    """D4RL's 29 values: qpos[:15] and qvel[:14] (leading axes kept)."""
    return jnp.concatenate([pipeline_state.q[..., :15], pipeline_state.qd[..., :14]], axis=-1)


@functools.lru_cache(maxsize=None)
def make_env_class():
    """The brax env class, built once on first use (it subclasses brax's PipelineEnv, and importing
    brax is slow)."""
    from brax.envs.base import PipelineEnv, State

    class AntMaze(PipelineEnv):
        """D4RL's antmaze-<maze>-v2 task on MJX (module docstring): obs [29], actions [8] in [-1, 1]."""

        def __init__(self, maze: str = 'umaze', backend: str = 'mjx', **kwargs):
            self.maze = EVAL_MAZES[maze]
            sys = system(self.maze)
            kwargs['n_frames'] = kwargs.get('n_frames', 5)
            super().__init__(sys=sys, backend=backend, **kwargs)
            (goal_row, goal_col), = cells(self.maze, 'g')
            self.goal_cell_xy = jnp.asarray(cell_xy(self.maze, goal_row, goal_col), jnp.float32)

        def reset(self, rng: jax.Array) -> State:
            q_key, qd_key, goal_key, goal_key2 = jax.random.split(rng, 4)
            q, qd = initial_state(self.sys, q_key, qd_key)
            pipeline_state = self.pipeline_init(q, qd)
            goal = noisy_goal(self.goal_cell_xy, goal_key, goal_key2)
            zero = jnp.zeros(())
            return State(pipeline_state, self._observe(pipeline_state), zero, zero,
                         {'success': zero, 'goal_distance': jnp.linalg.norm(q[:2] - goal)}, {'goal': goal})

        def step(self, state: State, action: jax.Array) -> State:
            pipeline_state = self.pipeline_step(state.pipeline_state, ACTION_SCALE * jnp.clip(action, -1.0, 1.0))
            distance = jnp.linalg.norm(pipeline_state.q[:2] - state.info['goal'])
            success = (distance <= GOAL_RADIUS).astype(jnp.float32)
            return state.replace(pipeline_state=pipeline_state, obs=self._observe(pipeline_state), reward=success,
                                 done=success, metrics={**state.metrics, 'success': success, 'goal_distance': distance})

        def _observe(self, pipeline_state) -> jax.Array:
            return ant_observation(pipeline_state)

    return AntMaze


# The goal-reaching ant that collects the datasets (D4RL's recipe: a goal-reaching policy trained on open
# ground, led through the maze by waypoints; wsrl_mjx/data/antmaze_collect.py). D4RL trained its policy
# on goals drawn in a disk of radius 10 around the start (goal_reaching_env.disk_goal_sampler: angle
# and radius uniform) with the reward -distance; here the reward is the speed towards the goal.
GOAL_REGION_RADIUS = 10.0
HEALTHY_Z = (0.2, 1.0)  # torso height outside this ends an episode (gym's and brax's ant)


def controller_input(ant_obs: jax.Array, target_xy: jax.Array) -> jax.Array:
    """The controller's 29 inputs from the maze's 29-value observation and a target (x, y): the ant's
    state without its position (27), then the target relative to the torso (2)."""
    return jnp.concatenate([ant_obs[..., 2:], target_xy - ant_obs[..., :2]], axis=-1)


def disk_goal(key: jax.Array, centre: jax.Array) -> jax.Array:
    """A goal at an angle and a radius (up to GOAL_REGION_RADIUS) drawn uniformly around `centre`."""
    angle_key, radius_key = jax.random.split(key)
    angle = jax.random.uniform(angle_key, (), maxval=2.0 * jnp.pi)
    radius = jax.random.uniform(radius_key, (), maxval=GOAL_REGION_RADIUS)
    return centre + radius * jnp.stack([jnp.cos(angle), jnp.sin(angle)])


def make_goal_env_class():
    """The brax env class of `antgoal` (see GOAL_REGION_RADIUS), built once on first use."""
    from brax.envs.base import PipelineEnv, State

    class AntGoal(PipelineEnv):
        """D4RL's maze ant on open ground reaching goals: obs [29] (controller_input), actions [8].

        Reset: the maze's start state; a goal within GOAL_REGION_RADIUS. Reward per step: the
        decrease of the distance to the goal over the step, divided by the step's 0.1 s (the speed
        towards the goal, m/s), so an episode's return is 10 x the metres gained. Within GOAL_RADIUS
        a new goal is drawn around the torso (the next step's distance is to it). The episode ends when
        the torso's height leaves HEALTHY_Z (a fallen ant)."""

        def __init__(self, backend: str = 'mjx', **kwargs):
            sys = system(('r',))  # one free cell: no walls
            kwargs['n_frames'] = kwargs.get('n_frames', 5)
            super().__init__(sys=sys, backend=backend, **kwargs)

        def reset(self, rng: jax.Array) -> State:
            q_key, qd_key, goal_key, next_key = jax.random.split(rng, 4)
            q, qd = initial_state(self.sys, q_key, qd_key)
            pipeline_state = self.pipeline_init(q, qd)
            goal = disk_goal(goal_key, q[:2])
            zero = jnp.zeros(())
            return State(pipeline_state, self._observe(pipeline_state, goal), zero, zero,
                         {'goals_reached': zero, 'goal_distance': jnp.linalg.norm(goal - q[:2])},
                         {'goal': goal, 'goal_key': next_key})

        def step(self, state: State, action: jax.Array) -> State:
            pipeline_state = self.pipeline_step(state.pipeline_state, ACTION_SCALE * jnp.clip(action, -1.0, 1.0))
            goal = state.info['goal']
            before = jnp.linalg.norm(state.pipeline_state.q[:2] - goal)
            distance = jnp.linalg.norm(pipeline_state.q[:2] - goal)
            reward = (before - distance) / self.dt
            reached = distance <= GOAL_RADIUS
            draw_key, next_key = jax.random.split(state.info['goal_key'])
            goal = jnp.where(reached, disk_goal(draw_key, pipeline_state.q[:2]), goal)
            z = pipeline_state.q[2]
            fallen = ((z < HEALTHY_Z[0]) | (z > HEALTHY_Z[1])).astype(jnp.float32)
            metrics = {'goals_reached': state.metrics['goals_reached'] + reached,
                       'goal_distance': jnp.linalg.norm(pipeline_state.q[:2] - goal)}
            return state.replace(pipeline_state=pipeline_state, obs=self._observe(pipeline_state, goal),
                                 reward=reward, done=fallen, metrics=metrics,
                                 info={'goal': goal, 'goal_key': next_key})

        def _observe(self, pipeline_state, goal) -> jax.Array:
            return controller_input(ant_observation(pipeline_state), goal)

    return AntGoal


def register() -> None:
    """Registers antmaze_umaze, antmaze_medium, antmaze_large and antgoal with brax.envs."""
    from brax import envs as brax_envs

    cls = make_env_class()
    for maze in EVAL_MAZES:
        brax_envs.register_environment(f'antmaze_{maze}', functools.partial(cls, maze=maze))
    brax_envs.register_environment('antgoal', make_goal_env_class())
