import os
import sys

import pytest

# Programs compiled here stay in this process; nothing is written to the user's cache.
os.environ.setdefault('WSRL_MJX_COMPILATION_CACHE', '')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # configs/ is a folder of preset files, not an installed package


def smoke_config():
    from configs import locomotion

    return locomotion.get_config('smoke')


@pytest.fixture(scope='session')
def smoke_run(tmp_path_factory):
    """One whole smoke run with 2 seeds, in process: (config, run_dir, summary, final state).

    Compiling the MJX programs dominates the test time on 2 cores, so every online test reuses the
    programs compiled here (compile_online_programs is cached per spec).
    """
    from wsrl_mjx import train

    cfg = smoke_config()
    run_dir = str(tmp_path_factory.mktemp('smoke_run'))
    summary, state = train.run(cfg, seeds=2, run_dir=run_dir, quiet=True)
    return cfg, run_dir, summary, state
