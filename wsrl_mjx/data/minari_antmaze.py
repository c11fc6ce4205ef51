"""Minari's D4RL/antmaze datasets in this project's (D4RL's) frame; numpy only.

Facts (Farama-Foundation/minari-dataset-generation-scripts, scripts/antmaze; Gymnasium-Robotics,
gymnasium_robotics/envs/maze/{maze_v4,ant_maze_v4}.py; Gymnasium's assets/ant.xml; read for facts,
the code here is written anew):
- An episode's observation is a dict: `achieved_goal` (the torso's x, y), `desired_goal` and
  `observation` (the other 13 values of qpos, then the 14 of qvel). achieved_goal + observation is
  qpos (15) + qvel (14): D4RL's 29-value layout.
- Gymnasium-Robotics centres a maze map on the origin with y falling as the row grows:
  x = 4 (col + 0.5) - 2 W, y = 2 H - 4 (row + 0.5) for a map of W columns and H rows. D4RL puts the
  start cell (1, 1) at the origin with y growing with the row (wsrl_mjx/envs/antmaze.py). Minari's
  umaze data uses D4RL's U map upside down, so its world is D4RL's moved by (4, 4). Its medium and
  large data use D4RL's maps as they are, so their world is D4RL's mirrored in y: the conversion
  mirrors the whole ant (y -> -y; legs 1 <-> 4 and 2 <-> 3 with the hip angles negated and the
  ankles kept; the orientation and the angular velocity mirrored) and its actions, then moves it.
  tests/test_dataset.py checks that the mirror commutes with the ant's dynamics in native MuJoCo.
- What no conversion can change: Gymnasium's ant has motors of gear 150 and a 0.01 s timestep where
  D4RL's (this env's) has gear 30 and 0.02 s, so an action means 5x the torque over half the time of
  one of this env's steps; success is within 0.45 of the goal (D4RL: 0.5); the data never terminates
  (generated with continuing_task). So these transitions are not samples of this env's dynamics.
"""
from __future__ import annotations

import re

import numpy as np

# maze -> (mirrored in y?, offset added to (x, y) after the mirror)
FRAMES = {'umaze': (False, (4.0, 4.0)), 'medium': (True, (10.0, 10.0)), 'large': (True, (18.0, 12.0))}
ANT_NOTE = ("Gymnasium-Robotics's ant (gear 150, timestep 0.01): not this env's dynamics (gear 30, "
            "timestep 0.02)")


def maze_of(dataset_id: str) -> str | None:
    """'umaze', 'medium' or 'large' from a Minari dataset id (D4RL/antmaze/medium-diverse-v1, or the
    older antmaze-medium-diverse-v1), else None."""
    match = re.search(r'antmaze[/-](umaze|medium|large)', dataset_id)
    return match.group(1) if match else None


def flatten(achieved_goal: np.ndarray, observation: np.ndarray) -> np.ndarray:
    """[T, 2] + [T, 27] -> [T, 29]: qpos then qvel, in Gymnasium-Robotics's frame."""
    return np.concatenate([achieved_goal, observation], axis=-1)


def mirror_state(obs: np.ndarray) -> np.ndarray:
    """The ant of [..., 29] observations (qpos 15, qvel 14) mirrored in y."""
    out = np.array(obs, copy=True)
    for i in (1, 4, 6):  # y, and the quaternion's x and z: (w, x, y, z) -> (w, -x, y, -z)
        out[..., i] = -out[..., i]
    for i in (16, 18, 20):  # vy, and the local angular velocity's x and z
        out[..., i] = -out[..., i]
    for start in (7, 21):  # joint angles, then joint velocities: (hip_k, ankle_k) for legs 1..4
        legs = obs[..., start:start + 8].reshape(*obs.shape[:-1], 4, 2)[..., ::-1, :].copy()  # leg k <- leg 5 - k
        legs[..., 0] = -legs[..., 0]  # hips turn about z, which the mirror reverses
        out[..., start:start + 8] = legs.reshape(*obs.shape[:-1], 8)
    return out


def mirror_actions(actions: np.ndarray) -> np.ndarray:
    """[..., 8] actions in the motor order (hip_4, ankle_4, hip_1, ankle_1, hip_2, ankle_2, hip_3,
    ankle_3), mirrored in y with the ant."""
    pairs = actions.reshape(*actions.shape[:-1], 4, 2)[..., [1, 0, 3, 2], :].copy()  # legs 4, 1, 2, 3 <- 1, 4, 3, 2
    pairs[..., 0] = -pairs[..., 0]
    return pairs.reshape(actions.shape)


def observations_to_d4rl(obs: np.ndarray, maze: str) -> np.ndarray:
    """[..., 29] observations of Minari's `maze` data in D4RL's frame."""
    mirrored, (dx, dy) = FRAMES[maze]
    obs = mirror_state(obs) if mirrored else np.array(obs, copy=True)
    obs[..., 0] += dx
    obs[..., 1] += dy
    return obs


def actions_to_d4rl(actions: np.ndarray, maze: str) -> np.ndarray:
    """[..., 8] actions of Minari's `maze` data for the ant in D4RL's frame."""
    return mirror_actions(actions) if FRAMES[maze][0] else actions
