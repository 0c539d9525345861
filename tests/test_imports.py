"""No import cycle anywhere in the product code (tasks, workers, conquer, demos).

Every import of every product module is read from its source — those inside functions too, since a
function-level import is how a cycle hides (it only breaks at the first call) — except those under
`if TYPE_CHECKING:`, which never run (the executor modules import themselves there so that mypy
checks them against the executor interface). `importlib.import_module("literal")` counts as an
import; a module name computed at run time (the executor registry's) cannot be seen here.

An import names the most specific product module it can: `from conquer import exitcodes` depends on
`conquer.exitcodes`, `from workers import EXECUTORS` on the package `workers` (its `__init__`), and
`import workers.base` on `workers.base`.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Collection, Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tasks", "workers", "conquer", "demos")

Graph = dict[str, set[str]]


def modules(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Every module of `packages` under `root`, by dotted name (a package by its own name)."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def is_type_checking(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:`."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(tree: ast.AST, package: str, known: Collection[str]) -> set[str]:
    """The product modules (of `known`) that the imports of `tree`, a module of `package`, name —
    imports under `if TYPE_CHECKING:` left out."""
    found: set[str] = set()
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and is_type_checking(node.test):
            pending.extend(node.orelse)  # the body never runs; an `else:` does
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], *([base] if base else [])])
            # `from a import b`: the module a.b if there is one, else an attribute of a.
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names
            ]
        elif isinstance(node, ast.Call) and called(node) == "import_module" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names = [first.value]
        found.update(target for name in names if (target := resolve(name, known)) is not None)
        pending.extend(ast.iter_child_nodes(node))
    return found


def called(call: ast.Call) -> str | None:
    function = call.func
    return function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", None)


def resolve(name: str, known: Collection[str]) -> str | None:
    """The product module `name` refers to: itself, or the longest known module it starts with."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return candidate
    return None


def import_graph(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> Graph:
    """Each product module -> the product modules it imports."""
    found = modules(root, packages)
    graph: Graph = {}
    for name, path in found.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = imports(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), package, found)
    return graph


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's algorithm: the components of `graph` with more than one module, or a module that
    imports itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def cycle_in(component: list[str], graph: Graph) -> list[str]:
    """One cycle through the first module of `component`, as a path that ends where it starts."""
    start = component[0]
    members = set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:  # breadth first: the shortest way back to `start`
        following = []
        for node in frontier:
            for target in sorted(graph[node] & members):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"{component} is not a cycle")


def cycles(graph: Graph) -> list[str]:
    """One cycle of each tangle of modules that import each other, and (if more) all its modules."""
    found = []
    for component in strongly_connected(graph):
        cycle = cycle_in(component, graph)
        rest = f" (in a tangle of {', '.join(component)})" if len(component) > len(cycle) - 1 else ""
        found.append(" -> ".join(cycle) + rest)
    return found


# ------------------------------------------------------------------------------------------ tests


def test_the_product_code_has_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 50, "the product modules were not found"
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(found)


def write(root: Path, files: dict[str, str]) -> None:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))


def test_a_cycle_through_a_function_level_import_is_named(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/cli.py": "from app import extra\n",
            "app/extra.py": """\
                def late():
                    from app.cli import main
                """,
            "app/leaf.py": "import app.extra\n",
        },
    )
    assert cycles(import_graph(tmp_path, ["app"])) == ["app.cli -> app.extra -> app.cli"]


@pytest.mark.parametrize(
    "source",
    [
        "from app import one\n",
        "from . import one\n",
        "import app.one\n",
        "from .one import thing\n",
        "import importlib\nimportlib.import_module('app.one')\n",
    ],
)
def test_every_spelling_of_an_import_is_seen(tmp_path: Path, source: str) -> None:
    write(tmp_path, {"app/__init__.py": "", "app/one.py": "import app.two\n", "app/two.py": source})
    assert cycles(import_graph(tmp_path, ["app"])) == ["app.one -> app.two -> app.one"]


def test_imports_for_the_type_checker_only_and_attributes_of_a_package_are_no_cycle(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            # The package's __init__ imports its modules; a module taking another module of the
            # package (not an attribute of the package itself) does not depend on the __init__.
            "app/__init__.py": "from app.one import thing\n",
            "app/one.py": """\
                from typing import TYPE_CHECKING
                from app import two
                thing = 1
                if TYPE_CHECKING:
                    from app import one as this
                    import app.three
                """,
            "app/two.py": "",
            "app/three.py": "from app import one\n",
        },
    )
    graph = import_graph(tmp_path, ["app"])
    assert graph["app.one"] == {"app.two"}
    assert cycles(graph) == []
