"""The fused programs: whole chunks of work as one jitted, seed-vmapped XLA program each."""
