"""The layers of the package: imports point down only, and there are no import cycles.

Every ``import`` in ``rnnumba/`` is read from the source (module level and inside functions
alike) and checked against the layer table of ``docs/design.md``: a module may import from
lower layers only (kernels, and the estimators of one layer, also among themselves), and
the import graph has no cycle.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "rnnumba"

#: (layer, modules): bottom to top; a name ending in ".*" covers a package.
LAYERS = [
    ("settings", ["rnnumba._config"]),
    ("kernels", ["rnnumba.kernels.*"]),
    ("params", ["rnnumba.params"]),
    ("backend", ["rnnumba.backend"]),
    ("recurrent", ["rnnumba.recurrent"]),
    ("learning parts", ["rnnumba.inputs", "rnnumba.heads", "rnnumba.losses", "rnnumba.optim"]),
    ("model", ["rnnumba.model"]),
    ("training core", ["rnnumba.training"]),
    ("estimator support", ["rnnumba._validation", "rnnumba.persistence"]),
    ("estimators", ["rnnumba.estimators", "rnnumba.preprocessing", "rnnumba.forecasting",
                    "rnnumba.text"]),
    ("loading", ["rnnumba.loading"]),
    ("measuring and showing", ["rnnumba.plotting", "rnnumba.profiling"]),
    ("command line", ["rnnumba.cli", "rnnumba._demo"]),
    ("entry point", ["rnnumba.__main__"]),
]
#: Layers whose modules may import each other (still without a cycle).
SHARED = {"kernels", "estimators", "measuring and showing", "command line"}


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer_of(module):
    for rank, (name, members) in enumerate(LAYERS):
        for member in members:
            if module == member or (member.endswith(".*") and
                                    (module + ".").startswith(member[:-1])):
                return rank, name
    return None


def _imports(path):
    """The ``rnnumba`` names ``path`` imports, anywhere in the file: ``[(module, names)]``
    (``import a.b`` gives ``("a.b", [])``, ``from a import b, c`` gives ``("a", ["b", "c"])``)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.append((prefix, [alias.name for alias in node.names]))
    return [(name, names) for name, names in found if name.startswith("rnnumba")]


def _graph():
    """``{module: {imported modules}}`` over the package's own modules: ``from a import b``
    is an arrow to the module ``a.b`` where there is one, else to ``a``."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}

    def owner(name):
        while name and name not in modules:  # "pkg.module.attr" -> "pkg.module"
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for module, path in modules.items():
        targets = set()
        for name, names in _imports(path):
            if not names:
                targets.add(owner(name))
            for alias in names:
                targets.add(f"{name}.{alias}" if f"{name}.{alias}" in modules else owner(name))
        graph[module] = {t for t in targets if t and t not in (module, "rnnumba")}
    return graph


GRAPH = _graph()


def test_every_module_has_a_layer():
    missing = sorted(m for m in GRAPH if m != "rnnumba" and _layer_of(m) is None)
    assert not missing, f"modules missing from the layer table: {missing}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m != "rnnumba"))
def test_imports_point_down(module):
    rank, layer = _layer_of(module)
    wrong = []
    for target in sorted(GRAPH[module]):
        target_rank, target_layer = _layer_of(target)
        if target_rank > rank or (target_rank == rank and layer not in SHARED):
            wrong.append(f"{target} ({target_layer})")
    assert not wrong, f"{module} ({layer}) imports from above or beside it: {wrong}"


def test_no_import_cycles():
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_check_sees_function_level_imports(tmp_path):
    """A function-level import is an arrow too (the estimators <-> persistence cycle was
    one)."""
    source = tmp_path / "rnnumba" / "persistence.py"
    source.parent.mkdir()
    source.write_text("def load():\n    from .estimators import RNNClassifier\n")
    global PACKAGE
    saved = PACKAGE
    PACKAGE = tmp_path / "rnnumba"
    try:
        assert _imports(source) == [("rnnumba.estimators", ["RNNClassifier"])]
    finally:
        PACKAGE = saved
