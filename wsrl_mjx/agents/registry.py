"""The algorithms by name: what the pipeline needs of each, behind one signature.

  init(key, cfg) -> state                                    the agent state of one seed
  update(state, batch, mc_return, key, cfg, updates) -> (state, metrics)
                                                             one update on a batch of batch_rows(cfg)
  to_sac(state, sac_cfg) -> sac.SACState                     the hand-over to online SAC
  sac(cfg) -> sac.SACConfig                                  the networks the state holds
  critic_steps(cfg) -> int                                   critic minibatches per update
  configure(p, agent) -> cfg                                 the algorithm's static config from the
                                                             config's pretrain.* settings `p` and the
                                                             run's sac.SACConfig `agent`

`cfg` is the algorithm's own static config (sac.SACConfig, cql.CQLConfig, iql.IQLConfig). `mc_return`
is the batch's Monte-Carlo returns (Cal-QL's bound; -inf where unknown), `updates` the pretraining's
update counter (the behaviour-cloning start of CQL) or None online. Adding an algorithm is a module in
agents/ and one entry here.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from wsrl_mjx.agents import cql, iql, sac


@dataclasses.dataclass(frozen=True)
class Algorithm:
    init: Callable
    update: Callable
    to_sac: Callable
    sac: Callable
    critic_steps: Callable
    configure: Callable

    def batch_rows(self, cfg) -> int:
        """Rows one update takes: critic_steps minibatches of the batch size."""
        return self.critic_steps(cfg) * self.sac(cfg).batch_size


def _sac_update(state, batch, mc_return, key, cfg, updates=None):
    del mc_return, updates  # SAC needs neither
    return sac.update(state, batch, key, cfg)


def _same(state, sac_cfg):
    del sac_cfg
    return state


def _pretraining_agent(p, agent):
    """The agent's constants as the offline algorithm uses them: its own target rate where pretrain.tau sets one."""
    return agent if p.tau is None else dataclasses.replace(agent, tau=p.tau)


def _cql_config(p, agent, calql: bool = False):
    agent = _pretraining_agent(p, agent)
    if p.actor_lr is not None:  # pretraining's own actor rate (the default preset's cloning actor)
        agent = dataclasses.replace(agent, actor_lr=p.actor_lr)
    return cql.CQLConfig(sac=agent, alpha=p.cql_alpha, n_actions=p.cql_n_actions, temperature=p.cql_temperature,
                         importance_sample=p.cql_importance_sample, max_target_backup=p.cql_max_target_backup,
                         calql=calql, bc_steps=p.bc_steps, autotune_alpha=p.cql_autotune_alpha,
                         target_action_gap=p.cql_target_action_gap, alpha_lagrange_init=p.cql_alpha_lagrange_init,
                         alpha_lagrange_lr=p.cql_alpha_lagrange_lr)


def _iql_config(p, agent):
    agent = _pretraining_agent(p, agent)
    return iql.IQLConfig(sac=dataclasses.replace(agent, actor_lr=p.iql_lr, critic_lr=p.iql_lr),
                         expectile=p.iql_expectile, beta=p.iql_beta, value_lr=p.iql_lr)


_CQL = Algorithm(init=cql.init, update=cql.update, to_sac=cql.to_sac,
                 sac=lambda cfg: cfg.sac, critic_steps=lambda cfg: 1, configure=_cql_config)

ALGORITHMS = {
    # WSRL's online algorithm: ensemble SAC, critic_steps critic minibatches per update (UTD).
    'sac': Algorithm(init=sac.init, update=_sac_update, to_sac=_same, sac=lambda cfg: cfg,
                     critic_steps=lambda cfg: cfg.critic_steps, configure=lambda p, agent: agent),
    'cql': _CQL,
    'calql': dataclasses.replace(_CQL, configure=lambda p, agent: _cql_config(p, agent, calql=True)),
    'iql': Algorithm(init=iql.init, update=iql.update, to_sac=iql.to_sac, sac=lambda cfg: cfg.sac,
                     critic_steps=lambda cfg: 1, configure=_iql_config),
}


def get(name: str) -> Algorithm:
    return ALGORITHMS[name]
