"""An import-linter contract about what runs when a module is imported (`./dev lint`).

grimp, import-linter's graph builder, records every import statement, including the ones in a
function body, which run only when the function is called (a screen pushing another screen
imports it there on purpose). "Screens do not import each other at module level" is therefore
an independence contract checked on the graph of *module-level* imports: before the check,
every import edge whose statements all sit in a function body, or under `if TYPE_CHECKING:`,
is removed. Class bodies and module-level `if`/`try` blocks run at import time and count.

Options on top of the independence contract's: `helpers`, modules matched by `modules` that
are not members (shared code every member may import, such as a screens' base class).
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterable
from functools import cache

from grimp import ImportGraph
from importlinter import ContractCheck, fields
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.independence import IndependenceContract
from importlinter.domain.helpers import module_expressions_to_modules

_DEFERRED_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def module_level_import_lines(source: str) -> frozenset[int]:
    """Line numbers of the import statements that run when a module with `source` is imported
    (every line of a statement that spans several)."""
    lines: set[int] = set()

    def visit(nodes: Iterable[ast.AST]) -> None:
        for node in nodes:
            if isinstance(node, _DEFERRED_SCOPES):
                continue
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
            visit(ast.iter_child_nodes(node))

    visit(ast.parse(source).body)
    return frozenset(lines)


@cache
def _module_level_lines_of(module: str) -> frozenset[int] | None:
    """The module-level import lines of an importable module, None when it has no source."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    with open(spec.origin, encoding="utf-8") as handle:
        return module_level_import_lines(handle.read())


def remove_deferred_imports(graph: ImportGraph) -> list[tuple[str, str]]:
    """Remove every edge of `graph` that no module-level statement makes; returns them."""
    removed = []
    for importer in sorted(graph.modules):
        if graph.is_module_squashed(importer):
            continue  # an external package: not analysed, it has no edges of its own
        lines = _module_level_lines_of(importer)
        if lines is None:
            continue
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            details = graph.get_import_details(importer=importer, imported=imported)
            if details and not any(d["line_number"] in lines for d in details):
                graph.remove_import(importer=importer, imported=imported)
                removed.append((importer, imported))
    return removed


class ModuleLevelIndependenceContract(IndependenceContract):
    """The independence contract on module-level imports only (see the module docstring)."""

    type_name = "module_level_independence"

    helpers = fields.SetField(subfield=fields.ModuleField(), required=False)

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        remove_deferred_imports(graph)
        helper_names = {helper.name for helper in self.helpers or ()}  # type: ignore[attr-defined]
        members = module_expressions_to_modules(graph, self.modules)  # type: ignore[arg-type]
        parse = fields.ModuleExpressionField().parse
        self.modules = {  # type: ignore[assignment]
            parse(module.name) for module in members if module.name not in helper_names
        }
        return super().check(graph, verbose)


class ModuleLevelForbiddenContract(ForbiddenContract):
    """The forbidden contract on module-level imports only (see the module docstring)."""

    type_name = "module_level_forbidden"

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        remove_deferred_imports(graph)
        return super().check(graph, verbose)
