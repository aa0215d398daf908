"""`ncbench sync`: write the run directories' and Slurm jobs' latest state into the database."""

from __future__ import annotations

from pathlib import Path

import typer

from ncbench.cli.app import app
from ncbench.paths import DEFAULT_CONFIG


@app.command()
def sync(
    config: Path = typer.Option(None, "--config", "-c",
                                help=f"Experiments file; only locates the default database and "
                                     f"workdir \\[default: {DEFAULT_CONFIG}]."),
    db: Path = typer.Option(None, "--db", help="Results database \\[default: ncbench.duckdb beside "
                                               "the config]."),
    workdir: Path = typer.Option(None, "--workdir", help="Run directories (events, checkpoints) "
                                                         "\\[default: .ncbench beside the config]."),
) -> None:
    """Write the latest state of the run directories and Slurm jobs into the database.

    Ingests every run directory of the workdir (events, heartbeats), then asks Slurm about the
    runs submitted with `--executor slurm` that the database still shows queued or running —
    how a detached grid's results get in without a manager. Writes the database (`ncbench
    status` only reads it); safe while `ncbench run` is working."""
    from ncbench.grid import sync_workdir
    from ncbench.paths import check_run_paths, resolve

    paths = resolve(config, db, workdir)  # as `ncbench run` places them
    check_run_paths(paths, given={"--config": config is not None, "--db": db is not None,
                                  "--workdir": workdir is not None})
    report = sync_workdir(paths.db, paths.workdir)
    if not report.runs_seen and not report.changed:
        typer.echo(f"nothing to sync: no run directories in {paths.workdir}")
        return
    runs = f"{report.runs_seen} run director{'y' if report.runs_seen == 1 else 'ies'}"
    typer.echo(f"synced {runs} of {paths.workdir} into {paths.db}: "
               f"{report.metrics_written} metric row(s) written"
               + (f", {report.slurm_runs} Slurm job(s) asked" if report.slurm_runs else ""))
    for run_id, (before, after) in report.changed.items():
        typer.echo(f"  {run_id}  {before or 'not stored'} → {after}")
    if not report.changed:
        typer.echo("no run changed status")
