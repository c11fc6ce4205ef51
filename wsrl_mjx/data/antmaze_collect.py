"""AntMaze datasets made here, by D4RL's recipe (facts from Farama-Foundation/D4RL,
scripts/generation/generate_ant_maze_datasets.py, relabel_antmaze_rewards.py and locomotion/maze_env.py;
the code is written anew).

A goal-reaching ant, the `antgoal` controller (policies/antgoal_controller.npz, trained with `python -m
wsrl_mjx.train --config=configs/antmaze.py:controller`), is led through the maze by waypoints: the
centre of the next cell on a shortest path over the maze grid from the torso's cell to the commanded
goal's cell, and the goal itself once in that cell. It acts greedily, plus N(0, 0.2) noise per action
dimension, clipped to [-1, 1] (D4RL's --noisy). As in D4RL, the controller sees the direction to the
waypoint scaled to length 10 (the farthest goal it trained on), so it never slows down near a waypoint or
the goal: it walks on through them and turns back, which spreads the data around the goals.
  play     every trajectory starts at the maze's start cell (D4RL's reset: qpos0 + U(-0.1, 0.1))
  diverse  every trajectory starts in a free cell drawn uniformly, + U(0, 1) in x and in y (D4RL's
           multi-start reset)
Commanded goals: one of the data map's goal cells (antmaze.DATA_MAZES; umaze has one, medium 3, large 7)
drawn uniformly per trajectory, its centre + U(0, 1) + U(0, 0.5) in x and in y (D4RL's goal sampler).
Trajectories are 1000 steps long (a time-out on the last) and nothing ends them earlier. Rewards and
terminals are D4RL's relabelling: 1 where the next torso position is within 0.5 of the evaluation goal
(here the mean of the evaluation env's goal distribution, its goal cell's centre + 0.75; D4RL used one
draw of it), and the transition is terminal there; the trajectory goes on. infos/goal is the commanded
goal, infos/qpos and infos/qvel the state each observation was taken in.

Where this departs from D4RL's script: the planner locates the torso in the cell whose square holds it
(D4RL's rounds down from the cell's centre, half a cell off), and the waypoint is the next cell's centre
(D4RL adds U(0, 1) per step).
"""
from __future__ import annotations

import collections
import functools
import os

import numpy as np

from wsrl_mjx.data.dataset import Dataset

LEVELS = ('play', 'diverse')
CONTROLLER = 'antgoal_controller'  # the shipped policy file's name in wsrl_mjx/data/policies/
ACTION_NOISE = 0.2
TRAJECTORY_LENGTH = 1000
CHUNK = 250  # env steps per compiled call (one progress-bar update); divides TRAJECTORY_LENGTH
START_NOISE, GOAL_NOISE = 1.0, (1.0, 0.5)  # U(0, a) terms added in x and in y


def free_cells(maze: tuple[str, ...]) -> list[tuple[int, int]]:
    """Every cell that is not a wall, row-major."""
    return [(i, j) for i, row in enumerate(maze) for j, c in enumerate(row) if c != '1']


def next_cell_table(maze: tuple[str, ...]) -> np.ndarray:
    """[F, F] int32 over the free cells (free_cells order): entry [a, t] is the neighbour of a that is
    one step nearer to t on a shortest 4-connected path (a itself when a == t). Ties go to the first of
    left, right, down (row + 1), up, as in D4RL's search."""
    cells = free_cells(maze)
    index = {c: k for k, c in enumerate(cells)}
    table = np.zeros((len(cells), len(cells)), np.int32)
    for t, target in enumerate(cells):
        distance = {target: 0}
        queue = collections.deque([target])
        while queue:
            row, col = queue.popleft()
            for step in ((row, col - 1), (row, col + 1), (row + 1, col), (row - 1, col)):
                if step in index and step not in distance:
                    distance[step] = distance[(row, col)] + 1
                    queue.append(step)
        for a, cell in enumerate(cells):
            if cell == target:
                table[a, t] = a
                continue
            if cell not in distance:
                raise ValueError(f'maze cell {cell} cannot reach {target}')
            row, col = cell
            for step in ((row, col - 1), (row, col + 1), (row + 1, col), (row - 1, col)):
                if distance.get(step) == distance[cell] - 1:
                    table[a, t] = index[step]
                    break
    return table


@functools.lru_cache(maxsize=None)
def _maze_arrays(maze_name: str):
    """(data map, next-cell table, [rows, cols] free-cell index or -1, [F, 2] cell centres, [G, 2] goal
    cell centres, (x, y) of the reward goal)."""
    from wsrl_mjx.envs import antmaze

    maze = antmaze.DATA_MAZES[maze_name]
    cells = free_cells(maze)
    grid = -np.ones((len(maze), len(maze[0])), np.int32)
    for k, (i, j) in enumerate(cells):
        grid[i, j] = k
    centres = np.asarray([antmaze.cell_xy(maze, i, j) for i, j in cells], np.float32)
    goals = np.asarray([antmaze.cell_xy(maze, i, j) for i, j in antmaze.cells(maze, 'g')], np.float32)
    (goal_cell,) = antmaze.cells(antmaze.EVAL_MAZES[maze_name], 'g')
    reward_goal = np.asarray(antmaze.cell_xy(maze, *goal_cell), np.float32) + 0.75
    return maze, next_cell_table(maze), grid, centres, goals, reward_goal


def waypoint(xy, goal, grid, table, centres, origin_cell):
    """The planner: the target (x, y) the controller walks to from torso position xy towards goal."""
    import jax.numpy as jnp

    from wsrl_mjx.envs.antmaze import MAZE_SCALING

    def cell_of(p):
        rc = jnp.round(p[::-1] / MAZE_SCALING).astype(jnp.int32) + origin_cell
        rc = jnp.clip(rc, 0, jnp.asarray(grid.shape) - 1)
        return grid[rc[0], rc[1]]

    here, there = cell_of(xy), cell_of(goal)
    here = jnp.where(here < 0, there, here)  # a torso over a wall cell's square (it cannot be inside one)
    following = table[here, there]
    return jnp.where(following == there, goal, centres[following])


@functools.lru_cache(maxsize=8)
def _program(maze_name: str, num_envs: int, length: int, shapes: tuple, log_std: tuple):
    """Compiled (reset(key, diverse), chunk(actor, state, key)) of the collection rollout; diverse:
    bool [], the level (one program serves both)."""
    import jax
    import jax.numpy as jnp

    from wsrl_mjx import networks
    from wsrl_mjx.envs import antmaze, make_env

    env = make_env(f'antmaze-{maze_name}', TRAJECTORY_LENGTH).env
    maze, table, grid, centres, goals, reward_goal = (jnp.asarray(a) if isinstance(a, np.ndarray) else a
                                                      for a in _maze_arrays(maze_name))
    (origin,) = antmaze.cells(maze, 'r')
    origin = jnp.asarray(origin, jnp.int32)

    def reset_one(key, diverse):
        q_key, qd_key, start_key, start_noise, goal_key, goal_noise = jax.random.split(key, 6)
        q, qd = antmaze.initial_state(env.sys, q_key, qd_key)
        start = centres[jax.random.randint(start_key, (), 0, centres.shape[0])]
        start = start + jax.random.uniform(start_noise, (2,), maxval=START_NOISE)
        q = q.at[:2].add(jnp.where(diverse, start, 0.0))
        # D4RL's goal noise, U(0, 1) + U(0, 0.5), summed before it is added (antmaze.noisy_goal adds the
        # terms one by one: the same distribution, rounded otherwise; the measured datasets used this)
        noise = sum(jax.random.uniform(k, (2,), maxval=a) for k, a in zip(jax.random.split(goal_noise), GOAL_NOISE))
        goal = goals[jax.random.randint(goal_key, (), 0, goals.shape[0])] + noise
        return env.pipeline_init(q, qd), goal

    def reset(key, diverse):
        pipeline, goal = jax.vmap(reset_one, (0, None))(jax.random.split(key, num_envs), diverse)
        return pipeline, goal, jnp.zeros((num_envs,), jnp.int32)

    def chunk(actor, state, key):
        """`length` steps of every env; all envs start their trajectories together and `length` divides
        TRAJECTORY_LENGTH, so trajectories end at chunk ends and the host resets them (`reset`)."""
        def body(carry, _):
            (pipeline, goal, time), key = carry
            key, noise_key = jax.random.split(key)
            obs = antmaze.ant_observation(pipeline)
            target = jax.vmap(lambda xy, g: waypoint(xy, g, grid, table, centres, origin))(obs[:, :2], goal)
            # D4RL's scaling: the direction to the waypoint at length GOAL_REGION_RADIUS, the farthest
            # goal the controller trained on, so the ant walks on through a waypoint instead of stopping.
            ahead = target - obs[:, :2]
            ahead = antmaze.GOAL_REGION_RADIUS * ahead / jnp.maximum(jnp.linalg.norm(ahead, axis=-1, keepdims=True), 1e-6)
            mean, _ = networks.actor_apply(actor, antmaze.controller_input(obs, obs[:, :2] + ahead), *log_std)
            action = jnp.clip(jnp.tanh(mean) + ACTION_NOISE * jax.random.normal(noise_key, mean.shape), -1.0, 1.0)
            stepped = jax.vmap(env.pipeline_step)(pipeline, antmaze.ACTION_SCALE * action)
            next_obs = antmaze.ant_observation(stepped)
            reached = jnp.linalg.norm(next_obs[:, :2] - reward_goal, axis=-1) <= antmaze.GOAL_RADIUS
            time = time + 1
            timeout = time >= TRAJECTORY_LENGTH
            out = {'observations': obs, 'actions': action, 'rewards': reached.astype(jnp.float32),
                   'next_observations': next_obs, 'terminals': reached, 'timeouts': timeout,
                   'goal': goal, 'qpos': pipeline.q, 'qvel': pipeline.qd}
            return ((stepped, goal, time), key), out

        (state, key), out = jax.lax.scan(body, (state, key), None, length=length)
        return state, key, out

    del shapes  # part of the cache key: the compiled program depends on the actor's shapes
    return jax.jit(reset), jax.jit(chunk)


def collect(maze_name: str, level: str, size: int, seed: int, num_envs: int, policy: str | None = None,
            quiet: bool = False) -> Dataset:
    """`size` transitions of antmaze-<maze_name>-<level> (module docstring)."""
    import jax

    from wsrl_mjx.data.collect import CollectError, _load_policy, _returns, envs_for, shipped_policies
    from wsrl_mjx.metrics import progress_bar

    if level not in LEVELS:
        raise CollectError(f'--level={level} is unknown for antmaze-{maze_name}: one of random, {", ".join(LEVELS)}')
    path = policy or shipped_policies('antgoal').get('controller')
    if path is None:
        raise CollectError(f'--level={level} of antmaze-{maze_name} needs the goal-reaching controller '
                           f'({CONTROLLER}.npz), which is not shipped; train one with python -m wsrl_mjx.train '
                           f'--config=configs/antmaze.py:controller and pass its policies/<snapshot>.npz with --policy')
    actor, meta = _load_policy(path)
    log_std = (meta.get('log_std_min', -11.512925), meta.get('log_std_max', 2.302585))
    num_envs = envs_for(size, num_envs)
    per_env = -(-size // num_envs)
    length = min(CHUNK, per_env)
    chunks = -(-per_env // length)
    shapes = tuple(tuple(v.shape for v in layer.values()) for layer in actor)
    assert TRAJECTORY_LENGTH % length == 0 or chunks == 1
    reset, chunk = _program(maze_name, num_envs, length, shapes, tuple(log_std))
    key = jax.random.key(seed)
    diverse = np.asarray(level == 'diverse')
    parts = []
    with progress_bar(disable=quiet) as bar:
        task = bar.add_task(f'collect antmaze-{maze_name}-{level}', total=size, speed='', score='')
        for i in range(chunks):
            if i * length % TRAJECTORY_LENGTH == 0:  # every env starts a trajectory
                reset_key, key = jax.random.split(key)
                state = reset(reset_key, diverse)
            state, key, out = chunk(actor, state, key)
            parts.append(jax.tree.map(np.asarray, out))
            bar.update(task, advance=min(length * num_envs, size - i * length * num_envs))
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def env_major(x):  # [time, env, ...] -> [env * time, ...]: each env's trajectories contiguous
        x = np.swapaxes(x[:per_env], 0, 1)
        return x.reshape((-1,) + x.shape[2:])[:size]

    out = {k: env_major(v) for k, v in out.items()}
    out['timeouts'][-1] = True  # the end of collection cuts the last trajectory
    if per_env % TRAJECTORY_LENGTH:  # and every env's last one
        out['timeouts'][per_env - 1::per_env] = True
    infos = {name: out.pop(name).astype(np.float32) for name in ('goal', 'qpos', 'qvel')}
    *_, reward_goal = _maze_arrays(maze_name)
    data = Dataset(**{k: (v.astype(np.float32) if v.dtype != bool else v) for k, v in out.items()}, infos=infos)
    data.meta = {'env': f'antmaze-{maze_name}', 'level': level, 'seed': seed, 'size': size, 'envs': num_envs,
                 'episode_length': TRAJECTORY_LENGTH, 'generator': 'wsrl_mjx.antmaze_collect/1',
                 'controller': os.path.basename(path), 'controller_step': meta.get('step'),
                 'controller_score': meta.get('normalized_score'), 'action_noise': ACTION_NOISE,
                 'reward_goal': [float(v) for v in reward_goal], **_returns(data, f'antmaze-{maze_name}')}
    return data
