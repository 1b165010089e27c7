"""The structure rules of docs/architecture.md, checked on the source (ast, nothing imported).

- no import cycles among the modules of `server`, `tiling` and `plugins` (imports inside functions
  count: a lazy import hides a cycle, it does not remove it);
- `tiling` is pure: it imports nothing of ours outside itself;
- `server.models` knows neither the pipelines nor the wire protocol;
- one `Rect` class for server and tiling;
- no source file over 400 lines outside tests.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("server", "tiling", "plugins")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _resolve(module: str, is_pkg: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_pkg, node.level, node.module)
                if node.level and node.module and base not in mods:
                    continue  # `from ._geometry import …`: a file only a built plugin has (vendored copy)
                # `from pkg import sub` depends on the submodule when it is one, else on pkg itself.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for target in targets:
                while target and target not in mods:  # `import a.b.c` → the deepest module we have
                    target = target.rpartition(".")[0]
                if target and target != mod:
                    graph[mod].add(target)
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
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_tiling_is_pure() -> None:
    graph = import_graph()
    bad = {
        m: sorted(t for t in deps if not t.startswith("tiling")) for m, deps in graph.items() if m.startswith("tiling")
    }
    assert {m: d for m, d in bad.items() if d} == {}


def test_models_know_neither_pipelines_nor_protocol() -> None:
    graph = import_graph()
    bad = {
        m: sorted(t for t in deps if t.startswith(("server.pipelines", "server.protocol", "server.jobs")))
        for m, deps in graph.items()
        if m.startswith("server.models")
    }
    assert {m: d for m, d in bad.items() if d} == {}


def test_one_rect() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for pkg in ("server", "tiling")
        for path in (ROOT / pkg).rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and node.name == "Rect"
    ]
    assert [f.split(":")[0] for f in found] == ["tiling/geometry.py"], found


def test_files_fit_one_sitting() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for pkg in (*PACKAGES, "bench")
        for p in (ROOT / pkg).rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}
