"""Which ``dvc.yaml`` stages a sweep runs for each point, and the command each one runs.

``mlops sweep train`` runs ``train`` and the stages after it down to the ones that write
metrics (``evaluate``), so every point has metrics; stages that only render (``report``) are
left out.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from machinery.errors import UserError
from machinery.files import load_yaml
from machinery.slurm.stage import DVC_YAML, Stage, read_stage


@dataclass(frozen=True)
class SweepStage:
    stage: Stage
    cmd: str  # the shell command a task runs (an ``mlops offload`` wrapper taken off)
    metrics: list[str]
    original: str  # as dvc.yaml has it (run here, an ``mlops offload`` runs with transport none)


def _metrics(spec: dict[str, Any]) -> list[str]:
    out = []
    for entry in spec.get("metrics") or []:
        out.append(entry if isinstance(entry, str) else str(next(iter(entry))))
    return out


def unwrap(cmd: str) -> str:
    """``mlops offload [opts] STAGE -- CMD`` → ``CMD``: the array task is the cluster job."""
    words = shlex.split(cmd)
    if len(words) > 2 and words[0] == "mlops" and words[1] == "offload" and "--" in words:
        return shlex.join(words[words.index("--") + 1 :])
    return cmd


def sweep_stages(names: list[str], root: Path) -> list[SweepStage]:
    """The named stages, then every stage downstream of them that leads to metrics, in
    ``dvc.yaml`` order."""
    dvc_yaml = root / DVC_YAML
    if not dvc_yaml.is_file():
        raise UserError(f"{DVC_YAML}: not found (run mlops sweep in the project's root)")
    raw = load_yaml(dvc_yaml).get("stages") or {}
    specs = {name: read_stage(name, dvc_yaml) for name in raw}
    for name in names:
        if name not in specs:
            raise UserError(f"{DVC_YAML}: no stage '{name}' (stages: {', '.join(specs)})")

    def feeds(a: Stage, b: Stage) -> bool:
        return any(Path(d) == Path(o) or Path(d) in Path(o).parents for d in b.deps for o in a.outs)

    chosen = set(names)
    changed = True
    while changed:  # everything downstream of the named stages
        changed = False
        for name, spec in specs.items():
            if name not in chosen and any(feeds(specs[c], spec) for c in chosen):
                chosen.add(name)
                changed = True
    writes_metrics = {n for n in chosen if _metrics(raw[n] or {})}
    keep = set(names) | writes_metrics
    changed = True
    while changed:  # ...but only those on a path to metrics
        changed = False
        for name in chosen - keep:
            if any(feeds(specs[name], specs[k]) for k in keep):
                keep.add(name)
                changed = True
    for name in names:
        if "foreach" in (raw[name] or {}) or "cmd" not in (raw[name] or {}):
            raise UserError(f"{DVC_YAML}: stage '{name}' has no single cmd to sweep")
    return [
        SweepStage(specs[n], unwrap(str(raw[n]["cmd"])), _metrics(raw[n] or {}), str(raw[n]["cmd"]))
        for n in specs
        if n in keep
    ]


def shared_deps(stages: list[SweepStage]) -> list[str]:
    """Deps every point reads as they are (not made by one of the sweep's own stages)."""
    made = [Path(o) for s in stages for o in s.stage.outs]
    deps = []
    for s in stages:
        for dep in s.stage.deps:
            p = Path(dep)
            if not any(p == m or m in p.parents for m in made) and dep not in deps:
                deps.append(dep)
    return deps
