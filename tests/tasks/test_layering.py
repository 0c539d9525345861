"""`tasks` is the pure job: it imports nothing of `workers`, `conquer` or `demos`, at module level or in
a function — but for `tasks/celery.py`, the entry module Celery's CLI finds by name (`celery -A tasks`),
which nothing in the product imports. Read from the source, so an import in a function that no test
happens to call is seen too; imports under `if TYPE_CHECKING:` never run and are not counted."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("tasks", "workers", "conquer", "demos")
ENTRY = ROOT / "tasks" / "celery.py"


def imported(path: Path) -> Iterator[str]:
    """The modules `path` imports (absolute imports: the project uses no relative ones)."""
    pending: list[ast.AST] = [ast.parse(path.read_text(encoding="utf-8"))]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        pending.extend(ast.iter_child_nodes(node))


def within(module: str, packages: tuple[str, ...]) -> bool:
    return module.partition(".")[0] in packages


def test_tasks_imports_nothing_of_the_layers_above_it_but_for_celerys_entry_module() -> None:
    climbing = {
        f"{path.relative_to(ROOT)} imports {module}"
        for path in sorted((ROOT / "tasks").rglob("*.py"))
        if path != ENTRY
        for module in imported(path)
        if within(module, ("workers", "conquer", "demos"))
    }
    assert not climbing


def test_nothing_in_the_product_imports_the_entry_module() -> None:
    importers = {
        str(path.relative_to(ROOT))
        for package in PRODUCT
        for path in sorted((ROOT / package).rglob("*.py"))
        if any(module == "tasks.celery" for module in imported(path))
    }
    assert not importers


def test_the_entry_module_is_what_the_check_exempts() -> None:
    """The exemption is exact: the entry module does import the Celery side (else it would be dead)."""
    assert "workers.celery.app" in set(imported(ENTRY))
