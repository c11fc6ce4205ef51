"""Offline data: behaviour-policy files, D4RL-format datasets (I/O, validation), collection."""
