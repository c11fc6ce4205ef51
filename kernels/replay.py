"""Ring replay buffer living on the device.

A buffer holds any pytree of transitions. Its leaves are stored side by side as the columns of one
[capacity, width] matrix per dtype, so an item is one row: inserting n items writes n rows with one
scatter (cost ~ n, never ~ capacity; with the buffer donated the update is in place), overwriting the
oldest rows once full, and a batch is one gather. Sampling draws indices uniformly with replacement
from the rows written so far.

Why rows and not one array per leaf: with per-leaf arrays, XLA:CPU fused the row write of some leaves
(the observation and action of a transition) into the gather that samples the next batch from them,
and copy insertion then copied those whole leaves twice per env step to keep the write in place. A 1M
buffer ran the online SAC program at half the speed of a 100k one. As rows, the write and the gather
stay apart and nothing buffer-sized is copied (tests/test_online.py checks a compiled program).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where each leaf of an item lives: (dtype name, first column, shape) per leaf, in tree order."""
    treedef: Any
    leaves: tuple[tuple[str, int, tuple[int, ...]], ...]


@flax.struct.dataclass
class ReplayBuffer:
    rows: dict  # dtype name -> [capacity, width]: the item of each row, its leaves side by side
    position: jax.Array  # int32 []: row the next item is written to
    size: jax.Array  # int32 []: rows holding data, <= capacity
    layout: Layout = flax.struct.field(pytree_node=False)

    @property
    def capacity(self) -> int:
        return jax.tree.leaves(self.rows)[0].shape[0]


def replay_init(example_item: Any, capacity: int) -> ReplayBuffer:
    """Empty buffer shaped like `example_item` (one transition, no leading axis)."""
    leaves, treedef = jax.tree.flatten(example_item)
    widths: dict[str, int] = {}
    placed = []
    for leaf in leaves:
        dtype, shape = jnp.result_type(leaf).name, tuple(jnp.shape(leaf))
        start = widths.get(dtype, 0)
        placed.append((dtype, start, shape))
        widths[dtype] = start + math.prod(shape)
    rows = {dtype: jnp.zeros((capacity, width), dtype) for dtype, width in widths.items()}
    return ReplayBuffer(rows=rows, position=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32),
                        layout=Layout(treedef, tuple(placed)))


def replay_insert(buffer: ReplayBuffer, items: Any) -> ReplayBuffer:
    """Appends `items` (leaves [n, ...], n <= capacity) at the write position, wrapping around."""
    capacity = buffer.capacity
    leaves = buffer.layout.treedef.flatten_up_to(items)
    n = leaves[0].shape[0]
    columns: dict[str, list] = {dtype: [] for dtype in buffer.rows}
    for (dtype, _, _), leaf in zip(buffer.layout.leaves, leaves):
        columns[dtype].append(jnp.reshape(leaf, (n, -1)).astype(dtype))
    at = (buffer.position + jnp.arange(n, dtype=jnp.int32)) % capacity
    rows = {dtype: store.at[at].set(jnp.concatenate(columns[dtype], axis=1), unique_indices=True)
            for dtype, store in buffer.rows.items()}
    return buffer.replace(rows=rows, position=(buffer.position + n) % capacity,
                          size=jnp.minimum(buffer.size + n, capacity))


def replay_get(buffer: ReplayBuffer, indices: jax.Array) -> Any:
    """The items of rows `indices` ([k] int): a pytree like the inserted items, leaves [k, ...]."""
    picked = {dtype: store[indices] for dtype, store in buffer.rows.items()}
    k = indices.shape[0]
    leaves = [picked[dtype][:, start:start + math.prod(shape)].reshape(k, *shape)
              for dtype, start, shape in buffer.layout.leaves]
    return jax.tree.unflatten(buffer.layout.treedef, leaves)


def replay_sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Any:
    """`batch_size` rows drawn uniformly with replacement from the filled rows; leaves [batch_size, ...].

    An empty buffer returns rows of zeros (index 0); callers sample only once data is in.
    """
    indices = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return replay_get(buffer, indices)
