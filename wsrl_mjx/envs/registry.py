"""Locomotion tasks on MJX through brax.envs, with the D4RL reference returns for normalised scores.

brax's halfcheetah, hopper and walker2d use the Gym/D4RL observation and action sizes, rewards and
frame skips (17/6, 11/3, 17/6; dt 0.05, 0.008, 0.008), so D4RL-normalised scores apply. brax's ant
observes 27 values (no contact forces), not the 111 of D4RL's ant-v2: its scores use D4RL's ant
reference returns, but D4RL ant files do not fit it. antmaze-umaze, antmaze-medium and antmaze-large
are D4RL's AntMaze tasks, built here on MJX (wsrl_mjx/envs/antmaze.py): 29 observations as D4RL's,
return 1 for reaching the goal, normalised with D4RL's 0 and 1 (the success rate in percent).
antgoal is the same ant on open ground walking to goals (the controller that collects antmaze data);
its score is the metres gained towards its goals per episode.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import warnings

import numpy as np


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    name: str
    brax_name: str
    random_return: float  # D4RL REF_MIN_SCORE
    expert_return: float  # D4RL REF_MAX_SCORE
    obs_dim: int  # of the brax task (checked against the loaded model in the tests)
    act_dim: int
    # Sparse-reward tasks: the reward of every step short of the goal (Cal-QL's Monte-Carlo bound gives
    # an episode of nothing else failure_reward / (1 - discount)); None for dense rewards.
    failure_reward: float | None = None
    score_name: str = 'D4RL-normalised score'  # what the normalised score is, for titles and axes


# Sizes are known without loading the model, so datasets are validated before any MJX work starts.
ENV_SPECS = {
    'halfcheetah': EnvSpec('halfcheetah', 'halfcheetah', -280.178953, 12135.0, 17, 6),
    'hopper': EnvSpec('hopper', 'hopper', -20.272305, 3234.3, 11, 3),
    'walker2d': EnvSpec('walker2d', 'walker2d', 1.629008, 4592.3, 17, 6),
    'ant': EnvSpec('ant', 'ant', -325.6, 3879.7, 27, 8),
    'antmaze-umaze': EnvSpec('antmaze-umaze', 'antmaze_umaze', 0.0, 1.0, 29, 8, 0.0, 'success rate (%)'),
    'antmaze-medium': EnvSpec('antmaze-medium', 'antmaze_medium', 0.0, 1.0, 29, 8, 0.0, 'success rate (%)'),
    'antmaze-large': EnvSpec('antmaze-large', 'antmaze_large', 0.0, 1.0, 29, 8, 0.0, 'success rate (%)'),
    # The goal-reaching ant that collects antmaze data: return = 10 x the metres gained towards its
    # goals, so 0 and 1000 make the score the metres gained per episode.
    'antgoal': EnvSpec('antgoal', 'antgoal', 0.0, 1000.0, 29, 8, score_name='metres gained towards the goals per episode'),
}


def normalized_score(env_name: str, returns):
    """D4RL-normalised score on a 0-100 scale: 100 * (R - random) / (expert - random)."""
    spec = ENV_SPECS[env_name]
    return 100.0 * (np.asarray(returns, np.float64) - spec.random_return) / (spec.expert_return - spec.random_return)


@functools.lru_cache(maxsize=None)
def make_env(env_name: str, episode_length: int):
    """The MJX task `env_name` wrapped for training (see `VecEnv`)."""
    with _quiet_loading(), _models_on_this_process():
        from brax import envs as brax_envs

        if env_name.startswith('antmaze') or env_name == 'antgoal':
            from wsrl_mjx.envs import antmaze

            antmaze.register()
        env = brax_envs.get_environment(ENV_SPECS[env_name].brax_name, backend='mjx')
    from wsrl_mjx.envs.wrappers import VecEnv

    return VecEnv(env=env, episode_length=episode_length)


@contextlib.contextmanager
def _quiet_loading():
    """Silences what loading brax's MJX tasks prints that does not concern this project: mujoco.mjx's
    import prints two lines to stdout when the optional GPU engine (warp) is not installed; MuJoCo's
    compiler warns that brax's halfcheetah asset uses a deprecated attribute (`settotalmass`, still
    applied); brax warns that it is unmaintained. Any other MuJoCo warning still reaches stderr."""
    import io
    import sys

    with contextlib.redirect_stdout(io.StringIO()):
        import mujoco
        import mujoco.mjx  # noqa: F401

    previous = mujoco.get_mju_user_warning()

    def warn(message: str) -> None:
        if 'settotalmass' not in message:
            print(f'WARNING: {message}', file=sys.stderr)

    mujoco.set_mju_user_warning(warn)
    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            yield
    finally:
        mujoco.set_mju_user_warning(previous)


@contextlib.contextmanager
def _models_on_this_process():
    """MJX puts a model's arrays on jax.devices()[0]. With several processes that device belongs to
    process 0, and every other process would hold a model it cannot read (its programs then refuse
    to close over it), so while a model loads, jax.devices() lists this process's devices only."""
    import jax

    if jax.process_count() == 1:
        yield
        return
    devices = jax.devices
    jax.devices = lambda backend=None: jax.local_devices(backend=backend)
    try:
        yield
    finally:
        jax.devices = devices
