"""Files written whole or not at all: the one atomic write of the package."""
from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def atomic_path(path: str, suffix: str = ''):
    """A temporary path beside `path` to write to. When the block ends without an error it replaces
    `path` in one step (a reader sees the old file or the new one, never half of one); on an error it is
    removed. The name carries the process id, since several processes may write the same file at once.
    `suffix` ends the temporary name (for writers that append their own, like numpy's .npz)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f'{path}.{os.getpid()}.tmp{suffix}'
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
