"""The import rules of docs/architecture.md, checked on the code itself.

* Views (report, TUI, the run listing, the read-only commands) never import training code, and the
  training code never imports views — followed through every import, function-level ones too.
* Importing the config layer, the report or the TUI's data layer does not import torch.
* No import cycles inside the package (function-level and TYPE_CHECKING imports count: a cycle
  hidden in a function body is still two modules that each need the other).
* No module is longer than the limit unless it is listed below with the reason it is one piece.

The import graph is read from the source with `ast` (nothing is imported to build it), so a rule
breaks as soon as an import is written, whether or not a test happens to execute it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ncbench"

#: Modules that train (or build what is trained): data, models, losses, the loop, NC maths.
TRAINING = ("ncbench.train", "ncbench.worker", "ncbench.models", "ncbench._resnet",
            "ncbench.losses", "ncbench.nc", "ncbench.nc_measures", "ncbench.data", "ncbench.batches",
            "ncbench.precision", "ncbench.checkpoint")
#: Modules that show or query results.
VIEWS = ("ncbench.report", "ncbench.tui", "ncbench.listing", "ncbench.cli.cmd_status",
         "ncbench.cli.cmd_sql", "ncbench.cli.cmd_report", "ncbench.cli.cmd_tui")
#: Modules whose import must not import torch (they serve views and validation).
TORCH_FREE = ("ncbench.config", "ncbench.report", "ncbench.listing", "ncbench.tui.data",
              "ncbench.store", "ncbench.lifecycle", "ncbench.rundir", "ncbench.paths")

MAX_LINES = 500
#: Modules allowed over MAX_LINES, each with the reason it is one piece.
LONG_MODULES: dict[str, str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@lru_cache(maxsize=1)
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, level: int, importer: str, is_package: bool) -> str:
    if level == 0:
        return module
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([module] if module else []))


@lru_cache(maxsize=1)
def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its source (explicit imports only:
    importing `a.b.c` is an edge to `a.b.c`, not to the packages `a` and `a.b` that Python loads
    on the way; `from a import b` is an edge to the module `a.b` when there is one, else to `a`)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        edges: set[str] = set()
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module or "", node.level, name, path.name == "__init__.py")
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                           for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods and "." in t:  # `import ncbench.x.y` of a non-module
                    t = t.rsplit(".", 1)[0]
                if t in mods and t != name and t.startswith("ncbench"):
                    edges.add(t)
        graph[name] = edges
    return graph


def _reachable(start: str) -> dict[str, str]:
    """Modules reachable from `start`, each mapped to the module that imports it (for messages)."""
    graph = import_graph()
    seen: dict[str, str] = {}
    stack = [start]
    while stack:
        m = stack.pop()
        for t in graph.get(m, ()):
            if t not in seen and t != start:
                seen[t] = m
                stack.append(t)
    return seen


def _chain(start: str, end: str, parents: dict[str, str]) -> str:
    chain = [end]
    while chain[-1] != start and chain[-1] in parents:
        chain.append(parents[chain[-1]])
    return " -> ".join(reversed(chain))


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_graph_sees_the_package():
    graph = import_graph()
    assert "ncbench.config" in graph and "ncbench.train" in graph
    assert "ncbench.losses" in graph["ncbench.train"]  # a real edge is found
    assert len(graph) >= 30


@pytest.mark.parametrize("view", [m for m in sorted(_modules()) if _under(m, VIEWS)])
def test_views_never_import_training_code(view):
    parents = _reachable(view)
    bad = sorted(m for m in parents if _under(m, TRAINING))
    assert not bad, "a view reaches training code: " + "; ".join(
        _chain(view, m, parents) for m in bad)


@pytest.mark.parametrize("module", [m for m in sorted(_modules()) if _under(m, TRAINING)])
def test_training_code_never_imports_views(module):
    parents = _reachable(module)
    bad = sorted(m for m in parents if _under(m, VIEWS) or m.startswith("ncbench.cli"))
    assert not bad, "training code reaches a view: " + "; ".join(
        _chain(module, m, parents) for m in bad)


def test_no_import_cycles():
    graph = import_graph()
    # Tarjan's strongly connected components: any component of more than one module is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                cycles.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles: " + " | ".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", [m for m in TORCH_FREE if m in _modules()])
def test_importing_does_not_import_torch(module):
    code = (f"import sys, {module}\n"
            "heavy = sorted(m for m in ('torch', 'torchvision', 'matplotlib') if m in sys.modules)\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"importing {module} imports {out.stdout.strip()}"


def test_an_import_of_a_training_module_is_caught(tmp_path):
    """The rule is not vacuous: the same reachability finds training code behind a view's
    function-level import (here the TUI's data layer, were it to import the losses lazily)."""
    graph = import_graph()
    assert "ncbench.tui.data" in graph
    graph["ncbench.tui.data"].add("ncbench.losses")
    try:
        assert "ncbench.losses" in _reachable("ncbench.tui")
    finally:
        graph["ncbench.tui.data"].discard("ncbench.losses")


def test_modules_are_short():
    long = {}
    for name, path in _modules().items():
        n = len(path.read_text().splitlines())
        if n > MAX_LINES and name not in LONG_MODULES:
            long[name] = n
    assert not long, f"modules over {MAX_LINES} lines (split them, or say in LONG_MODULES why " \
                     f"one must be one piece): {long}"
