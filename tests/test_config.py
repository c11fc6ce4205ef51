"""Presets validate; the schedule splits a run as documented."""
import pytest

from configs import locomotion
from wsrl_mjx.config import ConfigError, schedule, validate


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


def test_dataset_names_take_the_longest_env_name_and_list_what_is_generated():
    from wsrl_mjx.data.registry import parse_name

    assert parse_name('ant-random') == ('ant', 'random')
    assert parse_name('antmaze-umaze-random') == ('antmaze-umaze', 'random')
    assert parse_name('halfcheetah-medium-replay') == ('halfcheetah', 'medium-replay')
    assert parse_name('antmaze-umaze-diverse') is None  # not a level: a file path, which it is not
    cfg = locomotion.get_config('smoke')
    cfg.env, cfg.dataset = 'antmaze-umaze', 'antmaze-umaze-diverse'
    with pytest.raises(ConfigError, match=r"antmaze-umaze-<level> \(generated here: random\) or an "
                                          r"\.hdf5/\.h5 file \(D4RL's antmaze-v2 files fit\)"):
        validate(cfg)
    cfg.dataset = 'antmaze-umaze-random'
    validate(cfg)
