"""Ring replay buffer living on the device.

A buffer holds any pytree of transitions; each leaf has a leading capacity axis. Inserting n items
writes n rows with one scatter (cost ~ n, never ~ capacity; with the buffer donated the update is in
place), overwriting the oldest rows once full. Sampling draws indices uniformly with replacement from
the rows written so far.
"""
from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class ReplayBuffer:
    data: Any  # pytree; leaves [capacity, ...]
    position: jax.Array  # int32 []: row the next item is written to
    size: jax.Array  # int32 []: rows holding data, <= capacity

    @property
    def capacity(self) -> int:
        return jax.tree.leaves(self.data)[0].shape[0]


def replay_init(example_item: Any, capacity: int) -> ReplayBuffer:
    """Empty buffer shaped like `example_item` (one transition, no leading axis)."""
    data = jax.tree.map(lambda x: jnp.zeros((capacity, *jnp.shape(x)), jnp.result_type(x)), example_item)
    return ReplayBuffer(data=data, position=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32))


def replay_insert(buffer: ReplayBuffer, items: Any) -> ReplayBuffer:
    """Appends `items` (leaves [n, ...], n <= capacity) at the write position, wrapping around."""
    capacity = buffer.capacity
    n = jax.tree.leaves(items)[0].shape[0]
    rows = (buffer.position + jnp.arange(n, dtype=jnp.int32)) % capacity
    data = jax.tree.map(lambda store, new: store.at[rows].set(new.astype(store.dtype), unique_indices=True),
                        buffer.data, items)
    return ReplayBuffer(
        data=data,
        position=(buffer.position + n) % capacity,
        size=jnp.minimum(buffer.size + n, capacity),
    )


def replay_sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Any:
    """`batch_size` rows drawn uniformly with replacement from the filled rows; leaves [batch_size, ...].

    An empty buffer returns rows of zeros (index 0); callers sample only once data is in.
    """
    rows = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda store: store[rows], buffer.data)
