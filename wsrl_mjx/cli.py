"""What the command-line entry points share: `--help`, and bad input as one error line with exit code 2."""
from __future__ import annotations

import sys
from typing import NoReturn

HELP_FLAGS = ('-h', '--help', '--helpshort', '--helpfull')


def fail(message: str) -> NoReturn:
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)


def exit_on_help(argv: list[str], usage: str) -> None:
    """With -h/--help anywhere in argv: print `usage` and the entry point's flags to stdout, exit 0."""
    if not any(arg in HELP_FLAGS for arg in argv[1:]):
        return
    from absl import flags

    listing = flags.FLAGS.main_module_help().strip().split('\n', 1)[-1]  # without its heading (a file path)
    print(f'{usage.strip()}\n\nflags:\n{listing}')
    sys.exit(0)
