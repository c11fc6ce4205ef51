"""wsrl_mjx.profiling: op kinds and sources read from compiled HLO, and the traced op times summed."""
import jax
import jax.numpy as jnp
import pytest

from kernels.ensemble import ensemble_mlp, init_ensemble_mlp
from wsrl_mjx import profiling

STEPS = 40


@pytest.fixture(scope='module')
def program():
    params = init_ensemble_mlp(jax.random.key(0), 3, (8, 32, 1), False, kernel_scale_final=1.0)
    x = jnp.ones((64, 8))

    def scanned(params, x):
        def body(c, _):
            q = ensemble_mlp(params, c)  # [3, 64, 1]: matmuls built in kernels/ensemble.py
            return jnp.sort(c * 0.99 + q.mean(), axis=0), None  # a sort built here

        return jax.lax.scan(body, x, None, length=STEPS)[0]

    compiled = jax.jit(scanned).lower(params, x).compile()
    compiled(params, x).block_until_ready()
    return compiled, lambda: compiled(params, x).block_until_ready()


def test_parse_hlo_kinds_and_sources(program):
    compiled, _ = program
    instructions = profiling.parse_hlo(compiled.as_text())
    kinds = {inst.kind for inst in instructions.values()}
    assert {'control', profiling.MATMUL, profiling.SORT} <= kinds
    assert any(inst.opcode == 'while' and inst.kind == 'control' for inst in instructions.values())
    # Every executed matmul (a fusion holding the dot, or the dot itself) comes from the networks.
    executed = [inst for inst in instructions.values() if inst.kind == profiling.MATMUL]
    assert executed and all(inst.area == 'networks' for inst in executed), [(i.name, i.area) for i in executed]
    sorts = [inst for inst in instructions.values() if inst.kind == profiling.SORT]
    assert sorts and all(inst.area == 'other' for inst in sorts)  # this file is no known source


def test_profile_counts_every_loop_iteration_once(program):
    compiled, call = program
    result = profiling.profile(compiled, call, per=STEPS, top=50)
    assert result['ops_s'] > 0 and result['wall_s'] > 0 and result['untraced_wall_s'] > 0
    assert 0.0 < result['recorded_fraction'] <= 1.0 + 1e-6  # ops within the traced call's wall
    assert sum(result['by_kind_s'].values()) == pytest.approx(result['ops_s'])
    assert sum(result['by_area_s'].values()) == pytest.approx(result['ops_s'])
    assert result['by_kind_s'][profiling.MATMUL] > 0 and result['by_kind_s'][profiling.SORT] > 0
    assert all(op['kind'] != 'control' for op in result['top_ops'])  # the while spans its body: not summed
    body = [op for op in result['top_ops'] if op['kind'] in (profiling.MATMUL, profiling.SORT)]
    assert body and all(op['calls'] == 1.0 for op in body)  # one execution per loop iteration
    text = profiling.format_breakdown('test', result, 'step')
    assert 'matmul' in text and 'networks' in text and 'untraced' in text
