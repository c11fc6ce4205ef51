"""Benchmarks: python -m wsrl_mjx.bench {online,offline,profile,checkpoint} [--out FILE] [--steps N]
                 [--config=configs/locomotion.py:<preset>] [--config.<key>=...] [--seeds N] [--rounds N]
                 [--buffer_capacity N] [--cpu_devices N]

`online` and `offline` time the sizes of a config: `--config` and `--config.<key>` flags as for
`python -m wsrl_mjx.train`, WSRL's locomotion configuration (the `paper` preset: 10 critics, UTD 4,
2x256, batch 256, halfcheetah) when no --config is given; `--config=configs/locomotion.py:default`
times the CPU default's 2x64. `online` measures, one env per seed and `--seeds` seeds vmapped in one
program (1 by default):
  - the fused online program (act -> MJX step -> buffer insert -> updates, one lax.scan per chunk);
  - the same updates alone (a lax.scan of sac.update on a fixed batch: no env, no buffer);
  - the reference implementation's way of driving it: a Python loop over single steps of native MuJoCo
    (gymnasium's HalfCheetah-v5, Hopper-v5 or Walker2d-v5; none for ant, whose gymnasium observation
    differs from brax's), a numpy ring buffer and one jitted update call per step (one seed; with
    `--seeds=N` the speedup is over N such loops run one after another);
  - this machine's fp32 matmul rate (1024^3), for the update's arithmetic rate in context;
each in `--rounds` interleaved rounds (3 by default), the best round counting, with the compile
seconds of each program. The replay buffers (the fused program's and the loop's) hold
`--buffer_capacity` transitions, 10k by default. `offline` measures pretraining updates/s of CQL,
Cal-QL and IQL at the config's sizes, in the actor phase the config spends its pretraining in
(cloning the data where its actor clones throughout, as the default's; SAC's actor step otherwise),
summed over `--seeds` seeds in one program (on a CPU one after another, as runs pretrain there;
`WSRL_MJX_SEQUENTIAL_SEEDS=0` vmaps them);
`profile` where the time goes: one traced chunk of the fused online program (`--seeds` seeds) and one
of the config's pretraining algorithm, each op's time summed by kind (matmul, elementwise, reduction,
copy...) and by the code that built it (MJX, replay buffer, networks, optimizer), per env step and per
update (wsrl_mjx/profiling.py);
`checkpoint` the save time of a full 1M-transition state (paper sizes) and the online phase's
slowdown with checkpoints (see each function). `--cpu_devices=N` splits the seeds of `online` and
`offline` over N CPU devices, as for `train`.
"""
from __future__ import annotations

import json
import os
import sys
import time

from absl import flags

from wsrl_mjx.cli import HELP_FLAGS, UsageError, exit_on_help, fail

_OUT = flags.DEFINE_string('out', None, 'Write the figures as JSON to this file.')
_STEPS = flags.DEFINE_integer('steps', 20, 'Timed env steps per measurement (after compilation).')
_ROUNDS = flags.DEFINE_integer('rounds', 3, 'online: timing rounds; each figure is its best round.')
_BUFFER = flags.DEFINE_integer('buffer_capacity', 10_000, 'online: replay buffer capacity (transitions).')
PAPER = 'configs/locomotion.py:paper'  # what is timed without --config (the installed file, see main)
# The CLI flags of train that mean nothing to a benchmark.
_RUN_FLAGS = ('run_dir', 'resume', 'pretrained_from', 'quiet', 'coordinator_address', 'num_processes', 'process_id')
# gymnasium's native-MuJoCo task for the host loop, where its observation and action sizes are brax's.
HOST_LOOP_ENVS = {'halfcheetah': 'HalfCheetah-v5', 'hopper': 'Hopper-v5', 'walker2d': 'Walker2d-v5'}


def matmul_gflops(n: int = 1024, min_seconds: float = 0.5) -> float:
    """fp32 n^3 matmul rate with XLA's default precision, repeated until `min_seconds` have passed (a
    GPU does one in microseconds: a fixed count would time the dispatch)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.matmul)
    f(a, b).block_until_ready()
    reps, seconds = 10, 0.0
    while seconds < min_seconds:
        reps *= 2
        tic = time.perf_counter()
        for _ in range(reps):
            c = f(a, b)
        c.block_until_ready()
        seconds = time.perf_counter() - tic
    return 2 * n**3 * reps / seconds / 1e9


def wsrl_config(steps: int, buffer_capacity: int = 10_000, preset: str = 'paper', cfg=None):
    """The config timed: `cfg` (a validated run config; by default the `preset` of
    configs/locomotion.py) set up as an online program alone, `steps` env steps per chunk."""
    import copy

    if cfg is None:
        from wsrl_mjx.configs import locomotion

        cfg = locomotion.get_config(preset)
    cfg = copy.deepcopy(cfg)
    cfg.method = 'scratch'  # the online program alone
    cfg.warmup_steps = 1_000  # uniform actions: a buffer to sample from
    cfg.log_interval = steps
    cfg.online_steps = cfg.warmup_steps + 2 * steps
    cfg.buffer_capacity = buffer_capacity
    return cfg


def fused_timer(cfg, steps: int, seeds: int):
    """(time one chunk of `steps` env steps of the fused program, its state, compile seconds). The state
    is the program's input: the first timed chunk donates it, so read it before that."""
    import jax

    from wsrl_mjx.experiment import Experiment
    from wsrl_mjx.pipeline.programs import compile_online_programs

    tic = time.perf_counter()
    experiment = Experiment.from_config(cfg, seeds)
    progs = compile_online_programs(experiment.spec)
    run_key, agent_key = experiment.keys()[:2]
    state = progs.init(run_key, progs.init_agent(agent_key))
    compile_s = time.perf_counter() - tic
    state, _ = progs.warmup(state)
    state, _ = progs.train(state)  # first chunk: caches warm
    jax.block_until_ready(state)
    carried = state

    def timed() -> float:
        nonlocal carried
        tic = time.perf_counter()
        carried, _ = progs.train(carried)
        jax.block_until_ready(carried)
        return time.perf_counter() - tic

    return timed, state, compile_s


def updates_only_timer(agent_cfg, state, steps: int, seeds: int):
    """(timer, compile seconds) of sac.update scanned over `steps` env steps' worth, on one fixed batch
    per seed, vmapped over the seed axis like the fused program (no env, no buffer)."""
    import jax

    from kernels.replay import replay_sample
    from wsrl_mjx import parallel
    from wsrl_mjx.agents import sac

    batch = jax.vmap(lambda b, k: replay_sample(b, k, agent_cfg.critic_steps * agent_cfg.batch_size))(
        state.buffer, jax.vmap(jax.random.key)(jax.numpy.arange(seeds)))

    def updates(agent, batch, key):
        def body(agent, key):
            agent, metrics = sac.update(agent, batch, key, agent_cfg)
            return agent, metrics['critic_loss']
        return jax.lax.scan(body, agent, jax.random.split(key, steps))

    run = jax.jit(jax.vmap(updates), donate_argnums=0, compiler_options=parallel.compiler_options())
    keys = jax.vmap(jax.random.key)(jax.numpy.arange(seeds))
    tic = time.perf_counter()
    agent, _ = run(jax.tree.map(lambda x: x.copy(), state.agent), batch, keys)  # compile, caches warm
    jax.block_until_ready(agent)
    compile_s = time.perf_counter() - tic

    def timed() -> float:
        nonlocal agent
        tic = time.perf_counter()
        agent, _ = run(agent, batch, keys)
        jax.block_until_ready(agent)
        return time.perf_counter() - tic

    return timed, compile_s


def host_loop_timer(agent_cfg, state, steps: int, capacity: int, task: str = 'HalfCheetah-v5'):
    """(timer, compile seconds) of `steps` env steps of the reference-style loop: native MuJoCo
    (gymnasium's `task`), numpy buffer, a jitted update per step (one seed)."""
    import gymnasium as gym
    import jax
    import numpy as np

    from wsrl_mjx import parallel
    from wsrl_mjx.agents import sac
    from wsrl_mjx.envs.wrappers import Transition

    env = gym.make(task)
    obs_dim, act_dim = agent_cfg.obs_dim, agent_cfg.act_dim
    store = {'observation': np.zeros((capacity, obs_dim), np.float32), 'action': np.zeros((capacity, act_dim), np.float32),
             'reward': np.zeros(capacity, np.float32), 'next_observation': np.zeros((capacity, obs_dim), np.float32),
             'mask': np.zeros(capacity, np.float32)}
    agent = jax.tree.map(lambda x: x[0].copy(), state.agent)
    # Compiled like the fused program, so the comparison is of the two ways of driving the update.
    update = jax.jit(lambda a, b, k: sac.update(a, b, k, agent_cfg), donate_argnums=0,
                     compiler_options=parallel.compiler_options())
    act = jax.jit(lambda params, o, k: sac.sample_action(params, o[None], k, agent_cfg)[0][0],
                  compiler_options=parallel.compiler_options())
    rng = np.random.default_rng(0)
    key = jax.random.key(0)
    obs, _ = env.reset(seed=0)
    size = 0

    def env_step(obs, action, size):
        """Steps the env and stores the transition; returns (next obs to act on, size)."""
        next_obs, reward, terminated, truncated, _ = env.step(action)
        row = size % capacity
        for name, value in (('observation', obs), ('action', action), ('reward', reward),
                            ('next_observation', next_obs), ('mask', 1.0 - float(terminated))):
            store[name][row] = value
        obs = env.reset()[0] if (terminated or truncated) else next_obs
        return obs, size + 1

    def one_step(agent, obs, size, key):
        key, action_key, update_key = jax.random.split(key, 3)
        action = np.asarray(act(agent.actor, obs, action_key))
        obs, size = env_step(obs, action, size)
        idx = rng.integers(0, min(size, capacity), agent_cfg.critic_steps * agent_cfg.batch_size)
        batch = Transition(**{name: array[idx] for name, array in store.items()})
        agent, metrics = update(agent, batch, update_key)
        return agent, obs, size, key, metrics

    for _ in range(1_000):  # fill like the fused warmup (uniform actions, no updates)
        obs, size = env_step(obs, env.action_space.sample(), size)
    tic = time.perf_counter()
    agent, obs, size, key, metrics = one_step(agent, obs, size, key)  # compile
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - tic

    def timed() -> float:
        nonlocal agent, obs, size, key
        tic = time.perf_counter()
        for _ in range(steps):
            agent, obs, size, key, metrics = one_step(agent, obs, size, key)
        jax.block_until_ready(metrics)
        return time.perf_counter() - tic

    return timed, compile_s


def device_info() -> dict:
    import jax

    return {'device': jax.devices()[0].device_kind, 'device_count': jax.device_count(), 'jax': jax.__version__,
            'xla_flags': os.environ.get('XLA_FLAGS', '')}


def online(steps: int, seeds: int, rounds: int, buffer_capacity: int, cfg=None, config_name: str = 'paper') -> dict:
    """Compiles the three ways of running the updates, then times them in `rounds` rounds, one after
    another in each round with the matmul rate beside them; each figure is its best round. (On a shared
    VM the speed of a few seconds' work drifts by 10-20% and more: interleaving puts every figure under
    the same drift, and the best round is the one least slowed by neighbours.)"""
    from wsrl_mjx.agents.sac import update_flops
    from wsrl_mjx.experiment import Experiment

    cfg = wsrl_config(steps, buffer_capacity, cfg=cfg)
    info = device_info()
    print(f"{info['device']} (jax {info['jax']}), {config_name} sizes on {cfg.env}, {seeds} seed(s), "
          f"{rounds} round(s), buffer of {buffer_capacity}", flush=True)
    fused, state, compile_s = fused_timer(cfg, steps, seeds)
    print(f'compiled the fused program in {compile_s:.0f} s', flush=True)
    agent_cfg = Experiment.from_config(cfg, seeds).spec.online.agent
    updates_only, updates_compile_s = updates_only_timer(agent_cfg, state, steps, seeds)
    timers = {'fused': fused, 'updates_only': updates_only}
    compile_seconds = {'fused': compile_s, 'updates_only': updates_compile_s}
    if cfg.env in HOST_LOOP_ENVS:
        timers['host_loop'], compile_seconds['host_loop'] = host_loop_timer(
            agent_cfg, state, steps, buffer_capacity, HOST_LOOP_ENVS[cfg.env])
    env_steps = {'fused': seeds * steps, 'updates_only': seeds * steps, 'host_loop': steps}
    per_round = {name: [] for name in ('matmul', *timers)}  # GFLOP/s, env steps/s (all seeds)
    for i in range(rounds):
        per_round['matmul'].append(matmul_gflops())
        for name, timed in timers.items():
            per_round[name].append(env_steps[name] / timed())
        print(f'round {i + 1}: ' + ', '.join(f'{name} {values[-1]:.2f}' for name, values in per_round.items()),
              flush=True)
    best = {name: max(values) for name, values in per_round.items()}
    flops = update_flops(agent_cfg)
    gflops = flops * best['fused'] / 1e9
    host_loop = best.get('host_loop')
    result = {
        **info,
        'config': config_name,
        'env': cfg.env,
        'critic_hidden': list(cfg.agent.critic_hidden),
        'actor_hidden': list(cfg.agent.actor_hidden),
        'num_critics': cfg.agent.num_critics,
        'critic_steps': cfg.agent.critic_steps,
        'batch_size': cfg.agent.batch_size,
        'seeds': seeds,
        'rounds': rounds,
        'buffer_capacity': buffer_capacity,
        'env_steps_per_s': best['fused'],
        'updates_per_s': best['fused'] * agent_cfg.critic_steps,
        'updates_only_per_s': best['updates_only'] * agent_cfg.critic_steps,
        'overhead_ratio': best['fused'] / best['updates_only'],
        'host_loop_env_steps_per_s': host_loop,
        'speedup_over_host_loop': best['fused'] / host_loop if host_loop else None,
        'update_gflop': flops / 1e9,
        'update_gflops_per_s': gflops,
        'matmul_gflops_per_s': best['matmul'],
        'matmul_fraction': gflops / best['matmul'],
        'compile_s': compile_s,
        'compile_s_per_program': compile_seconds,
        'per_round': per_round,
    }
    print(f"fused: {result['env_steps_per_s']:.2f} env steps/s, {result['updates_per_s']:.2f} critic updates/s "
          f"over {seeds} seed(s)")
    print(f"updates only: {result['updates_only_per_s']:.2f} critic updates/s")
    if host_loop:
        print(f"host loop (native MuJoCo, numpy buffer, jitted update per step, one seed): {host_loop:.2f} env steps/s")
    print(f"fp32 matmul 1024^3: {result['matmul_gflops_per_s']:.1f} GFLOP/s")
    print(f"overhead ratio (fused / updates-only): {result['overhead_ratio']:.3f}")
    if host_loop:
        print(f"speedup over the host loop{f' (run for {seeds} seeds one after another)' if seeds > 1 else ''}: "
              f"{result['speedup_over_host_loop']:.2f}x")
    print('compile: ' + ', '.join(f'{name} {seconds:.1f} s' for name, seconds in compile_seconds.items()))
    print(f"update arithmetic: {flops / 1e9:.2f} GFLOP per env step, {gflops:.1f} GFLOP/s = "
          f"{100 * result['matmul_fraction']:.0f}% of the 1024^3 matmul rate")
    return result


SYNTHETIC_ROWS = 100_000


def synthetic_dataset(env: str):
    """A dataset of SYNTHETIC_ROWS random rows shaped like `env`'s transitions (an update's cost does
    not depend on the data's values)."""
    import numpy as np

    from wsrl_mjx.data.dataset import Dataset
    from wsrl_mjx.envs.registry import ENV_SPECS

    rng = np.random.default_rng(0)
    n = SYNTHETIC_ROWS
    obs, act = ENV_SPECS[env].obs_dim, ENV_SPECS[env].act_dim
    return Dataset(
        observations=rng.normal(size=(n, obs)).astype(np.float32), actions=rng.uniform(-1, 1, (n, act)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32), next_observations=rng.normal(size=(n, obs)).astype(np.float32),
        terminals=np.zeros(n, bool), timeouts=(np.arange(n) % 1000) == 999)


def pretrain_config(steps: int, algo: str, cfg):
    """`cfg` set up to time `steps`-update chunks of pretraining with `algo`."""
    cfg = wsrl_config(steps, cfg=cfg)
    # `offline` times the second chunk, `profile` the third: each clones the data's actions where the
    # preset's actor clones them for all of pretraining (the default), and takes SAC's actor step where
    # it never clones (paper).
    cloning = cfg.pretrain.bc_steps >= cfg.pretrain.steps
    cfg.method = 'wsrl'  # a method that pretrains
    cfg.pretrain.algo = algo
    cfg.pretrain.log_interval = steps
    cfg.pretrain.steps = 3 * steps  # in chunks of `steps` (log_interval)
    cfg.pretrain.eval_interval = steps
    cfg.pretrain.bc_steps = 3 * steps if cloning else min(cfg.pretrain.bc_steps, steps)
    return cfg


def pretrain_programs(cfg, dataset, seeds: int = 1):
    """(compiled pretraining programs, the dataset on the device, initial state) for `seeds` seeds."""
    from wsrl_mjx.experiment import Experiment
    from wsrl_mjx.pipeline import offline as offline_pipeline
    from wsrl_mjx.pipeline.programs import compile_pretrain_programs

    experiment = Experiment.from_config(cfg, seeds, SYNTHETIC_ROWS)
    progs = compile_pretrain_programs(experiment.pretrain_spec)
    _, agent_key, _, pretrain_key = experiment.keys()
    data = offline_pipeline.from_dataset(dataset, cfg.agent.discount, sharding=progs.data_sharding)
    return progs, data, progs.init(pretrain_key, progs.init_agent(agent_key))


def offline(steps: int, cfg=None, config_name: str = 'paper', seeds: int = 1) -> dict:
    """Pretraining updates/s of CQL, Cal-QL and IQL at a config's sizes (`paper`: WSRL's locomotion
    sizes, 10 critics of 2x256, batch 256, 10 sampled actions; `default`: the CPU preset's 2x64, with
    its behaviour-cloning actor term), summed over `seeds` seeds in one program (on a CPU run one after
    another, `parallel.sequential_pretraining`), on `synthetic_dataset`."""
    import jax

    from wsrl_mjx import parallel

    base = wsrl_config(steps, cfg=cfg)
    dataset = synthetic_dataset(base.env)
    result = {**device_info(), 'config': config_name, 'env': base.env,
              'critic_hidden': list(base.agent.critic_hidden), 'num_critics': base.agent.num_critics,
              'seeds': seeds, 'sequential_seeds': parallel.sequential_pretraining()}
    for algo in ('cql', 'calql', 'iql'):
        tic = time.perf_counter()
        progs, data, state = pretrain_programs(pretrain_config(steps, algo, base), dataset, seeds)
        state, _ = progs.train(state, data)  # first call: caches warm
        jax.block_until_ready(state)
        compile_s = time.perf_counter() - tic
        tic = time.perf_counter()
        state, _ = progs.train(state, data)
        jax.block_until_ready(state)
        rate = seeds * steps / (time.perf_counter() - tic)
        result[algo] = {'updates_per_s': rate, 'compile_and_first_chunk_s': compile_s}
        print(f'{algo}: {rate:.2f} pretraining updates/s{f" in all ({seeds} seeds)" if seeds > 1 else ""} '
              f'(batch {base.pretrain.batch_size}; compile + first chunk {compile_s:.0f} s)', flush=True)
        data.delete()
    return result


def checkpoint(steps: int) -> dict:
    """Time of one save of the complete online state with a full 1M-transition buffer (WSRL's locomotion
    networks), and the online phase's slowdown with checkpoints on versus off: a chunk of `steps` env
    steps with a save started after it (asynchronous: the next chunk overlaps the writes), against the
    same chunks without saves."""
    import shutil
    import tempfile

    import jax

    from wsrl_mjx.checkpoint import Checkpointer
    from wsrl_mjx.experiment import Experiment
    from wsrl_mjx.pipeline.programs import compile_online_programs

    cfg = wsrl_config(steps)
    cfg.buffer_capacity = 1_000_000
    experiment = Experiment.from_config(cfg, 1)
    progs = compile_online_programs(experiment.spec)
    run_key, agent_key = experiment.keys()[:2]
    state = progs.init(run_key, progs.init_agent(agent_key))
    # Full buffer: the bytes of a save do not depend on the values, only on the capacity.
    state = state.replace(buffer=state.buffer.replace(size=state.buffer.size * 0 + cfg.buffer_capacity))
    state, _ = progs.warmup(state)
    state, _ = progs.train(state)
    jax.block_until_ready(state)
    leaves = jax.tree.leaves(state)
    size_gb = sum(x.size * x.dtype.itemsize for x in leaves if hasattr(x, 'dtype') and x.dtype != object) / 1e9
    directory = tempfile.mkdtemp(prefix='wsrl_mjx_bench_')
    try:
        checkpointer = Checkpointer(directory)
        tic = time.perf_counter()
        checkpointer.save(1, (state, state.key), {'bench': True})
        blocking = time.perf_counter() - tic
        checkpointer.wait()
        total = time.perf_counter() - tic
        print(f'save of {size_gb:.2f} GB: {blocking:.2f} s blocking, {total:.2f} s until on disk', flush=True)

        def chunks(save: bool, n: int = 3) -> float:
            nonlocal state
            tic = time.perf_counter()
            for i in range(n):
                state, _ = progs.train(state)
                jax.block_until_ready(state)
                if save:
                    checkpointer.save(2 + i + (100 if save else 0), (state, state.key), {'bench': True})
            checkpointer.wait()
            return time.perf_counter() - tic

        off = chunks(False)
        on = chunks(True)
        checkpointer.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    slowdown = on / off - 1.0
    steps_per_s = 3 * steps / off
    # At the default interval the run pays the extra time of one save per checkpoint_interval steps.
    per_save = (on - off) / 3
    interval_s = cfg.checkpoint_interval / steps_per_s
    at_default = per_save / interval_s
    print(f'{steps}-step chunks: {off:.1f} s without saves, {on:.1f} s with a save after every chunk '
          f'({100 * slowdown:.1f}% slower; {per_save:.2f} s per save)')
    print(f'at the default interval ({cfg.checkpoint_interval} env steps = {interval_s:.0f} s at '
          f'{steps_per_s:.2f} env steps/s): {100 * at_default:.2f}% slower')
    return {'state_gb': size_gb, 'save_blocking_s': blocking, 'save_total_s': total, 'chunk_steps': steps,
            'chunks_s_without_saves': off, 'chunks_s_with_saves': on, 'slowdown_with_save_every_chunk': slowdown,
            'seconds_per_save_in_run': per_save, 'checkpoint_interval': cfg.checkpoint_interval,
            'slowdown_at_default_interval': at_default}


def profile(steps: int, seeds: int, cfg=None, config_name: str = 'paper', top: int = 15) -> dict:
    """Where the time goes (wsrl_mjx.profiling): one traced chunk of `steps` env steps of the fused online
    program (`--seeds` seeds vmapped), then one traced chunk of `steps` updates of the config's
    pretraining algorithm (one seed, the synthetic dataset of `offline`); each op's time summed by kind
    (matmul, elementwise, reduction, copy, gather...) and by the source that built it (MJX, buffer,
    networks, optimizer...), per env step and per update."""
    import jax

    from wsrl_mjx import profiling
    from wsrl_mjx.experiment import Experiment
    from wsrl_mjx.pipeline.programs import compile_online_programs

    info = device_info()
    result = {**info, 'config': config_name, 'seeds': seeds, 'steps': steps}
    online_cfg = wsrl_config(steps, cfg=cfg)
    print(f"{info['device']} (jax {info['jax']}), {config_name} sizes on {online_cfg.env}, {seeds} seed(s)", flush=True)
    timed, state, compile_s = fused_timer(online_cfg, steps, seeds)
    del state
    # fused_timer ran the first chunk; profiling.profile runs an untraced one before the traced one.
    progs = compile_online_programs(Experiment.from_config(online_cfg, seeds).spec)
    online = profiling.profile(progs.train.compiled, timed, per=steps, top=top)
    online['compile_s'] = compile_s
    print(profiling.format_breakdown(f'fused online program ({seeds} seed(s))', online, 'env step'), flush=True)
    result['online'] = online

    algo = online_cfg.pretrain.algo
    pprogs, data, carried = pretrain_programs(pretrain_config(steps, algo, online_cfg), synthetic_dataset(online_cfg.env))
    carried, _ = pprogs.train(carried, data)  # the first chunk; profile runs an untraced one, then the traced one
    jax.block_until_ready(carried)

    def chunk():
        nonlocal carried
        carried, _ = pprogs.train(carried, data)
        jax.block_until_ready(carried)

    offline_result = profiling.profile(pprogs.train.compiled, chunk, per=steps, top=top)
    print(profiling.format_breakdown(f'{algo} pretraining (1 seed)', offline_result, 'update'), flush=True)
    result[f'pretrain_{algo}'] = offline_result
    data.delete()
    return result


BENCHES = {'online': online, 'offline': offline, 'checkpoint': checkpoint, 'profile': profile}


def main(argv: list[str]) -> None:
    if any(arg in HELP_FLAGS for arg in argv[1:]):
        from wsrl_mjx import entry  # noqa: F401  defines --config and --seeds, so that --help lists them
    exit_on_help(argv, __doc__)
    given = any(a.startswith('--config=') for a in argv[1:])
    overrides = [a[len('--config.'):] for a in argv[1:] if a.startswith('--config.')]
    if not given:  # the paper preset; --config.<key> flags apply to whichever preset it is
        argv = [argv[0], f'--config={PAPER}', *argv[1:]]
    for arg in argv[1:]:
        name = arg.lstrip('-').split('=')[0]
        if arg.startswith('--') and name.removeprefix('no') in _RUN_FLAGS:
            fail(f'--{name}: a flag of python -m wsrl_mjx.train that no benchmark takes')
    # --config (with its --config.<key> overrides, which ml_collections reads from sys.argv) and --seeds
    # are the flags train has too; entry defines them when imported, which must come after sys.argv is set.
    sys.argv = argv
    from wsrl_mjx import entry

    try:
        cfg, seeds = entry.parse_config(argv)  # train's config flags, validation and one-line errors
    except UsageError as e:
        fail(str(e))
    names = [a for a in argv[1:] if not a.startswith('-')]
    if len(names) != 1 or names[0] not in BENCHES:
        fail(f'name one benchmark: {", ".join(BENCHES)}')
    bench, steps = names[0], _STEPS.value
    for name, value in (('steps', steps), ('rounds', _ROUNDS.value), ('buffer_capacity', _BUFFER.value)):
        if value < 1:
            fail(f'--{name}={value}: must be a positive integer')
    if seeds != 1 and bench == 'checkpoint':
        fail(f'--seeds={seeds}: the checkpoint benchmark runs one seed')
    for name in ('rounds', 'buffer_capacity'):
        if flags.FLAGS[name].present and bench != 'online':
            fail(f'--{name}={flags.FLAGS[name].value}: only the online benchmark takes --{name}')
    if flags.FLAGS['cpu_devices'].present and bench not in ('online', 'offline'):
        fail(f'--cpu_devices={flags.FLAGS["cpu_devices"].value}: only the online and offline benchmarks take '
             f'--cpu_devices (profile times its pretraining, and checkpoint all of its work, on one seed)')
    from wsrl_mjx import parallel

    try:
        parallel.check_seeds(seeds)
    except UsageError as e:
        fail(str(e))
    if (given or overrides) and bench == 'checkpoint':
        fail('--config: the checkpoint benchmark times the paper sizes only')
    preset = next((a.split(':', 1)[-1] for a in argv[1:] if a.startswith('--config=')), 'paper')
    name = ' '.join([preset if given else 'paper', *overrides])
    result = (online(steps, seeds, _ROUNDS.value, _BUFFER.value, cfg, name) if bench == 'online'
              else offline(steps, cfg, name, seeds) if bench == 'offline'
              else profile(steps, seeds, cfg, name) if bench == 'profile' else checkpoint(steps))
    if _OUT.value:
        with open(_OUT.value, 'w') as f:
            json.dump(result, f, indent=2)


if __name__ == '__main__':
    main(sys.argv)
