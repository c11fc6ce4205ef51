"""Presets of `python -m wsrl_mjx.train --config=configs/<file>.py:<preset>`; installed as wsrl_mjx.configs,
and `configs/<file>.py` is found there when the working directory has no such file."""
