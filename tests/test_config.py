"""Presets validate; the schedule splits a run as documented."""
import pytest

from configs import locomotion
from wsrl_mjx.config import PRETRAIN_ALGOS, ConfigError, offline_config, sac_config, schedule, validate


@pytest.mark.parametrize('preset', sorted(locomotion.PRESETS))
def test_presets_validate(preset):
    cfg = locomotion.get_config(preset)
    validate(cfg)
    plan = schedule(cfg)
    assert cfg.warmup_steps + plan.chunks * cfg.log_interval == cfg.online_steps


def test_wsrl_constants_in_base_config():
    a = locomotion.get_config('paper').agent
    assert (a.num_critics, a.num_min_critics, a.critic_steps, a.batch_size) == (10, 2, 4, 256)
    assert (a.actor_lr, a.critic_lr, a.temperature_lr, a.tau, a.discount) == (1e-4, 3e-4, 1e-4, 0.005, 0.99)
    assert a.critic_layer_norm and not a.backup_entropy and a.kernel_scale_final == 1e-2


def test_schedule_of_smoke():
    plan = schedule(locomotion.get_config('smoke'))
    assert (plan.warmup_iterations, plan.chunk_iterations, plan.chunks, plan.eval_every_chunks) == (50, 50, 3, 1)


def test_num_envs_must_divide_steps():
    cfg = locomotion.get_config('smoke')
    cfg.num_envs = 3
    with pytest.raises(ConfigError, match='multiple of num_envs=3'):
        validate(cfg)


def test_dataset_env_must_match_only_where_the_dataset_is_read():
    cfg = locomotion.get_config('sac')  # method scratch: no offline data
    cfg.env = 'hopper'
    validate(cfg)
    cfg.method = 'wsrl'
    with pytest.raises(ConfigError, match="config.dataset='halfcheetah-medium'.*env=hopper"):
        validate(cfg)


def test_dataset_names_take_the_longest_env_name_and_list_what_is_generated(tmp_path, monkeypatch):
    from wsrl_mjx.data import collect
    from wsrl_mjx.data.registry import parse_name

    assert parse_name('ant-random') == ('ant', 'random')
    assert parse_name('antmaze-umaze-random') == ('antmaze-umaze', 'random')
    assert parse_name('halfcheetah-medium-replay') == ('halfcheetah', 'medium-replay')
    assert parse_name('antmaze-umaze-medium') is None  # not an antmaze level: a file path, which it is not
    cfg = locomotion.get_config('smoke')
    cfg.env, cfg.dataset = 'antmaze-umaze', 'antmaze-umaze-medium'
    with pytest.raises(ConfigError, match=r"antmaze-umaze-<level> \(generated here: .*random.*\) or an "
                                          r"\.hdf5/\.h5 file \(D4RL's antmaze-v2 files fit\)"):
        validate(cfg)
    # Without the goal-reaching controller, play and diverse cannot be generated: refused, naming what can.
    monkeypatch.setattr(collect, 'POLICY_DIR', str(tmp_path))
    cfg.dataset = 'antmaze-umaze-diverse'
    with pytest.raises(ConfigError, match=r"shipped for antmaze-umaze \(antmaze-umaze-random\)"):
        validate(cfg)
    cfg.dataset = 'antmaze-umaze-random'
    validate(cfg)


def test_configs_saved_before_the_reward_keys_moved_still_compare():
    # pretrain.reward_scale / reward_bias (offline data only) became the top-level reward_scale /
    # reward_bias (offline and online); saved configs are read in today's layout.
    import os

    from wsrl_mjx import train
    from wsrl_mjx.config import json_config, upgrade

    old = {'env': 'hopper', 'pretrain': {'steps': 5, 'reward_scale': 2.0, 'reward_bias': -1.0}}
    assert upgrade(old) == {'env': 'hopper', 'reward_scale': 2.0, 'reward_bias': -1.0, 'handover_temperature': None,
                            'pretrain': {
        'steps': 5, 'cql_autotune_alpha': False, 'cql_target_action_gap': 1.0, 'cql_alpha_lagrange_init': 1.0,
        'cql_alpha_lagrange_lr': 3e-4, 'tau': None}}
    assert old['pretrain']['reward_scale'] == 2.0  # the argument is left as it was
    new = json_config(locomotion.get_config('default'))
    assert upgrade(new) == new and 'reward_scale' not in new['pretrain'] and new['reward_scale'] == 1.0
    # The reproduction's kept pretraining (saved with the old layout) is accepted by its protocol's
    # command, and a different reward scale is refused, naming the key.
    kept = os.path.join(os.path.dirname(__file__), '..', 'docs', 'reproduction', 'halfcheetah-medium')
    cfg = locomotion.get_config('repro')
    cfg.dataset = 'halfcheetah-medium'
    assert train.read_pretrained(kept, cfg, 5)['seeds'] == 5
    cfg.reward_scale = 10.0
    with pytest.raises(train.UsageError, match='config.reward_scale=10.0 differs from 1.0'):
        train.read_pretrained(kept, cfg, 5)
    # A shorter pretraining is not the protocol's: refused, naming the key.
    cfg.reward_scale = 1.0
    cfg.pretrain.bc_steps = 30_000
    with pytest.raises(train.UsageError, match='config.pretrain.bc_steps=30000 differs from 50000'):
        train.read_pretrained(kept, cfg, 5)


def test_antmaze_presets_carry_the_references_antmaze_recipe():
    # zhouzypaul/wsrl: launch_wsrl_finetune.sh / launch_calql_finetune.sh (antmaze) and the configs
    # antmaze_wsrl / antmaze_cql: reward x10 - 5, critic 4x256, uniform std, max-target backup online,
    # Cal-QL with the weight auto-tuned to a gap of 0.8, 1M pretraining updates, UTD 4 x 256.
    from configs import antmaze
    from wsrl_mjx.agents import cql, registry
    from wsrl_mjx.config import offline_config, sac_config

    for preset in antmaze.PRESETS:
        validate(antmaze.get_config(preset))
    c = antmaze.get_config('paper')
    agent = sac_config(c, 29, 8)
    assert (c.reward_scale, c.reward_bias, c.env, c.episode_length) == (10.0, -5.0, 'antmaze-large', 1000)
    assert agent.critic_hidden == (256,) * 4 and agent.actor_hidden == (256, 256)
    assert agent.std_parameterization == 'uniform' and agent.max_target_backup and agent.max_target_actions == 10
    assert (agent.num_critics, agent.num_min_critics, agent.critic_steps, agent.batch_size) == (10, 2, 4, 256)
    pretrain = offline_config(c, agent, 'calql')
    assert isinstance(pretrain, cql.CQLConfig) and pretrain.calql and pretrain.autotune_alpha
    assert (pretrain.target_action_gap, pretrain.alpha_lagrange_init, pretrain.alpha_lagrange_lr) == (0.8, 1.0, 3e-4)
    assert pretrain.max_target_backup and pretrain.n_actions == 10 and c.pretrain.steps == 1_000_000
    assert (c.warmup_steps, c.online_steps, c.method) == (5_000, 300_000, 'wsrl')
    assert registry.get('calql').init is cql.init
    # The CPU-scale preset keeps the recipe (Cal-QL, rewards, 4 critic layers, uniform std, max backup).
    u = antmaze.get_config('umaze')
    agent = sac_config(u, 29, 8)
    assert (u.reward_scale, u.reward_bias, u.env, u.dataset, u.episode_length) == (
        10.0, -5.0, 'antmaze-umaze', 'antmaze-umaze-diverse', 700)
    assert agent.critic_hidden == (64,) * 4 and agent.std_parameterization == 'uniform' and agent.max_target_backup
    pretrain = offline_config(u, agent, 'calql')
    assert pretrain.calql and pretrain.autotune_alpha and pretrain.target_action_gap == 0.8
    assert pretrain.bc_steps == u.pretrain.steps == 50_000


def test_offline_benchmark_times_the_actor_phase_of_its_preset():
    # `bench offline` times its second chunk and `bench profile` its third: cloning where the preset's
    # actor clones all along (the default), SAC's actor step where it never clones (paper). In a
    # subprocess: wsrl_mjx.bench defines absl flags that other modules' flags would collide with here.
    import subprocess
    import sys

    code = ("from wsrl_mjx.bench import pretrain_config\n"
            "from wsrl_mjx.configs import locomotion\n"
            "from wsrl_mjx.config import validate\n"
            "for preset in ('default', 'paper'):\n"
            "    c = pretrain_config(100, 'cql', locomotion.get_config(preset))\n"
            "    validate(c)\n"
            "    print(preset, c.pretrain.steps, c.pretrain.log_interval, c.pretrain.bc_steps)\n")
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split('\n')[:2] == ['default 300 100 300', 'paper 300 100 0']


def test_pretrain_tau_sets_the_offline_algorithms_target_rate_and_not_sacs():
    cfg = locomotion.get_config('smoke')
    agent = sac_config(cfg, 17, 6)
    assert [offline_config(cfg, agent, algo).sac.tau for algo in PRETRAIN_ALGOS] == [0.005] * 3  # None: agent.tau
    cfg.pretrain.tau = 0.01
    validate(cfg)
    assert [offline_config(cfg, agent, algo).sac.tau for algo in PRETRAIN_ALGOS] == [0.01] * 3
    assert sac_config(cfg, 17, 6).tau == 0.005  # the online SAC agent keeps agent.tau
    cfg.pretrain.tau = 0.0
    with pytest.raises(ConfigError, match=r'pretrain\.tau'):
        validate(cfg)


def test_handover_temperature_needs_a_method_that_pretrains_and_fine_tunes_with_sac():
    cfg = locomotion.get_config('smoke')
    assert cfg.handover_temperature is None  # WSRL: the pretrained temperature carries over
    cfg.handover_temperature = 1.0
    validate(cfg)
    for method, value in (('rlpd', 1.0), ('cql', 1.0), ('wsrl', 0.0)):
        cfg.method, cfg.handover_temperature = method, value
        with pytest.raises(ConfigError, match=r'config\.handover_temperature=.*wsrl, no_warmup, retain'):
            validate(cfg)
