import os
import sys

import pytest

import wsrl_mjx  # noqa: F401  (sets XLA's CPU flags before any test starts JAX's backend)

# Nothing is written to the user's XLA cache: the smoke_run fixture points the cache at a directory of
# this session, so the CLI subprocesses of the tests load the programs it compiled.
os.environ['WSRL_MJX_COMPILATION_CACHE'] = ''

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # configs/ is a folder of preset files, not an installed package


def smoke_config():
    from configs import locomotion

    return locomotion.get_config('smoke')


@pytest.fixture(scope='session')
def smoke_run(tmp_path_factory):
    """One whole smoke run with 2 seeds, in process: (config, run_dir, summary, final state, dataset).

    Compiling the MJX programs dominates the test time on 2 cores, so every test reuses the programs
    compiled here (cached per spec in this process, and in this session's XLA cache for the CLI
    subprocesses, which also find the generated smoke dataset in this session's dataset cache).
    """
    from wsrl_mjx import train

    os.environ['WSRL_MJX_COMPILATION_CACHE'] = str(tmp_path_factory.mktemp('xla_cache'))
    os.environ['WSRL_MJX_DATASETS'] = str(tmp_path_factory.mktemp('datasets'))
    train.enable_compilation_cache()
    cfg = smoke_config()
    run_dir = str(tmp_path_factory.mktemp('smoke_run'))
    dataset = train.load_dataset(cfg, quiet=True)
    summary, state = train.run(cfg, seeds=2, run_dir=run_dir, quiet=True, dataset=dataset)
    return cfg, run_dir, summary, state, dataset
