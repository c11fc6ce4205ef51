"""Locomotion presets: `python -m wsrl_mjx.train --config=configs/locomotion.py:<preset>`.

  default  WSRL end to end on the embedded halfcheetah-medium dataset at CPU scale (2x64 networks, 50k CQL
           updates with a behaviour-cloned actor, 5k warmup + 25k online steps): 25.7 min from a fresh
           2-core VM (2026-12-06), 53 min on a slow day (docs/performance.md); the values of `repro`
  repro    the reproduction protocol's preset (docs/reproduction.md), frozen as the default was on
           2026-12-02, so that the protocol stays fixed whatever the default becomes
  smoke    every phase of a run with tiny sizes (tests, checks): seconds of running after 3-4 min of
           compiling the MJX programs on 2 cores
  sac      standard online SAC from scratch: 2 critics, UTD 1, entropy backup, 100k steps (the run
           that trained the shipped halfcheetah behaviour policies, with 150k steps)
  paper    WSRL's locomotion protocol at paper scale (1M-transition dataset, 250k CQL updates, 2x256,
           300k online steps, 2e6 buffer), for GPUs
"""
from wsrl_mjx.config import base_config


def repro():
    # The reproduction protocol's preset (docs/reproduction.md), frozen as the default was on 2026-12-02:
    # WSRL's online algorithm and constants (10 critics, 2 of them in the target, UTD 4, 5k policy
    # warmup, no offline data online) with 2x64 networks and short phases. Pretraining is CQL on the
    # 10-critic ensemble (WSRL's locomotion algorithm) for 50k updates, its actor cloning the data all
    # the while (bc_steps = steps: the original CQL code's policy_eval_start, at 3x WSRL's actor lr). At
    # this scale the SAC actor step of CQL ran the policy off the data within 5k updates, from scratch
    # and from a cloned start alike (docs/pretraining.md). 50k rather than 20k updates: the actor reaches
    # the data's score by 20k, but the critic's Q is only half the data's discounted value there (240
    # against ~480; 475 at 50k), and the online phase started from the 20k critic recovered from its dip
    # later and ended below the data (docs/pretraining.md).
    c = base_config()
    c.name = 'repro'
    c.dataset = 'halfcheetah-medium'
    c.dataset_size = 100_000
    c.agent.critic_hidden = (64, 64)
    c.agent.actor_hidden = (64, 64)
    c.pretrain.algo = 'cql'
    c.pretrain.steps = 50_000
    c.pretrain.bc_steps = 50_000
    c.pretrain.actor_lr = 3e-4
    c.pretrain.log_interval = 1_000
    c.pretrain.eval_interval = 5_000
    c.online_steps = 30_000
    c.warmup_steps = 5_000
    c.buffer_capacity = 30_000
    c.log_interval = 500
    c.eval_interval = 2_500
    c.eval_episodes = 10
    c.checkpoint_interval = 2_500
    return c


def default():
    # The values of `repro`, as one seed. They took 25.7 minutes from a fresh machine (2026-12-06), above
    # the pretraining issue's bar of 20. Shorter phases fit the bar but not the learning: 30k CQL
    # updates and 20k online steps after the warmup took 17.1 minutes on 2026-12-07 and dipped to 10.4
    # after warmup (24% of offline; 23.6 from the 50k critic), ending at 42.3 on data of 42.8; with
    # pretrain.tau=0.01 as well, three seeds dipped to 43% of offline and ended at 39.5; with
    # pretrain.cql_n_actions=5 (50k updates at 1.7x the rate) and 20k online steps after the warmup,
    # 19.1 minutes, three seeds ended at 43.7 but dipped to 49% of offline, short of the 50% its test set
    # beforehand (2026-12-08). So the default keeps 50k updates with 10 actions until the updates are
    # fast enough for 20 minutes (docs/performance.md, "A 20-minute variant of the default").
    c = repro()
    c.name = 'default'
    return c


def smoke():
    # The whole WSRL pipeline (random-policy dataset -> CQL pretraining -> policy warmup -> ensemble
    # SAC) at toy sizes.
    c = base_config()
    c.name = 'smoke'
    c.dataset = 'halfcheetah-random'
    c.dataset_size = 512
    c.pretrain.steps = 40
    c.pretrain.log_interval = 20
    c.pretrain.eval_interval = 40
    c.pretrain.batch_size = 16
    c.pretrain.cql_n_actions = 4
    c.episode_length = 50
    c.num_envs = 2
    c.online_steps = 400
    c.warmup_steps = 100
    c.buffer_capacity = 400
    c.log_interval = 100
    c.eval_interval = 100
    c.eval_episodes = 2
    c.checkpoint_interval = 100
    c.agent.num_critics = 4
    c.agent.critic_hidden = (32, 32)
    c.agent.actor_hidden = (32, 32)
    c.agent.critic_steps = 2
    c.agent.batch_size = 16
    return c


def sac():
    c = base_config()
    c.name = 'sac'
    c.method = 'scratch'
    c.online_steps = 100_000
    c.warmup_steps = 5_000
    c.buffer_capacity = 100_000
    c.log_interval = 1_000
    c.eval_interval = 5_000
    c.eval_episodes = 10
    c.agent.num_critics = 2
    c.agent.critic_steps = 1
    c.agent.backup_entropy = True
    c.agent.critic_layer_norm = False
    c.agent.actor_layer_norm = False
    c.agent.kernel_scale_final = 2.0**0.5
    c.agent.actor_lr = 3e-4
    c.agent.temperature_lr = 3e-4
    return c


def paper():
    c = base_config()
    c.name = 'paper'
    return c


PRESETS = {'default': default, 'repro': repro, 'smoke': smoke, 'sac': sac, 'paper': paper}


def get_config(preset: str = 'default'):
    if preset not in PRESETS:
        raise ValueError(f'--config preset {preset!r} is unknown: one of {", ".join(PRESETS)}')
    return PRESETS[preset]()
