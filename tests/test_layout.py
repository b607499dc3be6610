"""The package layout: imports run downwards through the layers, and no module imports itself back.

Every module under ``src/morphospace`` is parsed (``ast``, nothing is imported); every import
counts, at the top of a module or inside a function, relative ones resolved. The layers are
the ones documented in ``morphospace/__init__.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "morphospace"
ROOT = "morphospace"

# Highest first. A module may import from its own unit (top-level module or sub-package) and from
# the units of any lower layer; never from a higher layer, and never from another unit of its own
# layer (siblings such as vade/ and analysis/ do not import each other).
LAYERS: list[tuple[str, ...]] = [
    ("__main__",),
    ("cli",),
    ("__init__",),
    ("runs",),
    ("pipeline",),
    ("api", "plot", "export", "study", "report"),
    ("vade", "analysis"),
    ("ssl",),
    ("data", "image", "nets"),
    ("config", "run"),
    ("errors", "progress", "caches", "orphans"),
    ("script_guard",),
]
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def module_name(path: Path) -> tuple[str, bool]:
    """``(dotted name, is a package __init__)`` of a file under ``PKG``."""
    parts = list(path.relative_to(PKG).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join([ROOT, *parts]), is_package


def unit_of(module: str) -> str:
    """The layer unit of a module: its top-level module or sub-package (``__init__`` for the root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def package_modules() -> dict[str, tuple[Path, bool]]:
    return {module_name(p)[0]: (p, module_name(p)[1]) for p in sorted(PKG.rglob("*.py"))}


def _known(name: str, modules) -> str:
    """The longest prefix of ``name`` that is a module of the package (``a.b.func`` -> ``a.b``)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in modules:
            return candidate
    return ROOT


def imports_of(module: str, path: Path, is_package: bool, modules) -> list[tuple[str, int]]:
    """``(imported module, line)`` for every import of the package in ``path``, lazy ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module.split(".") if is_package else module.split(".")[:-1]
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == ROOT or alias.name.startswith(ROOT + "."):
                    found.append((_known(alias.name, modules), node.lineno))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not (target == ROOT or target.startswith(ROOT + ".")):
                continue
            for alias in node.names:  # `from . import pipeline` imports a module, `from .x import f` a name
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in modules else _known(target, modules), node.lineno))
    return [(t, line) for t, line in found if t != module]


def import_graph() -> dict[str, list[tuple[str, int]]]:
    modules = package_modules()
    return {m: imports_of(m, path, is_pkg, modules) for m, (path, is_pkg) in modules.items()}


def layer_violations(graph: dict[str, list[tuple[str, int]]]) -> list[str]:
    """Every import that does not run downwards, as a readable line."""
    bad = []
    for module, edges in sorted(graph.items()):
        a = unit_of(module)
        for target, line in edges:
            b = unit_of(target)
            if a == b:
                continue
            if a not in LAYER_OF or b not in LAYER_OF:
                bad.append(f"{module}:{line} imports {target}: unit {a if a not in LAYER_OF else b!r} is in no layer "
                           "(add it to LAYERS and to the layout paragraph of morphospace/__init__.py)")
            elif LAYER_OF[a] >= LAYER_OF[b]:
                how = "a sibling of its own layer" if LAYER_OF[a] == LAYER_OF[b] else "a higher layer"
                bad.append(f"{module}:{line} imports {target}: {a} (layer {LAYER_OF[a]}) may not import {b} "
                           f"(layer {LAYER_OF[b]}, {how})")
    return bad


def find_cycles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """One cycle (a list of modules, first = last) per strongly connected component of size > 1."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan; the package is small enough for recursion
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w, _ in graph.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for comp in components:
        members = set(comp)
        start = min(comp)
        path, seen = [start], {start}
        while True:  # walk inside the component until a module repeats
            nxt = next(w for w, _ in graph[path[-1]] if w in members)
            if nxt in seen:
                cycles.append(path[path.index(nxt):] + [nxt])
                break
            path.append(nxt)
            seen.add(nxt)
    return cycles


def _describe(graph, cycle: list[str]) -> str:
    steps = []
    for a, b in zip(cycle, cycle[1:]):
        line = next(n for t, n in graph[a] if t == b)
        steps.append(f"{a}:{line} -> {b}")
    return "; ".join(steps)


# --- the package as it is -----------------------------------------------------------------------

def test_every_unit_of_the_package_has_a_layer():
    units = {unit_of(m) for m in package_modules()}
    assert units <= set(LAYER_OF), f"units in no layer: {sorted(units - set(LAYER_OF))}"


def test_imports_run_downwards():
    bad = layer_violations(import_graph())
    assert not bad, "imports that do not run downwards:\n  " + "\n  ".join(bad)


def test_no_import_cycles():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n  " + "\n  ".join(_describe(graph, c) for c in cycles)


MAX_LINES = 400  # a module that outgrows it is split where a concept of its own begins


def test_no_module_is_longer_than_the_limit():
    """analysis/density.py (408 lines) and analysis/classes.py (404) had grown past it."""
    long = {name: n for name, (path, _) in package_modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_readme_states_the_limit_and_the_test_that_checks_it():
    """The README said "No module is much over 400 lines (the largest, study/training.py, 414)" once
    the limit held for every module; it states the limit and names the test that checks it."""
    readme = " ".join((PKG.parents[1] / "README.md").read_text(encoding="utf-8").split())
    assert (f"No module is over {MAX_LINES} lines, checked by `tests/test_layout.py`'s "
            f"`{test_no_module_is_longer_than_the_limit.__name__}`.") in readme


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    # imported inside functions, two levels up (``from ..vade.train import``)
    assert "morphospace.data.ingest" in {t for t, _ in graph["morphospace.pipeline.survey"]}
    assert {"morphospace.vade.train", "morphospace.report"} <= {t for t, _ in graph["morphospace.pipeline.stages"]}
    # one level: a sibling module of the same package
    assert "morphospace.pipeline.survey" in {t for t, _ in graph["morphospace.pipeline.stages"]}
    # `from . import __version__` is an import of the package root
    assert "morphospace" in {t for t, _ in graph["morphospace.cli.parser"]}


# --- the checks themselves can fail ---------------------------------------------------------------

@pytest.mark.parametrize("edge, expected", [
    (("morphospace.run.rundir", "morphospace.vade.io"), "run (layer 9) may not import vade"),
    (("morphospace.vade.embed", "morphospace.analysis.compare"), "a sibling of its own layer"),
    (("morphospace.ssl.training", "morphospace.vade.train"), "ssl (layer 7) may not import vade"),
])
def test_an_upward_or_sideways_import_is_reported(edge, expected):
    graph = {"morphospace.cli": [("morphospace.pipeline", 1)], edge[0]: [(edge[1], 42)]}
    bad = layer_violations(graph)
    assert len(bad) == 1 and expected in bad[0] and f"{edge[0]}:42 imports {edge[1]}" in bad[0]


def test_a_cycle_is_reported_with_its_imports():
    graph = {"morphospace.a": [("morphospace.b", 3)], "morphospace.b": [("morphospace.c", 5)],
             "morphospace.c": [("morphospace.a", 7)], "morphospace.d": [("morphospace.a", 1)]}
    cycles = find_cycles(graph)
    assert cycles == [["morphospace.a", "morphospace.b", "morphospace.c", "morphospace.a"]]
    assert _describe(graph, cycles[0]) == ("morphospace.a:3 -> morphospace.b; morphospace.b:5 -> morphospace.c; "
                                           "morphospace.c:7 -> morphospace.a")
