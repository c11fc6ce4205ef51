"""Ensemble MLP: M independent MLPs evaluated together, one batched matmul per layer.

Parameters are a tuple of layer dicts; every leaf carries a leading member axis M:
  kernel [M, d_in, d_out], bias [M, d_out], and with LayerNorm ln_scale/ln_bias [M, d_out].
Hidden blocks are Dense -> LayerNorm -> ReLU (the activation follows the last hidden layer too);
the output layer is a plain Dense.

Cost of `ensemble_mlp` on a batch of B inputs (fp32):
  FLOPs  = 2 * M * B * sum_l d_in_l * d_out_l   (matmuls; LayerNorm/ReLU add ~10 * M * B * sum d_out)
  bytes  = 4 * M * sum_l (d_in_l * d_out_l + 3 * d_out_l)  parameters read
           + 4 * M * B * sum_l d_out_l                      activations written
"""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

LN_EPSILON = 1e-6


def init_ensemble_mlp(
    key: jax.Array,
    members: int,
    sizes: Sequence[int],
    layer_norm: bool,
    kernel_scale: float = 2.0**0.5,
    kernel_scale_final: float = 1.0,
) -> tuple[dict[str, jax.Array], ...]:
    """Orthogonal kernels (scale `kernel_scale`, the last hidden layer `kernel_scale_final`), zero biases.

    sizes: (d_in, hidden_1, ..., hidden_n, d_out). Each member gets its own draw.
    """
    n_layers = len(sizes) - 1
    layer_keys = jax.random.split(key, n_layers)
    layers = []
    for i, (d_in, d_out, layer_key) in enumerate(zip(sizes[:-1], sizes[1:], layer_keys)):
        is_hidden = i < n_layers - 1
        scale = kernel_scale_final if i == n_layers - 2 else kernel_scale
        init = jax.nn.initializers.orthogonal(scale)
        kernel = jax.vmap(lambda k: init(k, (d_in, d_out), jnp.float32))(jax.random.split(layer_key, members))
        layer = {'kernel': kernel, 'bias': jnp.zeros((members, d_out), jnp.float32)}
        if is_hidden and layer_norm:
            layer['ln_scale'] = jnp.ones((members, d_out), jnp.float32)
            layer['ln_bias'] = jnp.zeros((members, d_out), jnp.float32)
        layers.append(layer)
    return tuple(layers)


@jax.custom_vjp
def layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    """LayerNorm over the last axis. x [..., d]; scale, bias broadcast against x (leading dims of 1).

    The backward pass is written by hand (the standard closed form) so that it reuses the normalised
    activations instead of autodiff's chain of elementwise ops: on a CPU LayerNorm's elementwise work
    costs a large share of the ensemble update.
    """
    return _layer_norm_forward(x, scale, bias)[0]


def _row_mean(x):
    return jnp.mean(x, axis=-1, keepdims=True)


def _normalize(x):
    centered = x - _row_mean(x)
    rstd = jax.lax.rsqrt(_row_mean(jnp.square(centered)) + LN_EPSILON)
    return centered * rstd, rstd


def _layer_norm_forward(x, scale, bias):
    x_hat, rstd = _normalize(x)
    return x_hat * scale + bias, (x_hat, rstd, scale)


def _reduce_to(g, shape):
    """Sums g over the axes broadcast to reach g.shape from `shape`."""
    axes = tuple(i for i, (a, b) in enumerate(zip(shape, g.shape)) if a == 1 and b != 1)
    return jnp.sum(g, axis=axes, keepdims=True)


def _layer_norm_backward(residuals, dy):
    x_hat, rstd, scale = residuals
    g = dy * scale
    dx = rstd * (g - _row_mean(g) - x_hat * _row_mean(g * x_hat))
    return dx, _reduce_to(dy * x_hat, scale.shape), _reduce_to(dy, scale.shape)


layer_norm.defvjp(_layer_norm_forward, _layer_norm_backward)


def layer_norm_reference(x, scale, bias):
    """Plain two-pass LayerNorm, differentiated by autodiff."""
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + LN_EPSILON) * scale + bias


def ensemble_mlp(params, x: jax.Array, matmul_dtype=jnp.float32) -> jax.Array:
    """Evaluates every member.

    x: [B, d_in] (shared by all members) or [M, B, d_in] (one input per member).
    Returns [M, B, d_out] float32. `matmul_dtype` = bfloat16 runs the matmuls with bf16 inputs and
    fp32 accumulation; everything else stays fp32.
    """
    n_layers = len(params)
    for i, layer in enumerate(params):
        kernel = layer['kernel'].astype(matmul_dtype)
        lhs = x.astype(matmul_dtype)
        members = kernel.shape[0]
        if lhs.ndim == 2 and members == 1:  # one member: a plain [B, d_in] x [d_in, d_out] matmul
            x = jnp.einsum('bi,mio->mbo', lhs, kernel, preferred_element_type=jnp.float32)
        else:
            # A shared input goes to every member as its own copy, so the product comes out member-major
            # [M, B, d_out] like every later activation. As one [B, d_in] x [d_in, M * d_out] matmul it
            # would come out [B, M, d_out], and XLA:CPU then moves that layer's activations and gradients
            # between the two layouts, which cost a third of the ensemble update (docs/performance.md,
            # "The online learner"); the copy of the input costs M * B * d_in floats of the smallest layer.
            lhs = jnp.broadcast_to(lhs, (members, *lhs.shape[-2:]))
            x = jnp.einsum('mbi,mio->mbo', lhs, kernel, preferred_element_type=jnp.float32)
        x = x + layer['bias'][:, None, :]
        if i < n_layers - 1:
            if 'ln_scale' in layer:
                x = layer_norm(x, layer['ln_scale'][:, None, :], layer['ln_bias'][:, None, :])
            x = jax.nn.relu(x)
    return x


def ensemble_mlp_reference(params, x: jax.Array) -> jax.Array:
    """Plain per-member loop of ordinary matmuls; same contract as `ensemble_mlp` (fp32)."""
    members = params[0]['kernel'].shape[0]
    outputs = []
    for m in range(members):
        h = x if x.ndim == 2 else x[m]
        for i, layer in enumerate(params):
            h = h @ layer['kernel'][m] + layer['bias'][m]
            if i < len(params) - 1:
                if 'ln_scale' in layer:
                    mu = h.mean(-1, keepdims=True)
                    sd = jnp.sqrt(((h - mu) ** 2).mean(-1, keepdims=True) + LN_EPSILON)
                    h = (h - mu) / sd * layer['ln_scale'][m] + layer['ln_bias'][m]
                h = jnp.maximum(h, 0.0)
        outputs.append(h)
    return jnp.stack(outputs)


def select_members(params, indices: jax.Array):
    """The sub-ensemble `indices` [k] (int32) of `params`: every leaf gathered on its member axis."""
    return jax.tree.map(lambda leaf: leaf[indices], params)


def mlp_matmul_flops(sizes: Sequence[int], members: int, batch: int) -> int:
    """Matmul FLOPs of one forward pass (2 per multiply-add)."""
    return 2 * members * batch * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
