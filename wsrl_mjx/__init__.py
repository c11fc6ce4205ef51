"""wsrl_mjx: WSRL offline-to-online RL with MJX environments, replay and updates in one XLA program."""
import os
import platform

__version__ = "0.1.0"


def _cpu_code_without_fma() -> None:
    """On x86-64, XLA:CPU generates code without FMA instructions (`--xla_cpu_max_isa=AVX`), unless
    XLA_FLAGS already names a max ISA.

    XLA:CPU contracts a multiply and an add into one FMA only where a fusion puts both in one kernel,
    so two compilations of the same computation that fuse differently (one device and a partitioned
    program, for instance) round differently. Without FMA they round alike, and the same seeds give the
    same results bit for bit on any device layout (tests/test_parallel.py). XLA reads the flag once,
    when its CPU backend starts, and not per program: so it is set here, on import, before the
    entry points use JAX. GPU programs and other processors are not affected. The fused online program
    measured no slower with it (docs/performance.md, "The online learner").
    """
    flags = os.environ.get('XLA_FLAGS', '')
    if platform.machine().lower() in ('x86_64', 'amd64') and '--xla_cpu_max_isa' not in flags:
        os.environ['XLA_FLAGS'] = f'{flags} --xla_cpu_max_isa=AVX'.strip()


_cpu_code_without_fma()
