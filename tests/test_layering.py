"""The package's dependencies point one way, with no cycles.

Every ``import`` in ``src/varcon`` (module level and inside functions alike; not those under
``if TYPE_CHECKING:``, which never run) is read from the source with ``ast``:

* between sub-packages, only the directions in ``ALLOWED`` (e.g. ``losses`` imports nothing
  else of varcon, ``evaluation`` never imports ``engine``);
* between modules, no cycle at all.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "varcon"

# Which sub-packages each may import (besides itself). Lower layers first.
ALLOWED: dict[str, set[str]] = {
    "_atomic": set(),
    "_registry": set(),
    "_text": set(),
    "losses": set(),
    "methods": {"losses", "_registry"},
    "data": {"_atomic", "_registry", "_text"},
    "models": {"methods", "_registry"},
    "runtime": {"_atomic", "_registry", "_text", "losses", "methods", "data", "models"},
    "evaluation": {"_atomic", "_registry", "_text", "losses", "methods", "data", "models",
                   "runtime"},
    "export": {"models", "runtime"},
    "reporting": {"_atomic", "_registry", "_text", "runtime", "evaluation"},
    "engine": {"_atomic", "_registry", "losses", "methods", "data", "models", "runtime",
               "evaluation"},
    "cli": {"runtime", "engine", "evaluation", "reporting", "export", "models", "data",
            "methods"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The varcon modules ``path`` imports (relative imports resolved). ``from pkg import
    sub`` of a sub-module ``pkg.sub`` counts as importing ``pkg.sub`` only (a package that
    re-exports its sub-modules is not in a cycle with them)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith("varcon"))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                if module.startswith("varcon"):
                    subs = {f"{module}.{a.name}" for a in child.names}
                    found.update(subs & modules)
                    if subs - modules:  # names defined in ``module`` itself
                        found.add(module)
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    return {name: {m for m in _imports(path, set(modules)) if m in modules and m != name}
            for name, path in modules.items()}


def _subpackage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_subpackages_import_only_downwards():
    wrong = []
    for module, targets in _graph().items():
        own = _subpackage(module)
        if own is None or own in ("__main__",):
            continue
        assert own in ALLOWED, f"new sub-package {own!r}: add it to ALLOWED with its layer"
        for target in targets:
            other = _subpackage(target)
            if other is not None and other != own and other not in ALLOWED[own]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    graph = _graph()
    # Tarjan's strongly connected components; a package importing its own sub-modules
    # (``__init__`` re-exporting them) is not a cycle unless a sub-module imports back.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def strongconnect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_imports():
    """The tests above would pass on an empty graph: check that it is not empty."""
    graph = _graph()
    assert "varcon.losses.functional" in graph["varcon.losses.varcon"]
    assert "varcon.runtime.checkpoint.format" in graph["varcon.runtime.checkpoint"]
    assert any(t.startswith("varcon.evaluation") for t in graph["varcon.engine.pretrain"])
