"""A plain (not editable) install carries what a run needs: the presets and the behaviour policies."""
import subprocess
import sys
import zipfile

from conftest import REPO


def test_wheel_holds_the_presets_and_policies(tmp_path):
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '-q',
                    '-w', str(tmp_path), REPO], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob('wsrl_mjx-*.whl')
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {'wsrl_mjx/configs/__init__.py', 'wsrl_mjx/configs/locomotion.py', 'kernels/replay.py',
            'wsrl_mjx/data/policies/halfcheetah_medium.npz'} <= names


def test_presets_are_found_outside_the_repository(tmp_path):
    """From another directory, --config=configs/locomotion.py:<preset> names the installed file: an
    unknown preset is reported as such (the file was found), not as a missing file."""
    result = subprocess.run([sys.executable, '-m', 'wsrl_mjx.train', '--config=configs/locomotion.py:nope',
                             f'--run_dir={tmp_path / "run"}'], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2 and "preset 'nope' is unknown" in result.stderr, result.stderr
