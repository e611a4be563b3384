"""gflib is layered: a module imports only from its own layer or the layers below, at the top of
the file, with no circle. The layers are README.md's ("Layout")."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

GFLIB = Path(__file__).resolve().parent.parent / "gflib"

LAYERS = {
    "foundation": ("atomic", "stats", "progress", "reference", "verdict"),
    "the parts of a run": ("activations", "optimizers", "data", "models", "masks",
                           "found_masks", "hooks", "ensemble", "scsdc", "pruning", "flow",
                           "negflow", "updates", "trace", "flops"),
    "a run": ("config", "stacked", "train"),
    "sweeps and results": ("store", "results", "sweep", "summaries", "presets", "dask_worker"),
    "the study": ("analysis", "correlations", "plots", "monitor", "lightning_flow", "chapters"),
    "the tools": ("publish", "execute", "cost", "bench", "lease", "pages", "dashboard", "cli",
                  "__main__"),
}
"""Layer -> its modules (``chapters``: the package and each chapter module), lowest first."""
RANK = {m: i for i, mods in enumerate(LAYERS.values()) for m in mods}
PUBLIC = ("__init__",)
"""The package's own ``__init__`` re-exports the public API from every layer."""


def modules() -> dict:
    """``{dotted name under gflib: path}`` of every module of the package."""
    out = {}
    for path in sorted(GFLIB.rglob("*.py")):
        parts = path.relative_to(GFLIB).with_suffix("").parts
        out[".".join(parts)] = path
    return out


def _resolve(name: str, node: ast.ImportFrom | ast.Import, alias) -> list:
    """The gflib modules an import statement in module ``name`` brings in."""
    package = name.split(".")[:-1] if not name.endswith("__init__") else name.split(".")[:-1]
    if isinstance(node, ast.Import):
        return [a.name.split(".", 1)[1] for a in node.names if a.name.startswith("gflib.")]
    if node.level == 0:
        if not (node.module or "").startswith("gflib"):
            return []
        base = (node.module or "").split(".")[1:]
    else:
        base = package[:len(package) - node.level + 1] + (node.module.split(".")
                                                            if node.module else [])
    known = modules()
    target = ".".join(base)
    as_module = ".".join(base + [alias.name])
    return [as_module if as_module in known else target]


def imports(name: str, path: Path) -> tuple:
    """``(top-level gflib imports, gflib imports inside a function)`` of one module, as module
    names (``chapters.batchnorm``, ``chapters`` for the package)."""
    tree = ast.parse(path.read_text())
    top, inner = set(), []
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                top.update(_resolve(name, node, alias))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    for alias in sub.names:
                        inner += [(m, sub.lineno) for m in _resolve(name, sub, alias)]
    return {m.removesuffix(".__init__") for m in top if m}, inner


def layer(module: str) -> int:
    head = module.split(".")[0]
    return RANK[head]


def graph() -> dict:
    return {name.removesuffix(".__init__"): imports(name, path)[0]
            for name, path in modules().items() if name not in PUBLIC}


def test_every_module_has_a_layer():
    unplaced = [n for n in graph() if n.split(".")[0] not in RANK]
    assert not unplaced, f"modules without a layer in LAYERS (and README's Layout): {unplaced}"


def test_no_module_imports_from_a_layer_above_its_own():
    up = [(n, m) for n, deps in graph().items() for m in deps
          if m.split(".")[0] in RANK and layer(m) > layer(n)]
    assert not up, up


def test_no_import_circles():
    g = graph()
    state, stack, circles = {}, [], []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if m == n or m not in g:
                continue
            if state.get(m) == "open":
                circles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = "done"

    for n in sorted(g):
        if n not in state:
            visit(n)
    assert not circles, circles


def test_no_gflib_import_inside_a_function():
    """Such an import dodges a circle; third-party libraries that only some commands need
    (IPython, papermill, Dask) may still be imported where they are used."""
    inner = [(n, m, line) for n, path in modules().items()
             for m, line in imports(n, path)[1]]
    assert not inner, inner


def test_chapters_do_not_import_each_other():
    g = graph()
    chapters = [n for n in g if n.startswith("chapters.")]
    crossing = [(n, m) for n in chapters for m in g[n] if m.startswith("chapters")]
    assert not crossing, crossing


@pytest.mark.parametrize("name", ["verdict", "stats", "atomic"])
def test_the_foundation_imports_nothing_of_gflib(name):
    assert graph()[name] <= set(LAYERS["foundation"])
