"""What a stage needs and makes (from ``dvc.yaml``) and the identity of one run of it.

The identity is the stage name plus a hash of its command, deps, params and the code snapshot:
two offloads with the same identity are the same job, so a retried CI job reattaches to it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machinery.errors import UserError
from machinery.files import load_yaml, sha256_file

DVC_YAML = Path("dvc.yaml")
PARAMS_YAML = "params.yaml"
# Written here by the offload itself after the job, so never staged out of the cluster.
REPORT_DIR = Path("reports/slurm")
# Never part of the code snapshot: DVC's own state (config.local holds remote credentials) and
# the lock file DVC rewrites while the pipeline runs (it would change the identity of a retry).
SNAPSHOT_EXCLUDE = (".dvc/", "dvc.lock", "reports/")


@dataclass(frozen=True)
class Stage:
    name: str
    deps: list[str]
    outs: list[str]
    params: dict[str, list[str]] = field(default_factory=dict)  # params file -> keys


def _out_path(entry: Any) -> str:
    if isinstance(entry, str):
        return entry
    if isinstance(entry, dict) and len(entry) == 1:
        return str(next(iter(entry)))
    raise UserError(f"{DVC_YAML}: cannot read the output entry {entry!r}")


def read_stage(name: str, dvc_yaml: Path = DVC_YAML) -> Stage:
    data = load_yaml(dvc_yaml)
    stages = data.get("stages") or {}
    if name not in stages:
        known = ", ".join(sorted(stages)) or "none"
        raise UserError(f"{dvc_yaml}: no stage '{name}' (stages: {known})")
    spec = stages[name] or {}
    outs = [_out_path(e) for kind in ("outs", "metrics", "plots") for e in (spec.get(kind) or [])]
    params: dict[str, list[str]] = {}
    for entry in spec.get("params") or []:
        if isinstance(entry, str):
            params.setdefault(PARAMS_YAML, []).append(entry)
        elif isinstance(entry, dict):
            for file, keys in entry.items():
                params.setdefault(str(file), []).extend(str(k) for k in (keys or []))
    return Stage(
        name=name,
        deps=[str(d) for d in spec.get("deps") or []],
        outs=outs,
        params=params,
    )


def staged_outs(stage: Stage) -> list[str]:
    """The outs the job makes: everything but the offload's own report."""
    return [o for o in stage.outs if not Path(o).is_relative_to(REPORT_DIR)]


def pipeline_outs(dvc_yaml: Path = DVC_YAML) -> list[str]:
    """Every stage's outs: made by the pipeline, so never part of the code snapshot."""
    if not dvc_yaml.is_file():
        return []
    stages = load_yaml(dvc_yaml).get("stages") or {}
    return [o for name in stages for o in read_stage(name, dvc_yaml).outs]


def code_files(root: Path) -> list[str]:
    """The workspace as git sees it: tracked and new files, not ignored ones, as they are now."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        raise UserError(f"{root}: not a git work tree (the code snapshot needs git)") from None
    names = sorted({n for n in out.decode().split("\0") if n})
    made = [Path(o) for o in pipeline_outs(root / DVC_YAML)]
    return [
        n
        for n in names
        if not n.startswith(SNAPSHOT_EXCLUDE)
        and not any(Path(n).is_relative_to(o) for o in made)
        and (root / n).is_file()
        and not (root / n).is_symlink()
    ]


def expand(root: Path, paths: list[str]) -> list[str]:
    """Files under each path (a dep may be a directory), relative to ``root``, sorted."""
    files: set[str] = set()
    for rel in paths:
        path = root / rel
        if path.is_file():
            files.add(rel)
        elif path.is_dir():
            files.update(str(p.relative_to(root)) for p in path.rglob("*") if p.is_file())
        else:
            raise UserError(f"{rel}: dependency missing (run the stages before this one)")
    return sorted(files)


def _param_values(root: Path, stage: Stage) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for file, keys in stage.params.items():
        data = load_yaml(root / file)
        for key in keys:
            node: Any = data
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            values[f"{file}:{key}"] = node
    return values


def identity(
    root: Path, stage: Stage, cmd: list[str], files: list[str], image: str | None = None
) -> str:
    """``<stage>-<16 hex>``: the same command, inputs, params and code (and container image,
    when the job runs in one) give the same id."""
    digest = hashlib.sha256()
    header: dict[str, Any] = {"stage": stage.name, "cmd": cmd, "params": _param_values(root, stage)}
    if image:
        header["image"] = image
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for rel in files:
        digest.update(f"\0{rel}\0{sha256_file(root / rel)}".encode())
    return f"{stage.name}-{digest.hexdigest()[:16]}"
