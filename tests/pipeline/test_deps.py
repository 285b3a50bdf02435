"""``dvc.yaml`` lists every module a stage's code imports, so changing one re-runs the stage.

The check reads whatever ``dvc.yaml`` and ``src/`` hold, so it guards a fork's stages too: a
stage ``python -m pkg.mod`` (directly or behind ``mlops offload STAGE --``) must depend on every
file under ``src/`` that ``pkg.mod`` imports, transitively, or on a directory holding it.
"""

from __future__ import annotations

import ast
import json
import shlex
from pathlib import Path

import pytest

from tests.support.workspace import REPO, Workspace

SRC = REPO / "src"
# ``mlops`` sub-commands that are pipeline stages, and the module that implements each.
MLOPS_STAGE_MODULES = {"report": "machinery.report.cli"}


def module_file(name: str, src: Path = SRC) -> Path | None:
    base = src.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(path: Path, src: Path) -> set[str]:
    package = ".".join(path.relative_to(src).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0] + ".__init__"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: -node.level]
                base = ".".join([*parent, base] if base else parent)
            names.add(base)
            # ``from pkg import mod`` may name a submodule.
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _is_trivial(path: Path) -> bool:
    """A package ``__init__`` with only a docstring: importing it runs nothing that matters."""
    body = ast.parse(path.read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def import_closure(module: str, src: Path = SRC) -> set[Path]:
    """Files under ``src`` that importing ``module`` executes (docstring-only packages aside)."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        # Importing a.b.c runs a/__init__, a/b/__init__ and a/b/c.
        for i in range(1, len(parts) + 1):
            path = module_file(".".join(parts[:i]), src)
            if path is None or path in seen:
                continue
            seen.add(path)
            todo.extend(_imported_names(path, src))
    return {p for p in seen if not (p.name == "__init__.py" and _is_trivial(p))}


def stage_module(cmd: str) -> str | None:
    argv = shlex.split(cmd)
    if argv[:2] in (["mlops", "offload"], ["mlops", "measure"]) and "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if len(argv) >= 3 and argv[0] in ("python", "python3") and argv[1] == "-m":
        return argv[2]
    if len(argv) >= 2 and argv[0] == "mlops":
        return MLOPS_STAGE_MODULES.get(argv[1])
    return None


def covered(path: Path, deps: list[str], root: Path = REPO) -> bool:
    rel = path.relative_to(root)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


STAGES = Workspace(REPO).stages()


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_module_the_stage_imports_is_a_dep(stage: str) -> None:
    spec = STAGES[stage]
    module = stage_module(spec["cmd"])
    assert module is not None, f"{stage}: cannot tell which module `{spec['cmd']}` runs"
    assert module_file(module), f"{stage}: {module} is not under src/"
    missing = sorted(
        str(p.relative_to(REPO))
        for p in import_closure(module)
        if not covered(p, spec.get("deps", []))
    )
    assert not missing, f"dvc.yaml stage {stage!r} imports these but does not list them: {missing}"


def test_the_closure_follows_imports_transitively() -> None:
    """The check itself: machinery.modelcard comes in through train's own imports."""
    closure = import_closure("machinery.report.cli")
    assert SRC / "machinery/report/render.py" in closure
    assert SRC / "machinery/slurm/accounting.py" in closure  # render → slurm.accounting
    assert SRC / "machinery/modelcard.py" in closure  # inputs → modelcard


@pytest.mark.slow
def test_changing_any_code_dep_marks_its_stage_changed(workspace: Workspace) -> None:
    """Every src/ file a stage imports, edited (a comment appended), appears in ``dvc status``
    as a changed dep of that stage: the next ``dvc repro`` re-runs it."""
    closures = {}
    for stage, spec in workspace.stages().items():
        module = stage_module(spec["cmd"])
        assert module is not None
        closures[stage] = import_closure(module, workspace.path / "src")
    for path in set().union(*closures.values()):
        path.write_text(path.read_text() + "\n# touched by the test\n")
    status = json.loads(workspace.dvc("status", "--json").stdout)
    for stage, files in closures.items():
        changed = [
            dep
            for entry in status.get(stage, [])
            if isinstance(entry, dict)
            for dep in entry.get("changed deps", {})
        ]
        for path in files:
            rel = str(path.relative_to(workspace.path))
            assert any(
                rel == dep or rel.startswith(dep.rstrip("/") + "/") for dep in changed
            ), f"{rel} changed but stage {stage!r} would not re-run: {status.get(stage)}"
