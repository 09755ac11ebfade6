"""The import structure of hfkit, measured with grimp (the library import-linter is built on), against the
layers written in pyproject.toml's [tool.importlinter] contract:

- import circles: groups of modules that import each other round (strongly connected components);
- imports from a lower layer up (TYPE_CHECKING imports included);
- the hfkit modules run.py imports, and the files reachable from hfkit.run (what a reader of a run follows);
- the 10 longest functions.

    python bench/structure.py [pyproject.toml whose layers to measure against]
"""
from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent


def layers() -> list[list[str]]:
    """The layers contract, lowest first: each a list of module names."""
    config = tomllib.loads((Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    contract = next(c for c in config if c["type"] == "layers")
    return [[m.strip() for m in layer.replace("|", ":").split(":")] for layer in reversed(contract["layers"])]


def layer_of(module: str, table: list[list[str]]) -> int | None:
    for i, names in enumerate(table):
        if any(module == n or module.startswith(n + ".") for n in names):
            return i
    return None


def circles(graph, modules: list[str]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    sys.setrecursionlimit(10000)
    index, low, on, stack, found, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w == "hfkit":
                continue
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
                found.append(sorted(comp))

    for m in modules:
        if m not in index:
            visit(m)
    return found


def longest_functions(n: int = 10) -> list[tuple[int, str]]:
    import hfkit

    package = Path(hfkit.__file__).parent  # the one measured (PYTHONPATH may point at another checkout)
    out = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((node.end_lineno - node.lineno + 1, f"{path.relative_to(package.parent)}:{node.lineno} {node.name}"))
    return sorted(out, reverse=True)[:n]


def main() -> None:
    graph = grimp.build_graph("hfkit", include_external_packages=False)
    modules = sorted(m for m in graph.modules if m != "hfkit")
    table = layers()
    found = circles(graph, modules)
    print(f"import circles: {len(found)}")
    for comp in found:
        print(f"  {len(comp)} files: {', '.join(comp)}")
    up = [(a, b) for a in modules for b in sorted(graph.find_modules_directly_imported_by(a))
          if None not in (layer_of(a, table), layer_of(b, table)) and layer_of(b, table) > layer_of(a, table)]
    print(f"imports from a lower layer up: {len(up)}")
    for a, b in up:
        print(f"  {a} -> {b}")
    unplaced = [m for m in modules if layer_of(m, table) is None]
    if unplaced:
        print(f"modules in no layer: {', '.join(unplaced)}")
    direct = sorted(graph.find_modules_directly_imported_by("hfkit.run"))
    print(f"hfkit modules run.py imports: {len(direct)} ({', '.join(direct)})")
    reach = graph.find_upstream_modules("hfkit.run")
    print(f"files reachable from hfkit.run: {len(reach)} of {len(modules)}")
    print("10 longest functions (lines):")
    for lines, where in longest_functions():
        print(f"  {lines:4d}  {where}")


if __name__ == "__main__":
    main()
