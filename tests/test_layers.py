"""The package's imports run one way: kernels -> envs -> agents -> pipeline -> data -> config ->
experiment -> runner -> entry points (README, "How it works"). Read from the source with ast: no module is imported."""
import ast
import os

from conftest import REPO

# Leaf utilities import nothing of the package but other leaves, so any layer may use them. plot is
# also a command, and the figure the runner draws curves.png with; profiling reads traces for bench.
LEAVES = ('wsrl_mjx', 'wsrl_mjx.cli', 'wsrl_mjx.files', 'wsrl_mjx.metrics', 'wsrl_mjx.checkpoint', 'wsrl_mjx.plot',
          'wsrl_mjx.profiling')
LAYERS = (
    ('kernels',),
    ('wsrl_mjx.envs',),
    ('wsrl_mjx.networks', 'wsrl_mjx.optim', 'wsrl_mjx.agents'),
    ('wsrl_mjx.parallel', 'wsrl_mjx.pipeline'),
    ('wsrl_mjx.data',),
    ('wsrl_mjx.config', 'wsrl_mjx.configs'),
    ('wsrl_mjx.experiment',),
    ('wsrl_mjx.runner', 'wsrl_mjx.entry'),
    ('wsrl_mjx.train', 'wsrl_mjx.collect', 'wsrl_mjx.screen', 'wsrl_mjx.bench'),
)
ENTRY_POINTS = LAYERS[-1]


def layer(module: str) -> int:
    if module in LEAVES:
        return -1
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + '.') for p in prefixes):
            return i
    raise AssertionError(f'{module} is in no layer: add it to LAYERS')


def modules():
    for top in ('kernels', 'wsrl_mjx'):
        for root, _, files in os.walk(os.path.join(REPO, top)):
            for name in files:
                if name.endswith('.py'):
                    path = os.path.join(root, name)
                    module = os.path.relpath(path, REPO)[:-3].replace(os.sep, '.').removesuffix('.__init__')
                    yield module, path


def imports(path: str):
    """Every package module that `path` imports, at the top or inside a function."""
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f'{node.module}.{a.name}' for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        # `from wsrl_mjx import train` names the module wsrl_mjx.train; keep the longest that is one.
        found = [n for n in names if n.split('.')[0] in ('kernels', 'wsrl_mjx')]
        yield from {n for n in found if n != 'wsrl_mjx' or len(found) == 1}


def test_imports_run_downward():
    known = {m for m, _ in modules()} | {'wsrl_mjx.configs'}  # configs/ is installed as wsrl_mjx.configs
    wrong = set()
    for module, path in modules():
        for target in imports(path):
            while target not in known and '.' in target:  # `from wsrl_mjx.agents import sac` -> the module
                target = target.rsplit('.', 1)[0]
            if target == module:
                continue
            upward = layer(target) > layer(module)
            across = module in ENTRY_POINTS and target in ENTRY_POINTS  # no entry point borrows from another
            if upward or across:
                wrong.add(f'{module} imports {target}')
    assert not wrong, sorted(wrong)


def test_the_check_sees_an_upward_import(tmp_path):
    # The walk above must find imports inside functions too, where the upward ones used to hide.
    source = tmp_path / 'x.py'
    source.write_text('def f():\n    from wsrl_mjx.config import method\n    from wsrl_mjx import train\n')
    assert set(imports(str(source))) >= {'wsrl_mjx.config.method', 'wsrl_mjx.train'}
    assert layer('wsrl_mjx.config') > layer('wsrl_mjx.pipeline.online')
