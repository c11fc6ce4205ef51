"""What the entry points that run the agent (train, screen, bench) share: the --config and --seeds
flags, the compilation cache, the run's dataset. Bad input raises cli.UsageError with one line."""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from absl import flags
from ml_collections import config_flags

from wsrl_mjx.cli import UsageError

# The presets, installed as wsrl_mjx.configs from the repository's configs/ (pyproject.toml).
CONFIG_DIR = os.path.dirname(importlib.util.find_spec('wsrl_mjx.configs').origin)
DEFAULT_CONFIG = os.path.join(CONFIG_DIR, 'locomotion.py')

_CONFIG = config_flags.DEFINE_config_file('config', f'{DEFAULT_CONFIG}:default', 'Config file and preset.')
_SEEDS = flags.DEFINE_integer(
    'seeds', 1, 'Number of seeds, in one program (vmapped; on a CPU pretraining runs them one after another), '
    'split over devices.')
_CPU_DEVICES = flags.DEFINE_integer(
    'cpu_devices', 1, 'On the CPU, split the seeds over this many XLA host devices, each running its share of '
    'the program on its own thread (--seeds a multiple of it). No effect where JAX runs on GPUs.')


def installed_config(arg: str) -> str:
    """--config=configs/<file>.py[:preset] names the installed preset file when the working directory
    has no such file (a run started outside the repository)."""
    if not arg.startswith('--config='):
        return arg
    path, colon, preset = arg[len('--config='):].partition(':')
    name = os.path.normpath(path)
    if not os.path.exists(path) and os.path.dirname(name) == 'configs':
        installed = os.path.join(CONFIG_DIR, os.path.basename(name))
        if os.path.exists(installed):
            return f'--config={installed}{colon}{preset}'
    return arg


def parse_config(argv: list[str]):
    """Parses every defined flag from argv and validates the config: (config, seeds). Raises
    UsageError with one line on bad input."""
    from wsrl_mjx.config import ConfigError, base_config, validate

    argv = [installed_config(arg) for arg in argv]
    # config_flags reads the --config.<key> overrides from sys.argv, not from the list it is given.
    saved_argv, sys.argv = sys.argv, argv
    try:
        flags.FLAGS(argv)
        cfg = _CONFIG.value
        validate(cfg)
    except flags.Error as e:  # unknown flag, bad value, or the config file raised (unknown preset)
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise UsageError(lines[0] if len(lines) == 1 else f'{lines[0].split(":")[0]}: {lines[-1]}') from None
    except OSError as e:  # config file missing or unreadable
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise UsageError(f'--config: {lines[-1]}') from None
    except (KeyError, AttributeError) as e:  # --config.<key> that the config does not have
        key = str(e).strip("'\"")
        allowed = ', '.join(k for k in base_config().keys())
        raise UsageError(f'unknown config key {key!r}; top-level keys: {allowed} (agent.* for the agent)') from None
    except ConfigError as e:
        raise UsageError(str(e)) from None
    finally:
        sys.argv = saved_argv
    if _SEEDS.value < 1:
        raise UsageError(f'--seeds={_SEEDS.value} is not allowed: a positive integer')
    use_cpu_devices(_CPU_DEVICES.value)
    return cfg, _SEEDS.value


def use_cpu_devices(count: int) -> None:
    """--cpu_devices: the number of XLA:CPU devices, which JAX takes only before its first computation.

    A program over one device runs its ops mostly one after another (docs/performance.md); with the
    seeds split over two devices, each device's part runs on a thread of its own, so two cores both
    work. 1 (the default) leaves JAX's own setting alone (XLA_FLAGS=--xla_force_host_platform_device_count
    still works). Whether the seeds split evenly is parallel.check_seeds's to say, once the seed count is
    known (a resumed run takes its own).
    """
    if count < 1:
        raise UsageError(f'--cpu_devices={count} is not allowed: a positive integer')
    if count == 1:
        return
    import jax

    try:
        jax.config.update('jax_num_cpu_devices', count)
    except RuntimeError:
        raise UsageError(f'--cpu_devices={count}: JAX has already started in this process with '
                         f'{jax.local_device_count("cpu")} CPU devices; give the flag to a new process') from None


def enable_compilation_cache() -> None:
    """Persists compiled programs (XLA:CPU takes minutes on MJX programs; a rerun then loads them).

    Directory: $WSRL_MJX_COMPILATION_CACHE, default ~/.cache/wsrl_mjx/xla; an empty value turns it off.
    """
    import jax

    path = os.environ.get('WSRL_MJX_COMPILATION_CACHE', os.path.join(Path.home(), '.cache', 'wsrl_mjx', 'xla'))
    if path:
        jax.config.update('jax_compilation_cache_dir', path)
        jax.config.update('jax_persistent_cache_min_compile_time_secs', 1.0)
        jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def load_dataset(cfg, quiet: bool = False):
    """The run's offline dataset (generated on first use for a name), validated against the env;
    None for methods that use none. Raises UsageError on a bad file."""
    from wsrl_mjx.config import uses_dataset
    from wsrl_mjx.data import registry
    from wsrl_mjx.data.dataset import DatasetError, load
    from wsrl_mjx.envs.registry import ENV_SPECS

    if not uses_dataset(cfg):
        return None
    spec = ENV_SPECS[cfg.env]
    path = registry.resolve(cfg.dataset, cfg.dataset_size, quiet=quiet)
    try:
        return load(path, spec.obs_dim, spec.act_dim)
    except DatasetError as e:
        raise UsageError(f'config.dataset: {e}') from None
