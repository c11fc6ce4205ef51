"""wsrl_mjx: WSRL offline-to-online RL with MJX environments, replay and updates in one XLA program."""

__version__ = "0.1.0"
