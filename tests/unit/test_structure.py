"""The package's shape: floors without import circles, modules of one concern and modest size."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
MAX_MODULE_LINES = 620  # "~600": a module past it holds several concerns; split it


def module_graph(src: Path, package: str) -> dict[str, set[str]]:
    """Module → the package's modules it imports, every import statement counted (top-level,
    inside functions and under ``TYPE_CHECKING``)."""
    files = {}
    for path in (src / package).rglob("*.py"):
        name = ".".join(path.relative_to(src).with_suffix("").parts)
        files[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in files.items():
        base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.ImportFrom):
                head = node.module or ""
                if node.level:
                    parts = base[: len(base) - node.level + 1]
                    head = ".".join([*parts, *([node.module] if node.module else [])])
                targets = [head, *(f"{head}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            graph[name].update(t for t in targets if t in files and t != name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same graph between the root package's direct children (``cuneidet.data`` ...)."""

    def top(name: str) -> str:
        return ".".join(name.split(".")[:2])

    packages: dict[str, set[str]] = defaultdict(set)
    for name, targets in graph.items():
        packages[top(name)].update(top(t) for t in targets if top(t) != top(name))
    return packages


def test_the_cycle_finder_finds_a_circle(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "a").mkdir(parents=True)
    (pkg / "b").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a" / "__init__.py").write_text("")
    (pkg / "b" / "__init__.py").write_text("")
    (pkg / "a" / "x.py").write_text("from pkg.b.y import f\n")
    (pkg / "b" / "y.py").write_text("def f():\n    from pkg.a import x  # lazy, still a circle\n")
    (pkg / "b" / "z.py").write_text("from . import y\n")
    graph = module_graph(tmp_path, "pkg")
    assert cycles(graph) == [["pkg.a.x", "pkg.b.y"]]
    assert cycles(package_graph(graph)) == [["pkg.a", "pkg.b"]]


def test_no_module_imports_itself_back_through_others():
    graph = module_graph(SRC, "cuneidet")
    assert len(graph) > 100
    assert cycles(graph) == [], "import circles between modules"


def test_no_package_imports_itself_back_through_others():
    assert cycles(package_graph(module_graph(SRC, "cuneidet"))) == []


def test_import_linter_contracts_are_kept():
    """The floors declared in pyproject.toml ([tool.importlinter])."""
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed (make install adds it)")
    result = subprocess.run(
        [str(lint), "--no-cache"],
        cwd=SRC.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_data_builds_photo_sources_without_importing_the_forge(tmp_path):
    """Kinds of other packages register through the ``cuneidet.photo_sources`` entry point: the
    forge is loaded when asked for, and ``data`` never imports it."""
    (tmp_path / "csdd" / "images").mkdir(parents=True)
    code = (
        "import sys\n"
        "from cuneidet.data.sources import build_photo_source\n"
        f"build_photo_source('folder', {str(tmp_path)!r})\n"
        "assert 'cuneidet.forge' not in sys.modules, 'data imported the forge'\n"
        f"source = build_photo_source('forge', {str(tmp_path)!r})\n"
        "assert type(source).__module__ == 'cuneidet.forge.source', type(source)\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


def test_modules_stay_small():
    sizes = {
        str(path.relative_to(SRC)): len(path.read_text().splitlines())
        for path in (SRC / "cuneidet").rglob("*.py")
    }
    large = {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert not large, f"modules over {MAX_MODULE_LINES} lines: {large}"
