"""``mlops offload STAGE -- CMD...``: the train stage's ``dvc.yaml`` command goes through this."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Annotated, Optional

import typer

from machinery.errors import UserError, exits_cleanly

if TYPE_CHECKING:
    from machinery.slurm.stage import Stage


@exits_cleanly
def offload(
    stage: Annotated[str, typer.Argument(help="the dvc.yaml stage this command runs")],
    cmd: Annotated[list[str], typer.Argument(help="the stage's command, after --")],
    transport: Annotated[
        Optional[str],  # noqa: UP007 - typer reads the annotation at run time
        typer.Option(help="none | local | ssh (default: slurm.yaml, MLOPS_SLURM_TRANSPORT)"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the sbatch script and exit")
    ] = False,
    check: Annotated[
        str,
        typer.Option(
            "--check",
            help="a command that checks the stage's params here, before anything is submitted"
            " (e.g. 'python -m example.train --check'); not run with transport none",
        ),
    ] = "",
    resubmit: Annotated[
        bool,
        typer.Option(
            "--resubmit",
            help="submit a new job even if this identity's job completed "
            "(or MLOPS_SLURM_RESUBMIT=1, e.g. for dvc repro -f)",
        ),
    ] = False,
) -> None:
    """Run a stage's command on Slurm (or here, with transport none) and write
    reports/slurm/STAGE.json."""
    from machinery.slurm.choice import chosen_transport
    from machinery.slurm.stage import read_stage

    root = Path.cwd()
    if cmd and cmd[0] == "--":  # click keeps the separator when interspersed args are off
        cmd = cmd[1:]
    if not cmd:
        raise UserError("no command: mlops offload STAGE -- CMD...")
    if chosen_transport(transport) == "none" and not dry_run:
        # Here, not on a cluster: the full settings are not needed (see machinery.slurm.choice).
        _run_here(read_stage(stage), cmd, root)
        return
    from machinery.slurm.settings import load_settings

    overrides: dict[str, Any] = {"transport": transport} if transport else {}
    if resubmit:
        overrides["resubmit"] = True
    settings = load_settings(**overrides)
    spec = read_stage(stage)
    if dry_run:
        from machinery.slurm.script import Layout, render_job_script

        home = f"/home/{settings.ssh_user or 'USER'}"
        workdir = (
            home + settings.workdir[1:] if settings.workdir.startswith("~") else settings.workdir
        )
        layout = Layout(workdir, f"{stage}-<identity>", "dryrun")
        venv = f"{workdir}/venvs/<lock hash>" if settings.env.kind == "venv" else None
        commit = {"MLOPS_CODE_COMMIT": "<commit>"}
        typer.echo(render_job_script(settings, stage, layout, cmd, venv, commit), nl=False)
        return
    if settings.transport == "none":  # only when chosen_transport could not tell
        _run_here(spec, cmd, root)
        return
    from machinery.slurm.offload import Offload

    if check:
        from machinery.slurm.precheck import run_check

        run_check(check, stage, root)
    Offload(settings, spec, cmd, root).run()


def _run_here(spec: Stage, cmd: list[str], root: Path) -> None:
    from machinery.provenance import stage_env
    from machinery.slurm.runlocal import run_here
    from machinery.slurm.stage import expand, identity

    # No job to reattach to here, so the identity covers what DVC re-runs the stage for (its
    # deps, params and command), not the whole code snapshot a cluster job receives: the record
    # is a DVC output, and an unrelated code change must not alter its bytes.
    files = expand(root, spec.deps)
    run_here(spec.name, cmd, root, identity(root, spec, cmd, files), stage_env(spec.name, root))
    # As a cluster job's stage-out does: a command that exits 0 without its declared outs is a
    # failure named here, not a COMPLETED left for DVC to trip over.
    missing = [out for out in spec.outs if not (root / out).exists()]
    if missing:
        raise UserError(f"stage {spec.name} ran here, but did not produce {', '.join(missing)}")
