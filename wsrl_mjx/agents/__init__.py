"""Agents: losses and one update step each, pure functions of (state, batch, key)."""
