"""Environment registry: task name -> MJX environment and D4RL reference returns."""
from wsrl_mjx.envs.registry import ENV_SPECS, EnvSpec, make_env, normalized_score
from wsrl_mjx.envs.wrappers import EnvState, Transition, VecEnv

__all__ = ['ENV_SPECS', 'EnvSpec', 'EnvState', 'Transition', 'VecEnv', 'make_env', 'normalized_score']
