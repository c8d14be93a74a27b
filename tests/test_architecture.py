"""The package's shape: modules depend one way, data never on its rendering, functions stay short.

The import graph is read from the source (every ``import`` statement, those inside functions included,
except ``if TYPE_CHECKING:`` blocks), so a cycle hidden behind a function-level import is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "initlab"
MAX_LINES = 80  # a function's lines without its docstring (docs/architecture.md)


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


MODULES = _modules()


def _resolve(name: str) -> str:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    return skip


def import_graph() -> dict[str, set[str]]:
    """Module -> the initlab modules it imports (package ``__init__`` re-exports are not edges into it from
    its own submodules' point of view: ``from initlab.x import y`` names module ``initlab.x.y`` when it is one)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text())
        skip = _type_checking_nodes(tree)
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("initlab"):
                targets = [_resolve(f"{node.module}.{a.name}") for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [_resolve(a.name) for a in node.names if a.name.startswith("initlab")]
            graph[mod].update(t for t in targets if t and t != mod)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_cycle_detector_finds_a_cycle():  # the check above can fail
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("data", ["initlab.probing.stats", "initlab.probing.health", "initlab.probing.result",
                                  "initlab.semantics", "initlab.graph", "initlab.gains"])
def test_data_and_semantics_never_depend_on_rendering_or_the_tools(data):
    graph = import_graph()
    seen, todo = set(), [data]
    while todo:  # everything reachable from the module
        m = todo.pop()
        for t in graph[m]:
            if t not in seen:
                seen.add(t)
                todo.append(t)
    assert not [m for m in seen if m.startswith(("initlab.report", "initlab.probing.probe", "initlab.theory",
                                                  "initlab.model_init", "initlab.datainit", "initlab.cli"))]


def test_report_depends_on_data_not_on_the_tools_that_make_it():
    graph = import_graph()
    for mod, deps in graph.items():
        if mod.startswith("initlab.report"):
            assert "initlab.probing.probe" not in deps and "initlab.theory.propagate" not in deps, mod


def function_lengths() -> list[tuple[int, str]]:
    """(lines without the docstring, 'module:function') of every function, nested ones counted on their own."""
    rows = []
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            lines = set(range(node.lineno, node.end_lineno + 1))
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                lines -= set(range(body[0].lineno, body[0].end_lineno + 1))
            for inner in ast.walk(node):
                if inner is not node and isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines -= set(range(inner.lineno, inner.end_lineno + 1))
            rows.append((len(lines), f"{mod}:{node.name}"))
    return sorted(rows, reverse=True)


def test_no_function_over_the_limit():
    longest = function_lengths()
    print("longest functions:", longest[:5])  # the report (pytest -s shows it)
    over = [(n, f) for n, f in longest if n > MAX_LINES]
    assert not over, over


def test_function_length_counts_nested_functions_apart():
    assert MAX_LINES < 100
    lengths = dict((f, n) for n, f in function_lengths())
    assert lengths["initlab.semantics:describe"] >= 20  # measured, not zero


def test_references_cited_by_the_code_live_in_the_repository():
    root = SRC.parent
    assert (root / "docs" / "references.md").is_file() and (root / "docs" / "architecture.md").is_file()
    for path in MODULES.values():
        assert "REFERENCE.md" not in path.read_text() and "REFERENCE section" not in path.read_text(), path


def test_each_formula_is_stated_once_and_the_registry_reads_it():
    from initlab.initializers import registry

    for name in registry.available():
        e = registry.entry(name)
        assert e.formula and e.formula == e.cls.formula and e.reference == e.cls.reference, name
    text = (PACKAGE / "initializers" / "registry.py").read_text()
    assert all(registry.entry(n).formula not in text for n in registry.available()), "a formula copied"

    class NoFormula(registry.Initializer):
        name = "no_formula"

    with pytest.raises(ValueError, match="states no formula"):
        registry.register(NoFormula)


# Data, theory and rendering depend one way (issue 16: the circle probing -> report -> theory -> probing).
# A module may import modules of its own layer or of a layer above it in this list, never one below.
LAYERS = (
    ("formatting", ("initlab._format", "initlab.report.table")),  # numbers and text tables; a leaf
    ("probe data", ("initlab.probing.stats", "initlab.probing.health", "initlab.probing.result",
                    "initlab.probing.hooks")),
    ("theory", ("initlab.theory",)),  # predictions and comparisons; read probe data, never render it
    ("rendering", ("initlab.report",)),  # columns, figures, HTML: read probe data and theory
    ("tools", ("initlab.probing.probe", "initlab.probing.monitor", "initlab.probing")),  # make data, render it
)


def layer_of(module: str) -> int | None:
    """The index in LAYERS of the most specific prefix naming ``module`` (None: outside these layers)."""
    best, length = None, -1
    for k, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > length:
                best, length = k, len(p)
    return best


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, deps in graph.items():
        k = layer_of(mod)
        for d in deps:
            j = layer_of(d)
            if k is not None and j is not None and j > k:
                out.append(f"{mod} ({LAYERS[k][0]}) imports {d} ({LAYERS[j][0]})")
    return sorted(out)


def test_data_theory_and_rendering_depend_one_way():
    graph = import_graph()
    assert layer_violations(graph) == []
    # the layers are real: rendering reads probe data, tools render, the theory reads probe data
    assert "initlab.probing.result" in graph["initlab.report.figures"]
    assert "initlab.report.html" in graph["initlab.probing.probe"]
    assert "initlab.probing.result" in graph["initlab.theory.propagate"]
    assert graph["initlab._format"] == set()


def test_layer_check_catches_an_import_against_the_direction():  # the check above can fail
    graph = {m: set(d) for m, d in import_graph().items()}
    graph["initlab.theory.propagate"].add("initlab.probing.probe")  # what as_probe_result used to import
    graph["initlab.probing.result"].add("initlab.report.figures")
    assert layer_violations(graph) == [
        "initlab.probing.result (probe data) imports initlab.report.figures (rendering)",
        "initlab.theory.propagate (theory) imports initlab.probing.probe (tools)"]
    assert layer_of("initlab.report.table") == 0 and layer_of("initlab.report.html") == 3
    assert layer_of("initlab.probing.stats") == 1 and layer_of("initlab.probing") == 4
