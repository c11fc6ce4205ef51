"""Algorithm-free array primitives: pure functions, each with a plain reference implementation."""
