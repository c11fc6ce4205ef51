import os

import pytest

from wsrl_mjx.files import atomic_path


def test_atomic_path_replaces_the_file_whole_or_leaves_it(tmp_path):
    path = tmp_path / 'sub' / 'f.json'
    with atomic_path(str(path)) as tmp:
        assert not path.exists()  # nothing is visible at the real name while it is written
        with open(tmp, 'w') as f:
            f.write('new')
    assert path.read_text() == 'new'
    with pytest.raises(RuntimeError), atomic_path(str(path)) as tmp:
        with open(tmp, 'w') as f:
            f.write('half')
        raise RuntimeError('the writer failed')
    assert path.read_text() == 'new' and os.listdir(path.parent) == ['f.json']  # old file kept, no temporary left
