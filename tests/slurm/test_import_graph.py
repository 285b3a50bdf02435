"""The modules of ``machinery.slurm`` import each other one way only.

``transport`` imported ``SshTransport`` from ``ssh`` (inside ``make_transport``), and ``ssh`` and
``framing`` imported their base types from ``transport``: a circle that only worked because one
import sat in a function. Every import counts here, also one inside a function (it runs
as soon as that function does); imports under ``if TYPE_CHECKING:`` never run and do not.
"""

from __future__ import annotations

import ast
from pathlib import Path

import machinery.slurm

PACKAGE = "machinery.slurm"
ROOT = Path(machinery.slurm.__file__).parent


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, modules: set[str]) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module in modules:
                found.add(node.module)
            # ``from machinery.slurm import remote`` imports the module ``remote``
            found.update(
                f"{node.module}.{a.name}"
                for a in node.names
                if f"{node.module}.{a.name}" in modules
            )
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, set[str]]:
    files = {
        package + "." + ".".join(p.relative_to(root).with_suffix("").parts): p
        for p in root.rglob("*.py")
    }
    files = {name.removesuffix(".__init__"): path for name, path in files.items()}
    modules = set(files)
    graph = {}
    for name, path in files.items():
        # Not the package itself: ``from machinery.slurm import remote`` names it, and its
        # ``__init__`` imports nothing.
        graph[name] = _imports(ast.parse(path.read_text(), str(path)), modules) - {name, package}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (as a path that returns to its start), or None."""
    done: set[str] = set()

    def walk(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node) :] + [node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            cycle = walk(nxt, path + [node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = walk(start, [])
        if cycle:
            return cycle
    return None


def test_the_slurm_modules_import_each_other_one_way_only() -> None:
    graph = import_graph()
    assert "machinery.slurm.ssh" in graph and "machinery.slurm.transport" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_check_sees_a_circle_made_by_an_import_inside_a_function(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nfrom pkg import a\nif TYPE_CHECKING:\n    import pkg.c\n"
    )
    (pkg / "c.py").write_text("import pkg.b\n")
    graph = import_graph(pkg, "pkg")
    assert graph["pkg.c"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"}  # TYPE_CHECKING: no edge
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]
