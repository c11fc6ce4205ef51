"""The seed axis over devices and hosts.

Seeds are independent, so a run's programs are `vmap` over the seeds of one device inside
`jax.shard_map` over a 1-D mesh of every device of every process (axis 'seeds'): no collectives run
inside a program. With jax.distributed, each process holds the seeds of its own devices; the host
reads per-seed values through `gather`, which is a no-op copy on one process.
"""
from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from wsrl_mjx.cli import UsageError

AXIS = 'seeds'


class ParallelError(UsageError):
    """Bad input for the device layout; one line naming the flag and what is allowed."""


def seed_mesh() -> jax.sharding.Mesh:
    """All devices of all processes on one axis."""
    # Auto axis: shardings are layouts of the compiled programs, not part of the array types.
    return jax.make_mesh((jax.device_count(),), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=jax.devices())


def seed_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """Leading (seed) axis split over the mesh, other axes whole."""
    return NamedSharding(mesh, PartitionSpec(AXIS))


def check_seeds(seeds: int) -> None:
    sequential_pretraining()  # a bad WSRL_MJX_SEQUENTIAL_SEEDS fails here, before any work
    devices = jax.device_count()
    if seeds % devices:
        hint = '; --cpu_devices sets how many CPU devices there are' if jax.default_backend() == 'cpu' else ''
        raise ParallelError(f'--seeds={seeds} is not allowed with {devices} devices: a multiple of {devices} '
                            f'(each device runs seeds/{devices} seeds{hint})')


def per_seed(fn, mesh: jax.sharding.Mesh, seeded: int = 1, shared: int = 0, sequential: bool = False):
    """fn over one seed -> fn over [seeds, ...] inputs and outputs, the seed axis split over `mesh`.

    The first `seeded` positional arguments carry the seed axis; the `shared` ones after them (e.g. the
    offline dataset) are one copy per device, the same for every seed. `sequential`: a device runs its
    seeds one after another (`lax.map`) instead of vmapped, for programs whose per-seed work already
    fills the device and whose vmapped working set outgrows the CPU's caches (`sequential_pretraining`).
    """
    spec = PartitionSpec(AXIS)
    in_specs = (spec,) * seeded + (PartitionSpec(),) * shared
    if sequential:
        def over_seeds(*args):
            return jax.lax.map(lambda seeded_args: fn(*seeded_args, *args[seeded:]), args[:seeded])
    else:
        over_seeds = jax.vmap(fn, in_axes=(0,) * seeded + (None,) * shared)
    # check_vma off: MJX's solver has lax.conds whose branches jax's varying-axis check rejects; every
    # value here is per seed anyway (no collectives), so there is nothing for the check to find.
    return jax.shard_map(over_seeds, mesh=mesh, in_specs=in_specs, out_specs=spec, check_vma=False)


def sequential_pretraining() -> bool:
    """Whether pretraining runs a device's seeds one after another (`per_seed(sequential=True)`): on CPU.

    There 5 seeds' CQL updates at the default's 2x64 sizes ran 45.3 updates/s in all vmapped against
    56.9 in sequence (docs/performance.md): vmapped, the elementwise passes over five seeds' activations
    are bound by memory traffic. The results are the same up to rounding (XLA compiles the two programs
    apart; at those sizes bit for bit in one check). On a GPU vmapped seeds fill the device, in
    sequence they would not. `WSRL_MJX_SEQUENTIAL_SEEDS` = 1 or 0 overrides this (to compare the two,
    e.g. with `bench offline --seeds=N`); `check_seeds` checks it before any work.
    """
    override = os.environ.get('WSRL_MJX_SEQUENTIAL_SEEDS')
    if override not in (None, '', '0', '1'):
        raise ParallelError(f'WSRL_MJX_SEQUENTIAL_SEEDS={override!r} is not allowed: 1 (seeds in sequence) or '
                            '0 (vmapped), or unset (in sequence on CPU)')
    return jax.default_backend() == 'cpu' if not override else override == '1'


def compiler_options() -> dict[str, str]:
    """XLA options every program of a run is compiled with. Other backends than CPU: XLA's defaults.

    On CPU, YNNPACK's dot fusions are off, so every dot runs on XLA's own kernels. Which dots YNNPACK
    takes depends on the layouts XLA picks for the whole program, and those differ between the
    one-device program and the partitioned one: one [9, 46] x [46, 9] product of MJX's constraint
    solver went to YNNPACK on two devices and not on one, was summed in another order, and the
    simulation drifted apart from the first contact on. With them off, the MJX programs give the same
    results on any device count, and the fused online program measured no slower (docs/performance.md,
    "The online learner"). FMA contraction, the other rounding that depends on fusion, is off by an XLA flag that
    XLA takes only from the environment (wsrl_mjx/__init__.py).
    """
    return {'xla_cpu_experimental_ynn_fusion_type': ''} if jax.default_backend() == 'cpu' else {}


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    """One whole copy on every device (the offline dataset)."""
    return NamedSharding(mesh, PartitionSpec())


def put(tree, sharding: NamedSharding):
    """`tree` on `sharding`; a no-op (no copy) for arrays already laid out so.

    On several processes an array this process holds whole (an op-by-op result such as the initial
    keys and agent, which every process computes alike) goes through the host: each process then
    keeps the shards of its own devices. Arrays that already span the processes are resharded.
    """
    def one(x):
        if jax.process_count() > 1 and isinstance(x, jax.Array) and x.is_fully_addressable:
            if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                return jax.random.wrap_key_data(one(jax.random.key_data(x)), impl=jax.random.key_impl(x))
            x = np.asarray(x)
        return jax.device_put(x, sharding)

    return jax.tree.map(one, tree)


def gather(tree):
    """Host numpy copy of every seed of `tree` (all processes' shards when running on several hosts)."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def initialize_distributed(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """jax.distributed.initialize from flags, else from the usual environment (SLURM, Open MPI, ...).

    Does nothing for a single process (no coordinator given and none found in the environment).
    """
    env_coordinator = os.environ.get('JAX_COORDINATOR_ADDRESS')
    cluster = any(k in os.environ for k in ('SLURM_JOB_ID', 'OMPI_COMM_WORLD_SIZE'))
    if not (coordinator or env_coordinator or cluster):
        return
    # CPU devices need a collectives backend for the host-side gathers; GPUs ignore this setting.
    # (Asking for the backend here would initialise it, which jax.distributed must come before.)
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(coordinator_address=coordinator or env_coordinator,
                               num_processes=num_processes, process_id=process_id)
