"""What the command-line entry points share: `--help`, and bad input as one error line with exit code 2."""
from __future__ import annotations

import sys
from typing import NoReturn

HELP_FLAGS = ('-h', '--help', '--helpshort', '--helpfull')


class UsageError(ValueError):
    """Bad input, whichever entry point got it: reported as one line on stderr with exit code 2 (`fail`).

    Every error for bad input derives from it (ConfigError, DatasetError, PolicyFileError, CollectError,
    CheckpointMismatch, ParallelError), so this is the one type an entry point has to catch."""


def fail(message: str) -> NoReturn:
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)


def exit_on_help(argv: list[str], usage: str) -> None:
    """With -h/--help anywhere in argv: print `usage` and the entry point's flags to stdout, exit 0."""
    if not any(arg in HELP_FLAGS for arg in argv[1:]):
        return
    from absl import flags

    def listing(help_text: str) -> str:  # without its heading (a module's name or file path)
        return help_text.strip().split('\n', 1)[-1]

    # The entry point's own flags, then those it shares from the package (--config and --seeds).
    shared = [m for m in flags.FLAGS.flags_by_module_dict() if m.startswith('wsrl_mjx.')]
    text = '\n'.join([listing(flags.FLAGS.main_module_help())] + [listing(flags.FLAGS.module_help(m)) for m in shared])
    print(f'{usage.strip()}\n\nflags:\n{text}')
    sys.exit(0)
