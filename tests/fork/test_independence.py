"""The template never depends on the example: no file of the template's code or of its test
areas imports ``example``, trains it through ``tests.support.models``, names ``src/example`` or
reads the repository's ``params.yaml``.

This is the cheap half of the fork guard: it covers the tests the fork test does not re-run
(registry, service, slurm, CI, k8s, bench), whose models come from ``tests/support/fixture_models``.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support.workspace import REPO

# The template's test areas, named: whatever else is under tests/ belongs to the fork (the
# example's tests wherever a fork keeps them: tests/example/, renamed, or not written yet; and
# tests of its own), so a fork that moves its tests stays green. tests/fork/ holds the wine
# example on purpose. A new template test area is added here.
TEMPLATE_TESTS = [
    "tests/ci",
    "tests/comment",
    "tests/doctor",
    "tests/export",
    "tests/hooks",
    "tests/image",
    "tests/k8s",
    "tests/monitoring",
    "tests/pipeline",
    "tests/registry",
    "tests/retrain",
    "tests/service",
    "tests/slurm",
    "tests/support",
    "tests/sweep",
]
SCANNED = ["src/machinery", "service", "bench", *TEMPLATE_TESTS]
# Still reading the example while their owners move them to fixture models. The last test
# fails once an entry no longer needs to be here, so the list only shrinks.
PENDING: set[str] = set()


def violations(path: Path) -> list[str]:
    found = []
    tree = ast.parse(path.read_text(), str(path))
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        for name in names:
            if name.split(".")[0] == "example" or name == "tests.support.models":
                found.append(f"line {node.lineno}: imports {name}")
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if "src/example" in node.value and id(node) not in docstrings:
                found.append(f"line {node.lineno}: names src/example")
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Div)
            and isinstance(node.left, ast.Name)
            and node.left.id == "REPO"
            and isinstance(node.right, ast.Constant)
            and node.right.value == "params.yaml"
        ):
            found.append(f"line {node.lineno}: reads the repository's params.yaml")
    return found


def scanned_files() -> list[Path]:
    top = sorted((REPO / "tests").glob("*.py"))  # the suite's conftest and smoke tests
    return top + [p for d in SCANNED for p in sorted((REPO / d).rglob("*.py"))]


def test_nothing_outside_the_example_tests_depends_on_the_example() -> None:
    bad = {
        rel: v
        for p in scanned_files()
        if (rel := str(p.relative_to(REPO))) not in PENDING and (v := violations(p))
    }
    assert not bad, f"these depend on src/example (use tests/support/fixture_models): {bad}"


def test_the_pending_list_only_holds_files_that_still_need_it() -> None:
    stale = sorted(
        rel for rel in PENDING if not (REPO / rel).is_file() or not violations(REPO / rel)
    )
    assert not stale, f"remove from PENDING (migrated or deleted): {stale}"


def test_the_scan_sees_each_kind_of_dependency(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import example.train\nfrom example import data\nfrom tests.support.models import x\n"
        "p = 'src/example/train.py'\nq = REPO / 'params.yaml'\n"
    )
    assert len(violations(sample)) == 5
