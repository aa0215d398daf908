"""`ncbench tui`: the live terminal UI (runs, run detail, compare; start/stop the queue)."""

from __future__ import annotations

from pathlib import Path

import typer

from ncbench.cli.app import app


def resolve_paths(config: Path | None, db: Path | None, workdir: Path | None,
                  experiments: list[str] | None) -> tuple[Path | None, Path, Path, list[str]]:
    """(config or None, db, workdir, experiments) for the TUI; the config is validated like
    `ncbench run` validates it. Without --config, ./experiments.toml is used when it exists,
    else the database alone is shown (then it must exist)."""
    from ncbench.config import load_config, select
    from ncbench.errors import StoreError
    from ncbench.listing import shown_experiments
    from ncbench.paths import resolve

    paths = resolve(config, db, workdir, need_config=False)  # no config: the database alone
    names = list(experiments or [])
    if paths.config is not None:
        cfg = load_config(paths.config)  # ConfigError: file, experiment, key, reason
        if names:
            names = select(cfg, names)
        else:  # as `ncbench status`: the default experiment(s) and those with stored runs
            names = shown_experiments(cfg, paths.db)
    elif not paths.db.exists():
        raise StoreError(f"no results yet: {paths.db} does not exist (and no experiments file "
                         "to show)")
    if paths.db.exists():  # damaged or not ncbench's: one clear message, not a TUI that cannot read
        from ncbench.store import read_connection

        with read_connection(paths.db):
            pass
    return paths.config, paths.db, paths.workdir, names


@app.command()
def tui(
    experiments: list[str] = typer.Argument(None, help="Only these experiments (default: the config's default and every experiment with stored runs)."),
    config: Path = typer.Option(None, "--config", "-c",
                                help="Experiments file \\[default: experiments.toml]."),
    db: Path = typer.Option(None, "--db", help="Results database \\[default: ncbench.duckdb beside "
                                               "the config]."),
    workdir: Path = typer.Option(None, "--workdir",
                                 help="Run directories \\[default: .ncbench/ beside the config]."),
    run: bool = typer.Option(False, "--run", help="Also start the queue (`ncbench run` for these "
                                                  "experiments) from the TUI; quitting stops it."),
    interval: float = typer.Option(1.0, "--interval", min=0.2, help="Seconds between database "
                                                                     "polls."),
    workers: int = typer.Option(None, "--workers", "-w", help="For the queue: CPU-only runs at "
                                                               "a time (as ncbench run)."),
    gpus: str = typer.Option(None, "--gpus", help="For the queue: GPU indices, e.g. 0,1 (as "
                                                  "ncbench run)."),
    executor: str = typer.Option(None, "--executor", "-e", help="For the queue: local | slurm."),
    select_only: list[str] = typer.Option(None, "--only", help="Only the runs with KEY=V1,V2, "
                                          "shown and queued (as ncbench status / run)."),
) -> None:
    """Live terminal UI: every run with progress and latest NC1 / accuracy, per-run charts,
    loss comparison (the tables of `ncbench report`), queue control. Press ? for keys.

    Reads the database read-only (safe while `ncbench run` writes in another terminal)."""
    from ncbench.errors import UsageError
    from ncbench.selection import parse_only

    selection = parse_only(select_only)  # a bad --only is an error now, not in the queue later
    config_path, db_path, work, names = resolve_paths(config, db, workdir, experiments)
    if run and config_path is None:
        raise UsageError("--run", "needs an experiments file (--config FILE)")
    from ncbench.tui import run_tui

    run_args: list[str] = []
    for flag, value in (("--workers", workers), ("--gpus", gpus), ("--executor", executor)):
        if value is not None:
            run_args += [flag, str(value)]
    for item in select_only or []:
        run_args += ["--only", item]
    # Shown (as `ncbench status` lists them): the runs of the named experiments, else those the
    # config declares in its default experiments and those with stored runs, plus every stored
    # run; the queue runs the named ones, else the config's default (as `ncbench run` does).
    code = run_tui(db_path, config_path=config_path, experiments=names, workdir=work,
                   start_queue=run, poll_interval=interval, run_args=run_args,
                   queue_experiments=names if experiments else [], all_stored=not experiments,
                   selection=selection)
    if code == 130:
        typer.echo("the queue was stopped; its running runs are interrupted and resume on the "
                   "next `ncbench run` (or `ncbench tui --run`)", err=True)
    elif code not in (None, 0):
        typer.echo(f"the queue exited with code {code}", err=True)
