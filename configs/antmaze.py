"""AntMaze presets: `python -m wsrl_mjx.train --config=configs/antmaze.py:<preset> [--config.dataset=FILE]`.

  paper  WSRL's antmaze recipe as the reference runs it (zhouzypaul/wsrl: experiments/scripts/antmaze/
         launch_wsrl_finetune.sh and launch_calql_finetune.sh, configs antmaze_wsrl / antmaze_cql) on
         antmaze-large-diverse: Cal-QL pretraining for 1M updates with the conservative weight auto-tuned
         to a gap of 0.8, rewards x10 - 5, critics 4x256, a state-independent actor std, the max-target
         backup online too; then 5k warmup steps and ensemble SAC at UTD 4 for 300k steps. For GPUs.
  controller  SAC from scratch on `antgoal`, D4RL's ant walking to goals on open ground: the controller
         that collects this project's antmaze datasets (wsrl_mjx/data/antmaze_collect.py)
  smoke  every phase of the same recipe at toy sizes on antmaze-umaze, from random-play data (checks that
         the recipe runs end to end; nothing is learnt from random play in a few hundred updates)

The datasets the recipe is for (antmaze-*-diverse / -play) are not generated here yet: `paper` reads
D4RL's antmaze-large-diverse-v2.hdf5 from the working directory, or the file --config.dataset names
(D4RL's antmaze-v2 files fit the env's observation). A CPU-scale preset waits for in-project datasets:
its sizes have to be chosen by measuring learning on them, as the locomotion default's were.
"""
from wsrl_mjx.config import base_config
from wsrl_mjx.configs import locomotion


def _recipe(c):
    """The reference's antmaze constants on top of WSRL's base config (WSRL.md)."""
    c.reward_scale = 10.0
    c.reward_bias = -5.0
    c.agent.critic_hidden = (256, 256, 256, 256)
    c.agent.actor_hidden = (256, 256)
    c.agent.std_parameterization = 'uniform'
    c.agent.max_target_backup = True
    c.pretrain.algo = 'calql'
    c.pretrain.cql_autotune_alpha = True
    c.pretrain.cql_target_action_gap = 0.8
    c.pretrain.cql_max_target_backup = True
    return c


def paper():
    c = _recipe(base_config())
    c.name = 'antmaze_paper'
    c.env = 'antmaze-large'
    c.dataset = 'antmaze-large-diverse-v2.hdf5'
    c.episode_length = 1000  # D4RL's time limit for medium and large (700 for umaze)
    c.pretrain.steps = 1_000_000
    c.pretrain.log_interval = 5_000
    c.pretrain.eval_interval = 50_000
    return c


def smoke():
    # The locomotion smoke preset's toy sizes (phases, batches, 4 critics) with the antmaze recipe.
    c = _recipe(locomotion.smoke())
    c.name = 'antmaze_smoke'
    c.env = 'antmaze-umaze'
    c.dataset = 'antmaze-umaze-random'
    c.agent.critic_hidden = (32, 32, 32, 32)
    c.agent.actor_hidden = (32, 32)
    c.agent.max_target_actions = 4
    return c


def controller():
    """SAC from scratch on `antgoal`: the goal-reaching ant whose snapshot collects the antmaze datasets
    (D4RL trained its goal-reaching ant with SAC too). The locomotion `sac` preset's learner (2 critics,
    UTD 1, 256x256) with 500-step episodes, each with as many goals as the ant reaches."""
    c = locomotion.sac()
    c.name = 'antmaze_controller'
    c.env = 'antgoal'
    c.episode_length = 500
    c.online_steps = 1_000_000
    c.buffer_capacity = 300_000
    c.eval_interval = 10_000
    c.checkpoint_interval = 10_000
    return c


PRESETS = {'paper': paper, 'smoke': smoke, 'controller': controller}


def get_config(preset: str = 'paper'):
    if preset not in PRESETS:
        raise ValueError(f'--config preset {preset!r} is unknown: one of {", ".join(PRESETS)}')
    return PRESETS[preset]()
