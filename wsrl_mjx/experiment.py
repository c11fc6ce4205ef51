"""A run's static description, derived once from its config: what train, screen and bench build on.

    experiment = Experiment.from_config(cfg, seeds=3, dataset_rows=len(dataset))
    experiment.spec            # programs.ProgramSpec: the online programs (warmup, train, evaluate)
    experiment.pretrain_spec   # programs.PretrainSpec, or None for a method without pretraining
    experiment.keys()          # the per-seed keys: online run, agent init, evaluation, pretraining

Nothing here loads a model, runs a program or touches a file; the specs are hashable, so equal
experiments share their compiled programs.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from wsrl_mjx.agents import registry, sac
from wsrl_mjx.config import Method, method, offline_config, sac_config, schedule, warmup_policy
from wsrl_mjx.envs import ENV_SPECS
from wsrl_mjx.pipeline import online, programs


@dataclasses.dataclass(frozen=True)
class Experiment:
    method: Method  # what the config's method runs: pretraining algorithm, online update, warmup, data share
    spec: programs.ProgramSpec
    pretrain_spec: programs.PretrainSpec | None
    seed: int  # seeds seed .. seed + seeds - 1
    seeds: int
    handover_temperature: float | None = None  # None: the pretrained temperature carries over

    @classmethod
    def from_config(cls, cfg, seeds: int, dataset_rows: int = 0) -> Experiment:
        """dataset_rows: rows of the offline dataset (0 for a method without one)."""
        env = ENV_SPECS[cfg.env]  # the sizes without loading the model (a test checks them against it)
        agent = sac_config(cfg, env.obs_dim, env.act_dim)
        m = method(cfg)
        online_spec = online.OnlineSpec(
            agent=agent, num_envs=cfg.num_envs, buffer_capacity=cfg.buffer_capacity, update=m.online,
            offline_cfg=None if m.online == 'sac' else offline_config(cfg, agent, m.online),
            offline_ratio=m.offline_ratio, reward_scale=cfg.reward_scale, reward_bias=cfg.reward_bias)
        program_spec = programs.ProgramSpec(
            env_name=cfg.env, episode_length=cfg.episode_length, online=online_spec, plan=schedule(cfg),
            warmup_policy=warmup_policy(cfg), eval_episodes=cfg.eval_episodes, seeds=seeds,
            dataset_rows=dataset_rows if m.offline_ratio > 0 else 0)
        pretrain_spec = None if m.pretrain is None else programs.PretrainSpec(
            algo=m.pretrain, algo_cfg=offline_config(cfg, agent, m.pretrain), batch_size=cfg.pretrain.batch_size,
            chunk_updates=cfg.pretrain.log_interval, dataset_rows=dataset_rows, seeds=seeds)
        return cls(method=m, spec=program_spec, pretrain_spec=pretrain_spec, seed=cfg.seed, seeds=seeds,
                   handover_temperature=cfg.handover_temperature)

    def keys(self):
        """Per-seed keys (online run, agent init, evaluation, pretraining), each [seeds]: seed s derives
        them from jax.random.key(seed + s)."""
        keys = jax.vmap(jax.random.key)(jnp.arange(self.seed, self.seed + self.seeds))
        return jax.vmap(lambda k: jax.random.split(k, 4), out_axes=1)(keys)

    def hand_over(self, pretrain_state, progs: programs.OnlinePrograms, run_key):
        """The online phase's first state: the pretrained agent, unchanged (IQL's becomes a SAC state with a
        fresh temperature unless IQL itself continues online), an empty buffer and freshly reset envs.
        With `handover_temperature` set, the temperature and its Adam state restart at that alpha."""
        agent = pretrain_state.agent
        if self.spec.online.update == 'sac':  # else the offline algorithm goes on with its own state
            to_sac = registry.get(self.pretrain_spec.algo).to_sac
            agent = jax.vmap(lambda a: to_sac(a, self.spec.online.agent))(agent)
        if self.handover_temperature is not None:
            alpha = self.handover_temperature
            agent = jax.vmap(lambda a: a.replace(**sac.fresh_temperature(alpha, self.spec.online.agent)))(agent)
        return progs.init(run_key, agent)
