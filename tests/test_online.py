"""Tiers 2-5 on the smoke config: the fused online program, its reproducibility and the run directory."""
import json
import os

import jax
import numpy as np

from wsrl_mjx import train
from wsrl_mjx.pipeline import online
from wsrl_mjx.pipeline.programs import compile_online_programs


def test_run_directory_contract(smoke_run):
    cfg, run_dir, summary, _ = smoke_run
    assert {'config.json', 'metrics.jsonl', 'summary.json', 'curves.png'} <= set(os.listdir(run_dir))
    assert any(name.startswith('events.out.tfevents') for name in os.listdir(run_dir))
    records = [json.loads(line) for line in open(os.path.join(run_dir, 'metrics.jsonl'))]
    assert {r['phase'] for r in records} == {'warmup', 'finetune'}
    evals = [r for r in records if 'normalized_score' in r]
    assert [r['step'] for r in evals] == [100, 200, 300, 400]
    assert all(len(r['normalized_score']) == 2 and len(r['return']) == 2 for r in evals)
    train_records = [r for r in records if r['phase'] == 'finetune' and 'critic_loss' in r]
    assert len(train_records) == 3
    for r in train_records:
        assert np.all(np.isfinite(r['critic_loss'])) and r['env_steps_per_s'] > 0 and r['updates_per_s'] > 0
    with open(os.path.join(run_dir, 'summary.json')) as f:
        saved = json.load(f)
    assert saved == summary
    np.testing.assert_allclose(saved['normalized_score'], evals[-1]['normalized_score'])
    assert saved['normalized_score_mean'] == np.mean(saved['normalized_score'])


def test_each_program_traced_once(smoke_run):
    # The run called the training program for three chunks; a retrace would mean a recompile.
    assert online.TRACES['train'] == 1 and online.TRACES['warmup'] == 1


def test_buffer_holds_every_transition(smoke_run):
    cfg, _, _, state = smoke_run
    assert np.all(np.asarray(state.env_steps) == cfg.online_steps)
    assert np.all(np.asarray(state.buffer.size) == cfg.online_steps)  # capacity == online_steps in smoke


def test_time_limit_keeps_true_final_observation(smoke_run):
    """Within an episode, next_observation[t] == observation[t+1]; at the time limit it is the true
    final observation, not the reset one, and it still bootstraps (mask 1: halfcheetah never terminates)."""
    cfg, _, _, state = smoke_run
    data = jax.tree.map(np.asarray, state.buffer.data)
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


def replay(cfg, seeds_values):
    """init -> warmup -> every training chunk, with the run's compiled programs, for given seed values."""
    import jax.numpy as jnp

    progs = compile_online_programs(train.program_spec(cfg, len(seeds_values)))
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds_values))
    run_key, agent_key, _ = jax.vmap(lambda k: jax.random.split(k, 3), out_axes=1)(keys)
    state = progs.init(run_key, progs.init_agent(agent_key))
    state, _ = progs.warmup(state)
    for _ in range(train.program_spec(cfg, len(seeds_values)).plan.chunks):
        state, _ = progs.train(state)
    return state


def test_seeds_differ_and_one_seed_reproduces(smoke_run):
    cfg, _, _, state = smoke_run
    kernel = np.asarray(state.agent.critic[0]['kernel'])
    assert not np.allclose(kernel[0], kernel[1])  # seeds 0 and 1 differ
    again = replay(cfg, [0, 0])  # same compiled program, seed 0 twice
    for leaf_run, leaf_again in zip(jax.tree.leaves(state.agent), jax.tree.leaves(again.agent)):
        np.testing.assert_array_equal(np.asarray(leaf_again)[0], np.asarray(leaf_again)[1])
        np.testing.assert_array_equal(np.asarray(leaf_again)[0], np.asarray(leaf_run)[0])
    np.testing.assert_array_equal(np.asarray(again.buffer.data.observation)[0],
                                  np.asarray(state.buffer.data.observation)[0])
