"""Adam, as optax.adam computes it, with the bias corrections written as multiplications.

optax divides each moment by its per-step scalar bias correction (1 - b^t). XLA:CPU rewrites a division
by a broadcast scalar into a multiplication by its reciprocal in some programs and not in others: it
did so in the one-device pretraining program and not in the same program partitioned over two devices
(the two roundings differ by an ulp, and training then drifts apart). Taking the reciprocal here leaves
XLA nothing to rewrite. (With the other two fixes, parallel.compiler_options and the package's XLA
flag, a run is then equal bit for bit on one device and on two: docs/determinism.md.)

The state is optax.adam's (ScaleByAdamState, EmptyState), so checkpoints of either restore into the other.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
    """optax.scale_by_adam (same init, same moment updates) but for the bias corrections."""
    def update(updates, state, params=None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, b1, 1)
        nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
        count = optax.safe_increment(state.count)
        t = count.astype(jnp.float32)
        mu_scale = 1.0 / (1.0 - b1**t)
        nu_scale = 1.0 / (1.0 - b2**t)
        updates = jax.tree.map(lambda m, v: m * mu_scale / (jnp.sqrt(v * nu_scale) + eps), mu, nu)
        return updates, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return optax.GradientTransformation(optax.scale_by_adam(b1, b2, eps).init, update)


def adam(learning_rate: float) -> optax.GradientTransformation:
    """optax.adam(learning_rate) with optax's default b1, b2 and eps (see the module docstring)."""
    return optax.chain(scale_by_adam(), optax.scale_by_learning_rate(learning_rate))
