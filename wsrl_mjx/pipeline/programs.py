"""Jitted, seed-vmapped programs of a run. Each takes and returns the whole state, donated."""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax

from wsrl_mjx.agents import sac
from wsrl_mjx.config import Schedule
from wsrl_mjx.envs import make_env
from wsrl_mjx.pipeline import evaluate, online


@dataclasses.dataclass(frozen=True)
class ProgramSpec:
    """Everything static that shapes the compiled programs (hashable: programs are cached on it)."""
    env_name: str
    episode_length: int
    online: online.OnlineSpec
    plan: Schedule
    warmup_policy: str
    eval_episodes: int
    seeds: int


@dataclasses.dataclass(frozen=True)
class OnlinePrograms:
    init_agent: Callable  # keys [S] -> SACState with leading seed axis (runs op by op, see below)
    init: Callable  # (keys [S], SACState [S]) -> OnlineState with leading seed axis
    warmup: Callable | None  # OnlineState -> (OnlineState, ChunkMetrics): warmup, no updates
    train: Callable  # OnlineState -> (OnlineState, ChunkMetrics): chunk_iterations steps with updates
    evaluate: Callable  # (actor params [S, ...], keys [S]) -> returns [S, episodes]


@functools.lru_cache(maxsize=4)
def compile_online_programs(spec: ProgramSpec) -> OnlinePrograms:
    """Traces and compiles every program of a run once, ahead of time; cached per spec in this process."""
    env = make_env(spec.env_name, spec.episode_length)
    init = functools.partial(online.init_state, env=env, spec=spec.online)
    warmup = functools.partial(online.run_chunk, env=env, spec=spec.online, iterations=spec.plan.warmup_iterations,
                               policy=spec.warmup_policy, learn=False)
    train = functools.partial(online.run_chunk, env=env, spec=spec.online, iterations=spec.plan.chunk_iterations,
                              policy='policy', learn=True)
    evaluate_fn = functools.partial(evaluate.evaluate, env=env, cfg=spec.online.agent, episodes=spec.eval_episodes)
    # Not jitted: on 2-core CPUs one XLA program holding the ten members' orthogonal inits (batched QR
    # custom calls) never returned from execution. Op by op it takes a few seconds.
    init_agent = jax.vmap(functools.partial(sac.init, cfg=spec.online.agent))

    keys = jax.ShapeDtypeStruct((spec.seeds,), jax.random.key(0).dtype)
    agent = jax.eval_shape(init_agent, keys)
    init_jit = jax.jit(jax.vmap(init))
    state = jax.eval_shape(init_jit, keys, agent)
    init = init_jit.lower(keys, agent).compile()
    return OnlinePrograms(
        init_agent=init_agent,
        init=init,
        warmup=(jax.jit(jax.vmap(warmup), donate_argnums=0).lower(state).compile()
                if spec.plan.warmup_iterations else None),
        train=jax.jit(jax.vmap(train), donate_argnums=0).lower(state).compile(),
        evaluate=jax.jit(jax.vmap(evaluate_fn)).lower(state.agent.actor, keys).compile(),
    )
