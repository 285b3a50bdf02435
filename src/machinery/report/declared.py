"""The metrics and plot files ``dvc.yaml`` declares: the only ones the report reads.

A file under ``eval/plots/`` that no stage declares any more (a forker's old ``per_class.json``
after their evaluate stopped writing it) is a leftover: the report never shows it, and the
report stage depends on the declared files only, so ``dvc.lock`` never hashes it either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from machinery.errors import UserError

DVC_YAML = Path("dvc.yaml")


@dataclass(frozen=True)
class PlotFile:
    """One plot data file in a ``dvc plots`` format, with the properties dvc.yaml gives it."""

    path: Path
    props: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return str(self.props.get("title") or self.path.stem.replace("_", " "))


@dataclass(frozen=True)
class Declared:
    metrics: list[Path] = field(default_factory=list)
    plots: list[PlotFile] = field(default_factory=list)

    def plot(self, name: str) -> PlotFile | None:
        """The declared plot file called ``name`` (e.g. ``per_class.json``), if any."""
        return next((p for p in self.plots if p.path.name == name), None)

    def files(self) -> list[Path]:
        """Every declared metrics and plot data file: what the report stage depends on."""
        return [*self.metrics, *(p.path for p in self.plots)]


def _entries(items: Any) -> list[tuple[Path, dict[str, Any]]]:
    """A ``metrics:``/``plots:`` list as (path, props): a string or a one-key mapping each."""
    out: list[tuple[Path, dict[str, Any]]] = []
    for item in items or []:
        if isinstance(item, str):
            out.append((Path(item), {}))
        elif isinstance(item, dict) and len(item) == 1:
            path, props = next(iter(item.items()))
            out.append((Path(str(path)), props if isinstance(props, dict) else {}))
    return out


def declared(dvc_yaml: Path = DVC_YAML) -> Declared:
    """Metrics and plot *data files* of every stage and of the top level (a directory of
    pictures such as ``eval/plots/images`` is not a data file: the report shows its PNGs)."""
    if not dvc_yaml.is_file():
        return Declared()
    try:
        data = yaml.safe_load(dvc_yaml.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UserError(f"{dvc_yaml}: not valid YAML{where}") from None
    sections = [s for s in (data.get("stages") or {}).values() if isinstance(s, dict)]
    sections.append(data)
    metrics: dict[Path, None] = {}
    plots: dict[Path, dict[str, Any]] = {}
    for section in sections:
        for path, _ in _entries(section.get("metrics")):
            metrics.setdefault(path)
        for path, props in _entries(section.get("plots")):
            if path.suffix.lower() in (".json", ".csv", ".tsv", ".yaml", ".yml"):
                plots.setdefault(path, props)
    return Declared(list(metrics), [PlotFile(p, props) for p, props in plots.items()])
