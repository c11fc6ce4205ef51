"""Where a compiled program's time goes: one call traced with jax.profiler, its XLA ops summed by kind
and by the source they came from (`python -m wsrl_mjx.bench profile`).

XLA:CPU records one trace event per executed op (a "thunk", named after its HLO instruction). The
compiled HLO text says what each instruction is (a dot, an elementwise loop fusion, a reduction, a
copy, a gather...) and, through its stack frame, which Python file built it: MJX's physics, the
replay buffer, the networks, the optimizer. Control flow (while, conditional, call) is left out of the
sums: its events span the ops of its body, which are counted themselves.
"""
from __future__ import annotations

import collections
import dataclasses
import glob
import gzip
import json
import math
import os
import re
import tempfile
import time

# Kinds of op, by what XLA:CPU runs for them.
MATMUL, ELEMENTWISE, REDUCTION, COPY, GATHER, RNG, SORT, OTHER = (
    'matmul', 'elementwise', 'reduction', 'copy/transpose', 'gather/scatter/slice', 'rng', 'sort', 'other')
CONTROL = ('while', 'conditional', 'call')
# Source areas: the first of these path fragments found on an op's stack, innermost frame first.
# MJX's own frames rarely survive in the HLO's stack (the innermost recorded frame of its ops is
# brax's pipeline call), so the physics and brax's wrapper around it are one area.
AREAS = (
    ('mujoco/mjx', 'env (MJX step)'),
    ('brax/', 'env (MJX step)'),
    ('wsrl_mjx/envs', 'env (MJX step)'),
    ('kernels/replay', 'replay buffer'),
    ('optax/', 'optimizer'),
    ('wsrl_mjx/optim', 'optimizer'),
    ('kernels/ensemble', 'networks'),
    ('kernels/distributions', 'networks'),
    ('wsrl_mjx/networks', 'networks'),
    ('wsrl_mjx/agents', 'losses and targets'),
    ('wsrl_mjx/pipeline', 'pipeline'),
)

_INSTRUCTION = re.compile(r'^\s*(?:ROOT )?%?([\w.\-]+) = .*?\b([a-z][a-z0-9\-]*)\(')
_COMPUTATION = re.compile(r'^(?:ENTRY )?%?([\w.\-]+) .*\{$')
_FIELD = {name: re.compile(rf'\b{name}=%?([\w.\-"]+)') for name in ('kind', 'calls', 'stack_frame_id')}
_OPERANDS = re.compile(r'%([\w.\-]+)')
_GATHER_OPS = {'gather', 'scatter', 'dynamic-slice', 'dynamic-update-slice', 'slice', 'concatenate', 'pad'}
_COPY_OPS = {'copy', 'transpose', 'bitcast', 'broadcast', 'reshape', 'copy-start', 'copy-done'}


@dataclasses.dataclass(frozen=True)
class Instruction:
    name: str
    opcode: str
    computation: str
    kind: str  # one of the kinds above, or 'control'
    area: str
    fused: tuple[str, ...]  # opcodes inside a fusion


def parse_hlo(text: str) -> dict[str, Instruction]:
    """Instruction name -> Instruction, for every instruction of a compiled module's text
    (`jax.stages.Compiled.as_text()`)."""
    files, functions, locations, frames = {}, {}, {}, {}
    section = None
    computations: dict[str, list[tuple[str, str, str]]] = collections.defaultdict(list)  # name -> (inst, opcode, line)
    current = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped in ('FileNames', 'FunctionNames', 'FileLocations', 'StackFrames'):
            section = stripped
            continue
        if section and stripped and stripped[0].isdigit():
            ident, rest = stripped.split(' ', 1)
            if section == 'FileNames':
                files[ident] = rest.strip('"')
            elif section == 'FunctionNames':
                functions[ident] = rest.strip('"')
            elif section == 'FileLocations':
                locations[ident] = re.search(r'file_name_id=(\d+)', rest).group(1)
            else:
                loc = re.search(r'file_location_id=(\d+)', rest).group(1)
                parent = re.search(r'parent_frame_id=(\d+)', rest).group(1)
                frames[ident] = (loc, parent)
            continue
        section = None
        header = _COMPUTATION.match(line)
        if header and not line.startswith(' '):
            current = header.group(1)
            continue
        match = _INSTRUCTION.match(line)
        if match and current is not None:
            computations[current].append((match.group(1), match.group(2), line))

    def stack_files(frame_id: str | None) -> list[str]:
        out, seen = [], set()
        while frame_id and frame_id in frames and frame_id not in seen:
            seen.add(frame_id)
            loc, parent = frames[frame_id]
            out.append(files.get(locations.get(loc, ''), ''))
            frame_id = parent
        return out

    def area_of(line: str, known: dict[str, Instruction]) -> str:
        frame = _FIELD['stack_frame_id'].search(line)
        if frame is None:  # made by XLA itself (a layout's dot, a copy): the source of its operands
            operands = _OPERANDS.findall(line.split(' = ', 1)[1].split('), ', 1)[0])
            return next((known[o].area for o in operands if o in known and known[o].area != 'other'), 'other')
        for path in stack_files(frame.group(1)):
            for fragment, area in AREAS:
                if fragment in path:
                    return area
        return 'other'

    out: dict[str, Instruction] = {}
    for computation, instructions in computations.items():  # each in the text's order: operands first
        for name, opcode, line in instructions:
            fused: tuple[str, ...] = ()
            fusion_kind = None
            if opcode == 'fusion':
                calls = _FIELD['calls'].search(line)
                fused = tuple(op for _, op, _ in computations.get(calls.group(1), ())) if calls else ()
                kind_match = _FIELD['kind'].search(line)
                fusion_kind = kind_match.group(1) if kind_match else None
            out[name] = Instruction(name, opcode, computation, _kind(opcode, fused, fusion_kind), area_of(line, out),
                                    fused)
    return out


def _kind(opcode: str, fused: tuple[str, ...], fusion_kind: str | None) -> str:
    ops = set(fused) - {'parameter', 'constant', 'get-tuple-element', 'tuple'} if fused else {opcode}
    if opcode in CONTROL:
        return 'control'
    if ops & {'dot', 'convolution'}:
        return MATMUL
    if ops & {'sort'}:
        return SORT
    if ops & {'rng', 'rng-bit-generator', 'rng-get-and-update-state'}:
        return RNG
    if ops & {'gather', 'scatter', 'dynamic-slice', 'dynamic-update-slice'}:
        return GATHER
    if ops & {'reduce', 'reduce-window'} or fusion_kind == 'kInput':
        return REDUCTION
    if ops <= _COPY_OPS:
        return COPY
    if ops <= _GATHER_OPS | _COPY_OPS:
        return GATHER
    if ops & {'custom-call'}:
        return OTHER
    return ELEMENTWISE


def trace_ops(call, module_names: set[str] | None = None) -> tuple[float, float, dict[str, list[float]]]:
    """Runs `call()` (which must block until its results are ready) once under jax.profiler; returns
    (wall seconds, seconds from the first recorded op's start to the last one's end, hlo op name ->
    durations in seconds of its executions). A span well short of the wall means the trace missed ops."""
    import jax

    directory = tempfile.mkdtemp(prefix='wsrl_mjx_profile_')
    with jax.profiler.trace(directory, create_perfetto_trace=True):
        tic = time.perf_counter()
        call()
        wall = time.perf_counter() - tic
    paths = glob.glob(os.path.join(directory, '**', '*.trace.json.gz'), recursive=True) or glob.glob(
        os.path.join(directory, '**', '*.json.gz'), recursive=True)
    if not paths:
        raise RuntimeError(f'jax.profiler wrote no trace under {directory}')
    with gzip.open(paths[0]) as f:
        trace = json.load(f)
    events = trace['traceEvents'] if isinstance(trace, dict) else trace
    ops: dict[str, list[float]] = collections.defaultdict(list)
    first, last = math.inf, -math.inf
    for event in events:
        args = event.get('args') or {}
        op = args.get('hlo_op')
        if event.get('ph') != 'X' or not op or event.get('name', '').startswith('end: '):
            continue
        if module_names and args.get('hlo_module') not in module_names:
            continue
        ops[op].append(event['dur'] / 1e6)
        first, last = min(first, event['ts']), max(last, event['ts'] + event['dur'])
    return wall, max(last - first, 0.0) / 1e6, dict(ops)


def breakdown(instructions: dict[str, Instruction], ops: dict[str, list[float]], wall: float, per: float = 1.0,
              top: int = 15) -> dict:
    """Seconds per `per` units of work (env steps, updates) by kind, by area, and the `top` ops."""
    by_kind: dict[str, float] = collections.defaultdict(float)
    by_area: dict[str, float] = collections.defaultdict(float)
    by_op, counts = {}, {}
    unknown = 0.0
    for name, durations in ops.items():
        inst = instructions.get(name)
        seconds = sum(durations)
        if inst is None:
            unknown += seconds
            continue
        if inst.kind == 'control':
            continue
        by_kind[inst.kind] += seconds
        by_area[inst.area] += seconds
        by_op[name] = seconds
        counts[name] = len(durations)
    ops_total = sum(by_kind.values())
    ranked = sorted(by_op, key=by_op.get, reverse=True)[:top]
    return {
        'wall_s': wall / per,
        'ops_s': ops_total / per,
        'unattributed_s': unknown / per,
        'by_kind_s': {k: v / per for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        'by_area_s': {k: v / per for k, v in sorted(by_area.items(), key=lambda kv: -kv[1])},
        'top_ops': [{'op': name, 'kind': instructions[name].kind, 'area': instructions[name].area,
                     'calls': counts[name] / per, 's': by_op[name] / per,
                     'fused': ' '.join(sorted(set(instructions[name].fused) - {'parameter', 'constant'}))[:120]}
                    for name in ranked],
    }


def profile(compiled, call, per: float = 1.0, top: int = 15) -> dict:
    """`breakdown` of one traced `call()` of the compiled program `compiled` (a jax.stages.Compiled),
    with the wall time of one untraced `call()` before it (`untraced_wall_s`): tracing adds a cost to
    every op, so where a program runs many small ops the traced times overstate the untraced run."""
    text = compiled.as_text()
    module = re.match(r'HloModule ([\w.\-]+)', text)
    tic = time.perf_counter()
    call()
    untraced = time.perf_counter() - tic
    wall, span, ops = trace_ops(call, {module.group(1)} if module else None)
    return {'untraced_wall_s': untraced / per, 'recorded_fraction': span / wall,
            **breakdown(parse_hlo(text), ops, wall, per, top)}


def format_breakdown(title: str, result: dict, unit: str) -> str:
    ms = 1e3
    untraced = (f'{result["untraced_wall_s"] * ms:.2f} ms per {unit} untraced; traced: '
                if 'untraced_wall_s' in result else '')
    lines = [f'{title}: {untraced}{result["wall_s"] * ms:.2f} ms per {unit} wall, {result["ops_s"] * ms:.2f} ms '
             'in XLA ops (the ops of all threads summed; the rest of the wall is the runtime between ops)']
    if result.get('recorded_fraction', 1.0) < 0.95:
        lines.append(f'  the recorded ops span only {100 * result["recorded_fraction"]:.0f}% of the traced wall: the trace '
                     'lost ops (compare the executions per step below with the program), or in a short chunk the '
                     'host time around the ops is large')
    for label, table in (('by kind', result['by_kind_s']), ('by source', result['by_area_s'])):
        total = sum(table.values()) or 1.0
        lines.append(f'  {label}: ' + ', '.join(f'{k} {v * ms:.2f} ms ({100 * v / total:.0f}%)' for k, v in table.items()))
    lines.append(f'  top ops (ms per {unit}, executions per {unit}):')
    for op in result['top_ops']:
        lines.append(f'    {op["s"] * ms:8.3f} ms  x{op["calls"]:<7.1f} {op["kind"]:<20} {op["area"]:<20} {op["op"]}'
                     f'  [{op["fused"]}]')
    return '\n'.join(lines)
