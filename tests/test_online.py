"""The smoke run (random-policy dataset -> CQL pretraining -> policy warmup -> ensemble SAC, 2 seeds):
the fused programs, the phase change, reproducibility and the run directory."""
import copy
import dataclasses
import json
import os
import platform

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import wsrl_mjx
from kernels.replay import replay_get
from test_sac import OBS, config
from wsrl_mjx import parallel, train
from wsrl_mjx.agents import sac
from wsrl_mjx.checkpoint import keys_to_data
from wsrl_mjx.config import schedule
from wsrl_mjx.envs.wrappers import StepInfo, Transition
from wsrl_mjx.experiment import Experiment
from wsrl_mjx.pipeline import offline, online
from wsrl_mjx.pipeline.programs import compile_online_programs, compile_pretrain_programs


def test_run_directory_contract(smoke_run):
    cfg, run_dir, summary, _, smoke_dataset = smoke_run
    assert {'config.json', 'metrics.jsonl', 'summary.json', 'curves.png', 'checkpoints', 'policies'} <= set(
        os.listdir(run_dir))
    assert any(name.startswith('events.out.tfevents') for name in os.listdir(run_dir))
    with open(os.path.join(run_dir, 'config.json')) as f:
        assert json.load(f)['dataset'] == cfg.dataset  # the data it learns from (wsrl reads its dataset)
    assert summary['dataset'] == cfg.dataset
    records = [json.loads(line) for line in open(os.path.join(run_dir, 'metrics.jsonl'))]
    assert {r['phase'] for r in records} == {'pretrain', 'warmup', 'finetune'}
    evals = [(r['phase'], r['step']) for r in records if 'normalized_score' in r]
    assert evals == [('pretrain', 40), ('warmup', 100), ('finetune', 200), ('finetune', 300), ('finetune', 400)]
    pretrain = [r for r in records if r['phase'] == 'pretrain' and 'cql_gap' in r]
    assert [r['step'] for r in pretrain] == [20, 40]
    assert all(np.all(np.isfinite(r['critic_loss'])) and r['updates_per_s'] > 0 for r in pretrain)
    train_records = [r for r in records if r['phase'] == 'finetune' and 'critic_loss' in r]
    assert len(train_records) == 3
    for r in train_records:
        assert np.all(np.isfinite(r['critic_loss'])) and r['env_steps_per_s'] > 0 and r['updates_per_s'] > 0
    with open(os.path.join(run_dir, 'summary.json')) as f:
        saved = json.load(f)
    assert saved == summary
    evaluated = [r for r in records if 'normalized_score' in r]
    assert saved['normalized_score_offline'] == evaluated[0]['normalized_score']
    assert saved['normalized_score_after_warmup'] == evaluated[1]['normalized_score']
    assert saved['normalized_score'] == evaluated[-1]['normalized_score']
    assert saved['normalized_score_mean'] == np.mean(saved['normalized_score'])
    from wsrl_mjx.data.dataset import summarize
    # The smoke dataset's 512 transitions hold no finished episode, so it has no score.
    assert saved['dataset_normalized_score'] == summarize(smoke_dataset, 'halfcheetah').get('normalized_score_mean')
    table = train.result_table(saved)
    assert 'offline' in table and 'after warmup' in table and 'final' in table
    from wsrl_mjx.plot import score_table
    row = score_table([run_dir]).splitlines()[1].split()
    online = [np.mean(r['normalized_score']) for r in evaluated[1:]]
    expected = [np.mean(saved['normalized_score_offline']), online[0], min(online), online[-1]]
    data = '-' if saved['dataset_normalized_score'] is None else f"{saved['dataset_normalized_score']:.1f}"
    # seeds, data, offline, warmup, lowest and its step, (back at 90% of offline), final, [interval]
    assert row[-10:-5] == ['2', data, *(f'{v:.1f}' for v in expected[:3])] and row[-3] == f'{expected[3]:.1f}'
    assert row[-5] == str(evaluated[1:][int(np.argmin(online))]['step'])


def test_result_table_puts_the_dataset_beside_the_scores():
    summary = {'method': 'wsrl', 'env': 'halfcheetah', 'seeds': [0, 1], 'online_steps': 15000,
               'dataset_normalized_score': 42.61, 'normalized_score_offline': [40.0, 42.0],
               'normalized_score_after_warmup': [38.0, 39.0], 'normalized_score': [50.0, 54.0]}
    lines = train.result_table(summary).splitlines()
    assert lines[1].split()[-1] == '42.6' and 'dataset' in lines[1]
    assert lines[2].split()[-3:] == ['41.0', '+-', '1.0'] and 'offline' in lines[2]
    assert lines[4].split()[-3:] == ['52.0', '+-', '2.0'] and '15000' in lines[4]
    assert 'after warmup' in lines[3]
    assert 'no warmup' in train.result_table({**summary, 'warmup_steps': 0}).splitlines()[3]


def test_registry_sizes_match_the_loaded_model(smoke_run):
    # The registry's sizes validate datasets before any model is loaded; collect checks every env's
    # loaded model against them at run time (loading all four here would take minutes).
    from wsrl_mjx.envs import make_env
    from wsrl_mjx.envs.registry import ENV_SPECS

    cfg = smoke_run[0]
    env, spec = make_env(cfg.env, cfg.episode_length), ENV_SPECS[cfg.env]
    assert (env.observation_size, env.action_size) == (spec.obs_dim, spec.act_dim)


def test_runs_of_other_lengths_share_the_compiled_programs(smoke_run):
    # Of the schedule only the iterations per program call shape a program: a longer run, evaluated
    # less often, gets the very programs the smoke run compiled (no second compilation).
    cfg, _, _, _, dataset = smoke_run
    longer = copy.deepcopy(cfg)
    longer.online_steps += 10 * cfg.log_interval
    longer.eval_interval *= 2
    assert schedule(longer) != schedule(cfg)
    assert (compile_online_programs(Experiment.from_config(longer, 2, len(dataset)).spec)
            is compile_online_programs(Experiment.from_config(cfg, 2, len(dataset)).spec))


def test_buffer_holds_every_online_transition_and_no_offline_data(smoke_run):
    cfg, _, _, state, dataset = smoke_run
    assert np.all(np.asarray(state.env_steps) == cfg.online_steps)
    assert np.all(np.asarray(state.buffer.size) == cfg.online_steps)  # capacity == online_steps in smoke
    # The online state is agent + buffer + envs + key + counter; no leaf has the dataset's rows.
    assert set(vars(state)) == {'agent', 'buffer', 'env', 'key', 'env_steps'}
    assert all(len(dataset) not in np.shape(leaf)[1:2] for leaf in jax.tree.leaves(state))


def test_hand_over_keeps_the_pretrained_agent_bit_for_bit(smoke_run):
    cfg, _, _, _, dataset = smoke_run
    experiment = Experiment.from_config(cfg, 2, len(dataset))
    progs, pprogs = compile_online_programs(experiment.spec), compile_pretrain_programs(experiment.pretrain_spec)
    run_key, agent_key, _, pretrain_key = experiment.keys()
    data = offline.from_dataset(dataset, cfg.agent.discount, sharding=pprogs.data_sharding)
    state = pprogs.init(pretrain_key, pprogs.init_agent(agent_key))
    state, _ = pprogs.train(state, data)
    pretrained = jax.tree.map(np.asarray, state.agent)
    # The ablation config.handover_temperature restarts alpha and its Adam state, and only those.
    restarted = dataclasses.replace(experiment, handover_temperature=0.5).hand_over(
        jax.tree.map(jnp.copy, state), progs, run_key).agent
    online_state = experiment.hand_over(state, progs, run_key)
    data.delete()
    assert all(leaf.is_deleted() for leaf in jax.tree.leaves(data))
    for a, b in zip(jax.tree.leaves(pretrained), jax.tree.leaves(online_state.agent), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert np.all(np.asarray(online_state.buffer.size) == 0)
    assert not np.allclose(np.asarray(jax.nn.softplus(pretrained.temperature)), 0.5, atol=1e-3)
    np.testing.assert_allclose(np.asarray(jax.nn.softplus(restarted.temperature)), [0.5, 0.5], rtol=1e-6)
    assert all(np.all(np.asarray(leaf) == 0) for leaf in jax.tree.leaves(restarted.temperature_opt))  # count, mu, nu
    for field in ('actor', 'critic', 'target_critic', 'actor_opt', 'critic_opt'):
        for a, b in zip(jax.tree.leaves(getattr(pretrained, field)), jax.tree.leaves(getattr(restarted, field)),
                        strict=True):
            np.testing.assert_array_equal(a, np.asarray(b))


def test_pretraining_seeds_in_sequence_equal_vmapped(smoke_run, monkeypatch):
    # On CPU a device runs its seeds' pretraining one after another (parallel.sequential_pretraining):
    # the same numbers as the vmapped program up to rounding (XLA compiles the two differently; at the
    # default's sizes they agreed bit for bit in one check, at these sizes not), and still one stream of
    # randomness per seed.
    cfg, _, _, _, dataset = smoke_run
    experiment = Experiment.from_config(cfg, 2, len(dataset))
    _, agent_key, _, pretrain_key = experiment.keys()
    trained = {}
    for sequential in ('1', '0'):
        monkeypatch.setenv('WSRL_MJX_SEQUENTIAL_SEEDS', sequential)
        pprogs = compile_pretrain_programs.__wrapped__(experiment.pretrain_spec)  # past the cache: a new program
        data = offline.from_dataset(dataset, cfg.agent.discount, sharding=pprogs.data_sharding)
        state, metrics = pprogs.train(pprogs.init(pretrain_key, pprogs.init_agent(agent_key)), data)
        trained[sequential] = jax.tree.map(np.asarray, keys_to_data((state, metrics)))
        data.delete()
    for a, b in zip(jax.tree.leaves(trained['1']), jax.tree.leaves(trained['0']), strict=True):
        if not np.issubdtype(b.dtype, np.floating):
            np.testing.assert_array_equal(a, b)  # keys, counters
        else:
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6 * max(1.0, float(np.abs(b).max())))
    kernel = np.asarray(trained['1'][0].agent.critic[0]['kernel'])
    assert not np.array_equal(kernel[0], kernel[1])  # two seeds, two different critics


def test_sequential_seeds_setting_is_checked(monkeypatch):
    monkeypatch.setenv('WSRL_MJX_SEQUENTIAL_SEEDS', 'yes')
    with pytest.raises(parallel.ParallelError, match='WSRL_MJX_SEQUENTIAL_SEEDS'):
        parallel.check_seeds(1)  # what the entry points call before any work
    monkeypatch.setenv('WSRL_MJX_SEQUENTIAL_SEEDS', '0')
    assert not parallel.sequential_pretraining()


def test_warmup_changes_nothing_but_the_buffer(smoke_run):
    # The actor evaluated right after warmup is the actor that left pretraining (no updates in warmup).
    from wsrl_mjx.data.policies import load_actor

    cfg, run_dir, _, _, _ = smoke_run
    for seed in (0, 1):
        left, _ = load_actor(os.path.join(run_dir, 'policies', f'seed{seed}_pretrain0000040.npz'))
        entered, meta = load_actor(os.path.join(run_dir, 'policies', f'seed{seed}_step0000100.npz'))
        assert meta['phase'] == 'warmup'
        for a, b in zip(jax.tree.leaves(left), jax.tree.leaves(entered), strict=True):
            np.testing.assert_array_equal(a, b)


def test_time_limit_keeps_true_final_observation(smoke_run):
    """Within an episode, next_observation[t] == observation[t+1]; at the time limit it is the true
    final observation, not the reset one, and it still bootstraps (mask 1: halfcheetah never terminates)."""
    cfg, _, _, state, _ = smoke_run
    data = jax.tree.map(np.asarray, jax.vmap(lambda b: replay_get(b, jnp.arange(b.capacity)))(state.buffer))
    n, length = cfg.num_envs, cfg.episode_length
    for seed in range(2):
        for env in range(n):
            rows = np.arange(env, cfg.online_steps, n)  # inserts interleave the envs step by step
            obs, next_obs = data.observation[seed, rows], data.next_observation[seed, rows]
            mask = data.mask[seed, rows]
            assert np.all(mask == 1.0)
            episode_end = (np.arange(len(rows)) % length) == length - 1
            same = np.all(next_obs[:-1] == obs[1:], axis=-1)
            assert np.all(same[~episode_end[:-1]])
            assert not np.any(same[episode_end[:-1]])  # a reset follows: different start state
            # Every episode starts from a fresh reset (halfcheetah: qpos noise U(-0.1, 0.1), qvel noise
            # 0.1 * N(0, 1)), and the stored final observation is the moving body, not such a state.
            starts = np.arange(0, len(rows), length)
            assert np.all(np.abs(obs[starts]).max(axis=-1) < 0.6)
            assert not np.allclose(obs[starts[0]], obs[starts[1]])  # each reset is a new draw
            ends = np.flatnonzero(episode_end)
            assert np.all(np.abs(next_obs[ends]).max(axis=-1) > 0.6)


def test_seeds_differ_and_a_run_reproduces(smoke_run, tmp_path):
    cfg, run_dir, summary, state, dataset = smoke_run
    kernel = np.asarray(state.agent.critic[0]['kernel'])
    assert not np.allclose(kernel[0], kernel[1])  # seeds 0 and 1 differ
    again_summary, again = train.run(cfg, seeds=2, run_dir=str(tmp_path / 'again'), quiet=True, dataset=dataset)
    for a, b in zip(jax.tree.leaves(keys_to_data(state)), jax.tree.leaves(keys_to_data(again)), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert again_summary['normalized_score'] == summary['normalized_score']


def test_collect_reproduces_the_generated_dataset(smoke_run):
    # The fixture's dataset was generated by the registry on first use; the same (env, level, size,
    # seed) collected again gives the same arrays and metadata.
    from wsrl_mjx.data.collect import collect

    cfg, _, _, _, dataset = smoke_run
    again = collect('halfcheetah', 'random', cfg.dataset_size, 0, quiet=True)
    for name in ('observations', 'actions', 'rewards', 'next_observations', 'terminals', 'timeouts'):
        np.testing.assert_array_equal(getattr(again, name), getattr(dataset, name))
    assert json.loads(json.dumps(again.meta)) == dataset.meta
    assert len(dataset) == cfg.dataset_size and dataset.timeouts.sum() == 64  # one cut episode per env
    assert [source['envs'] for source in dataset.meta['sources']] == [64]
    other = collect('halfcheetah', 'random', cfg.dataset_size, 1, quiet=True)
    assert not np.allclose(other.observations, dataset.observations)


@pytest.mark.skipif(jax.default_backend() != 'cpu' or platform.machine().lower() not in ('x86_64', 'amd64'),
                    reason="XLA:CPU's default dot kernels on x86-64")
def test_cpu_programs_compile_without_ynnpack_dot_fusions():
    # parallel.compiler_options keeps every dot on XLA's own kernels, which round alike on any device
    # layout; with XLA's defaults this CPU hands the ensemble's batched matmul to YNNPACK.
    x = jax.numpy.ones((10, 256, 256))
    lowered = jax.jit(lambda a, b: jax.numpy.einsum('mbi,mio->mbo', a, b)).lower(x, x)
    assert '__ynn_fusion' in lowered.compile().as_text()
    assert '__ynn_fusion' not in lowered.compile(parallel.compiler_options()).as_text()


@pytest.mark.skipif(platform.machine().lower() not in ('x86_64', 'amd64'), reason='an x86-64 XLA flag')
def test_cpu_code_has_no_fma_contraction(monkeypatch):
    # Importing wsrl_mjx (conftest does, before JAX starts) limits XLA:CPU to AVX: a*b + c rounds the
    # product first. a*b = 1 + 2^-11 + 2^-24 exactly; rounded to float32 it is 1 + 2^-11, so the sum is
    # 0, where one FMA would give 2^-24.
    a = np.float32(1 + 2**-12)
    c = -np.float32(1 + 2**-11)
    assert jax.jit(lambda a, b, c: a * b + c)(a, a, c) == 0.0
    # The flag is added to the user's XLA_FLAGS, and a max ISA the user names is kept.
    monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=2')
    wsrl_mjx._cpu_code_without_fma()
    assert os.environ['XLA_FLAGS'] == '--xla_force_host_platform_device_count=2 --xla_cpu_max_isa=AVX'
    monkeypatch.setenv('XLA_FLAGS', '--xla_cpu_max_isa=AVX2')
    wsrl_mjx._cpu_code_without_fma()
    assert os.environ['XLA_FLAGS'] == '--xla_cpu_max_isa=AVX2'


@flax.struct.dataclass
class _LinearEnvState:
    observation: jax.Array  # [num_envs, OBS]


class _LinearEnv:
    """Stands in for an MJX env in a program that is compiled, never run: the next observation mixes
    the observation and the action."""

    def reset(self, key, num_envs):
        return _LinearEnvState(jax.random.normal(key, (num_envs, OBS)))

    def step(self, state, action, key):
        next_observation = jnp.tanh(0.9 * state.observation + jnp.sum(action, axis=1, keepdims=True))
        reward = next_observation[:, 0]
        transition = Transition(observation=state.observation, action=action, reward=reward,
                                next_observation=next_observation, mask=jnp.ones_like(reward))
        return _LinearEnvState(next_observation), transition, StepInfo(done=reward > 0.99, episode_return=reward)


def test_training_program_copies_nothing_buffer_sized():
    # With one array per transition field, XLA:CPU fused the buffer write into the next batch's gather
    # and copied whole fields every env step (8 copies in this program); kernels/replay.py stores rows.
    capacity = 4099  # a size nothing else in the program has
    spec = online.OnlineSpec(agent=config(num_critics=2, num_min_critics=2, critic_steps=1, batch_size=8,
                                          critic_hidden=(16, 16), actor_hidden=(16, 16)),
                             num_envs=1, buffer_capacity=capacity)
    env = _LinearEnv()
    state = jax.eval_shape(jax.vmap(lambda key: online.init_state(key, sac.init(key, spec.agent), env, spec)),
                           jax.random.split(jax.random.key(0), 1))
    chunk = jax.vmap(lambda s: online.run_chunk(s, env, spec, 4, 'policy', True))
    hlo = jax.jit(chunk, donate_argnums=0).lower(state).compile(parallel.compiler_options()).as_text()
    copies = [line.strip() for line in hlo.splitlines() if ' copy(' in line and str(capacity) in line]
    assert not copies, copies


def test_iqm_and_its_stratified_bootstrap_hand_computed():
    from wsrl_mjx.plot import iqm, stratified_bootstrap_iqm
    assert iqm(np.arange(1.0, 9.0)) == 4.5  # 3, 4, 5, 6 of 1..8
    assert iqm([[0.0, 100.0], [1.0, 2.0], [3.0, 4.0]]) == 2.5  # 6 values: 1 cut at each end
    # Seeds constant within each task: a stratified sample redraws only equal values, so every sample
    # equals the data and the interval shrinks to the point. Drawing across tasks would not.
    scores = np.array([[0.0, 10.0, 20.0]] * 5)
    assert stratified_bootstrap_iqm(scores, samples=200) == (10.0, 10.0, 10.0)
    # Spread within a task widens it, around the estimate.
    rng = np.random.default_rng(1)
    value, low, high = stratified_bootstrap_iqm(rng.normal(50.0, 5.0, size=(5, 3)), samples=500)
    assert low < value < high and high - low > 1.0


def test_online_rewards_get_the_offline_datas_scale_and_bias():
    # The buffer stores r * reward_scale + reward_bias, as offline.from_dataset does for the dataset
    # (the reference scales its online env's rewards too); the episode returns stay the env's own.
    from types import SimpleNamespace

    from kernels.replay import replay_init

    raw = jnp.array([1.0, -2.0], jnp.float32)

    class Env:  # two envs; one step of each; no MJX
        def step(self, state, action, key):
            transition = Transition(observation=jnp.zeros((2, OBS)), action=action, reward=raw,
                                    next_observation=jnp.ones((2, OBS)), mask=jnp.ones(2))
            return state, transition, StepInfo(done=jnp.array([True, False]), episode_return=jnp.array([7.0, 0.0]))

    agent = config()
    example = Transition(observation=jnp.zeros(OBS), action=jnp.zeros(agent.act_dim), reward=jnp.zeros(()),
                         next_observation=jnp.zeros(OBS), mask=jnp.zeros(()))
    rewards = {}
    for scale, bias in ((1.0, 0.0), (10.0, -5.0)):
        spec = online.OnlineSpec(agent=agent, num_envs=2, buffer_capacity=4, reward_scale=scale, reward_bias=bias)
        state = online.OnlineState(agent=None, buffer=replay_init(example, 4),
                                   env=SimpleNamespace(observation=jnp.zeros((2, OBS))), key=jax.random.key(0),
                                   env_steps=jnp.zeros((), jnp.int32))
        state, info = online.collect_step(state, Env(), spec, 'uniform')
        rewards[scale, bias] = np.asarray(replay_get(state.buffer, jnp.arange(2)).reward)
        np.testing.assert_array_equal(np.asarray(info.episode_return), [7.0, 0.0])
    np.testing.assert_array_equal(rewards[1.0, 0.0], [1.0, -2.0])
    np.testing.assert_array_equal(rewards[10.0, -5.0], [5.0, -25.0])
