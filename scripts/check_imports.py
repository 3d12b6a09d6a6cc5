"""Count module-level import cycles inside ``backdoorlab`` and imports of the CLI from the library.

Usage: ``python scripts/check_imports.py [SRC_DIR]`` (default ``src``). Prints the cycles (strongly
connected groups of modules that import each other at module level) and every library module that
imports ``backdoorlab.cli`` anywhere (module level or inside a function); exits 1 if there is any.
Imports under ``if TYPE_CHECKING:`` are not executed, so they do not count.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def module_name(path: Path, root: Path) -> str:
    """Dotted module name of ``path`` under ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    """Absolute target of a (possibly relative) ``from X import Y``."""
    if node.level == 0:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def imports(path: Path, mod: str, modules: set[str]) -> tuple[set[str], set[str]]:
    """(module-level imports, all imports) of one file, as module names inside the package."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    top: set[str] = set()
    every: set[str] = set()

    def targets(node: ast.AST) -> set[str]:
        out: set[str] = set()
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = resolve(mod, is_pkg, node)
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
        return {t for t in out if t in modules}

    def walk_top(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and _is_type_checking(node):
                continue
            if isinstance(node, ast.Import | ast.ImportFrom):
                top.update(targets(node))
            elif isinstance(node, ast.If | ast.Try | ast.With):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    sub = getattr(node, field, [])
                    for s in sub:
                        walk_top(s.body if isinstance(s, ast.ExceptHandler) else [s])

    walk_top(tree.body)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            every.update(targets(node))
    return top, every


def sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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


def main(argv: list[str]) -> int:
    """Print the report; return 1 if there is a cycle or a library import of the CLI."""
    root = Path(argv[0] if argv else "src")
    files = {module_name(p, root): p for p in sorted((root / "backdoorlab").rglob("*.py"))}
    modules = set(files)
    graph: dict[str, set[str]] = {}
    cli_users: list[str] = []
    for mod, path in files.items():
        top, every = imports(path, mod, modules)
        # importing a.b.c also runs the package a.b's __init__; an edge to a package is one to its __init__
        graph[mod] = {t for t in top if t != mod and not mod.startswith(t + ".")}
        if (
            mod != "backdoorlab.__main__"
            and not mod.startswith("backdoorlab.cli")
            and any(t == "backdoorlab.cli" or t.startswith("backdoorlab.cli.") for t in every)
        ):
            cli_users.append(mod)
    cycles = sccs(graph)
    print(f"modules: {len(files)}; module-level import cycles: {len(cycles)}")
    for c in cycles:
        print("  cycle: " + " <-> ".join(c))
    print(f"library modules importing backdoorlab.cli: {len(cli_users)}")
    for m in cli_users:
        print(f"  {m}")
    return 1 if cycles or cli_users else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
