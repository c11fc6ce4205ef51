"""Jitted programs of a run over all seeds. Each takes and returns the whole state, donated.

Every program is a per-seed function, vmapped over the seeds of a device inside shard_map over all
devices (wsrl_mjx.parallel), compiled ahead of time and cached per static spec.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

from wsrl_mjx import parallel
from wsrl_mjx.agents import registry, sac
from wsrl_mjx.envs import make_env
from wsrl_mjx.envs.wrappers import Transition
from wsrl_mjx.pipeline import evaluate, offline, online


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How a run's transitions split into compiled programs (all counts per seed)."""
    warmup_iterations: int  # env steps (of all num_envs envs) in the warmup program
    chunk_iterations: int  # env steps per training chunk
    chunks: int
    eval_every_chunks: int


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
    dataset_rows: int = 0  # rows of the offline data the training program takes (offline_ratio > 0)


@dataclasses.dataclass(frozen=True)
class OnlinePrograms:
    init_agent: Callable  # keys [S] -> SACState with leading seed axis (runs op by op, see below)
    init: Callable  # (keys [S], SACState [S]) -> OnlineState with leading seed axis
    warmup: Callable | None  # OnlineState -> (OnlineState, ChunkMetrics): warmup, no updates
    train: Callable  # (OnlineState[, OfflineData]) -> (OnlineState, ChunkMetrics): chunk_iterations steps
    evaluate: Callable  # (actor params [S, ...], keys [S]) -> returns [S, episodes]
    state_shape: Any  # OnlineState of ShapeDtypeStructs with the seed sharding (restore target)
    sharding: jax.sharding.NamedSharding  # of every per-seed array


def compile_online_programs(spec: ProgramSpec) -> OnlinePrograms:
    """Traces and compiles every program of a run once, ahead of time; cached per spec in this process.
    Of the plan only the iterations per call shape a program, so runs of other lengths share them."""
    return _compile_online_programs(dataclasses.replace(
        spec, plan=dataclasses.replace(spec.plan, chunks=0, eval_every_chunks=0)))


@functools.lru_cache(maxsize=4)
def _compile_online_programs(spec: ProgramSpec) -> OnlinePrograms:
    mesh = parallel.seed_mesh()
    sharding = parallel.seed_sharding(mesh)
    env = make_env(spec.env_name, spec.episode_length)
    init = functools.partial(online.init_state, env=env, spec=spec.online)
    warmup = functools.partial(online.run_chunk, env=env, spec=spec.online, iterations=spec.plan.warmup_iterations,
                               policy=spec.warmup_policy, learn=False)
    train = functools.partial(online.run_chunk, env=env, spec=spec.online, iterations=spec.plan.chunk_iterations,
                              policy='policy', learn=True)
    evaluate_fn = functools.partial(evaluate.evaluate, env=env, cfg=spec.online.agent, episodes=spec.eval_episodes)
    # Not jitted: on 2-core CPUs one XLA program holding the ten members' orthogonal inits (batched QR
    # custom calls) never returned from execution. Op by op it takes a few seconds.
    # An offline algorithm continued online keeps its own state (IQL's value network).
    init_agent = jax.vmap(functools.partial(registry.get(spec.online.update).init, cfg=spec.online.algo_cfg))
    keys, init, state = _compile_init(init_agent, init, spec.seeds, mesh)

    def chunk_program(fn, *shared):
        program = parallel.per_seed(fn, mesh, seeded=1, shared=len(shared))
        return _compile(jax.jit(program, donate_argnums=0).lower(state, *shared), sharding, 1)

    if spec.online.offline_ratio > 0:
        data = offline_data_shape(spec.online.agent, spec.dataset_rows, parallel.replicated(mesh))
        train_program = chunk_program(lambda state, data: train(state, data=data), data)
    else:
        train_program = chunk_program(train)
    return OnlinePrograms(
        init_agent=init_agent,
        init=init,
        warmup=chunk_program(warmup) if spec.plan.warmup_iterations else None,
        train=train_program,
        evaluate=_compile(jax.jit(parallel.per_seed(evaluate_fn, mesh, seeded=2)).lower(state.agent.actor, keys),
                          sharding, 2),
        state_shape=state,
        sharding=sharding,
    )


def _init_shapes(init_agent, init, seeds: int, mesh):
    """(keys shape, agent shape, jitted init, state shape) of init(keys [S], agent [S]) -> state, the
    seed axis split over `mesh`; shapes carry the seed sharding (restore targets, program inputs)."""
    sharding = parallel.seed_sharding(mesh)

    def sharded(tree):
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)

    keys = sharded(jax.ShapeDtypeStruct((seeds,), jax.random.key(0).dtype))
    agent = sharded(jax.eval_shape(init_agent, keys))
    init_jit = jax.jit(parallel.per_seed(init, mesh, seeded=2))
    return keys, agent, init_jit, sharded(jax.eval_shape(init_jit, keys, agent))


def _compile_init(init_agent, init, seeds: int, mesh):
    """(keys shape, compiled init, state shape), as _init_shapes, with init compiled."""
    keys, agent, init_jit, state = _init_shapes(init_agent, init, seeds, mesh)
    return keys, _compile(init_jit.lower(keys, agent), parallel.seed_sharding(mesh), 2), state


def _compile(lowered, sharding, seeded: int):
    """`lowered` compiled with `parallel.compiler_options`, its first `seeded` arguments put on the seed
    layout first. XLA gives zero-size outputs (MJX state has a few) a replicated layout, which an
    ahead-of-time program refuses as input on more than one device, and op-by-op results live on one
    device of one process; for arrays already laid out right the put is a no-op (no copy), so donation
    still hands the same buffers over."""
    compiled = lowered.compile(parallel.compiler_options())

    def call(*args):
        return compiled(*parallel.put(args[:seeded], sharding), *args[seeded:])

    call.compiled = compiled  # for its HLO text (wsrl_mjx.profiling)
    return call


def offline_data_shape(agent: sac.SACConfig, rows: int, sharding) -> offline.OfflineData:
    """Shapes of the on-device offline data of `rows` transitions, one copy per device."""
    def row(*shape, dtype=jnp.float32):
        return jax.ShapeDtypeStruct((rows, *shape), dtype, sharding=sharding)

    return offline.OfflineData(
        transitions=Transition(observation=row(agent.obs_dim), action=row(agent.act_dim), reward=row(),
                               next_observation=row(agent.obs_dim), mask=row()),
        mc_return=row(),
    )


@dataclasses.dataclass(frozen=True)
class PretrainSpec:
    algo: str  # cql, calql or iql
    algo_cfg: Any  # cql.CQLConfig or iql.IQLConfig
    batch_size: int
    chunk_updates: int
    dataset_rows: int
    seeds: int


@dataclasses.dataclass(frozen=True)
class PretrainPrograms:
    init_agent: Callable  # keys [S] -> agent state [S] (op by op)
    init: Callable  # (keys [S], agent [S]) -> PretrainState [S]
    train: Callable  # (PretrainState, OfflineData) -> (PretrainState, metrics): chunk_updates updates
    state_shape: Any
    data_sharding: jax.sharding.NamedSharding


def _pretrain_parts(spec: PretrainSpec):
    """(init_agent, init, update) of a pretraining algorithm."""
    algorithm = registry.get(spec.algo)
    init_agent = jax.vmap(functools.partial(algorithm.init, cfg=spec.algo_cfg))
    update = functools.partial(algorithm.update, cfg=spec.algo_cfg)

    def init(key, agent):
        return offline.PretrainState(agent=agent, key=key, updates=jnp.zeros((), jnp.int32))

    return init_agent, init, update


def pretrain_state_shape(spec: PretrainSpec):
    """The PretrainState's shapes and seed sharding (a restore target), without compiling anything."""
    init_agent, init, _ = _pretrain_parts(spec)
    return _init_shapes(init_agent, init, spec.seeds, parallel.seed_mesh())[3]


@functools.lru_cache(maxsize=4)
def compile_pretrain_programs(spec: PretrainSpec) -> PretrainPrograms:
    mesh = parallel.seed_mesh()
    init_agent, init, update = _pretrain_parts(spec)

    def chunk(state, data):
        return offline.run_chunk(state, data, update, spec.batch_size, spec.chunk_updates)

    _, init, state = _compile_init(init_agent, init, spec.seeds, mesh)
    data = offline_data_shape(spec.algo_cfg.sac, spec.dataset_rows, parallel.replicated(mesh))
    program = parallel.per_seed(chunk, mesh, seeded=1, shared=1, sequential=parallel.sequential_pretraining())
    train = _compile(jax.jit(program, donate_argnums=0).lower(state, data),
                     parallel.seed_sharding(mesh), 1)
    return PretrainPrograms(init_agent=init_agent, init=init, train=train,
                            state_shape=state, data_sharding=parallel.replicated(mesh))
