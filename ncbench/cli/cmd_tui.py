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
    from ncbench.config import DEFAULT_CONFIG, default_db_path, default_workdir, load_config, select
    from ncbench.errors import StoreError
    from ncbench.store import shown_experiments

    config_path: Path | None = Path(config) if config is not None else Path(DEFAULT_CONFIG)
    names = list(experiments or [])
    if config is not None or config_path.exists():
        cfg = load_config(config_path)  # ConfigError: file, experiment, key, reason
        if names:
            names = select(cfg, names)
        else:  # as `ncbench status`: the default experiment(s) and those with stored runs
            names = shown_experiments(cfg, db if db is not None else default_db_path(config_path))
    else:
        config_path = None
    if db is None:
        if config_path is None:
            raise StoreError(f"no {DEFAULT_CONFIG} here and no --db given: pass --config FILE "
                             "or --db PATH")
        db = default_db_path(config_path)
    elif config_path is None and not Path(db).exists():
        raise StoreError(f"no results yet: {db} does not exist (and no experiments file to show)")
    if workdir is None:
        workdir = default_workdir(config_path) if config_path else Path(db).parent / ".ncbench"
    return config_path, Path(db), Path(workdir), names


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
) -> None:
    """Live terminal UI: every run with progress and latest NC1 / accuracy, per-run charts,
    loss comparison (the tables of `ncbench report`), queue control. Press ? for keys.

    Reads the database read-only (safe while `ncbench run` writes in another terminal)."""
    from ncbench.errors import ConfigError

    config_path, db_path, work, names = resolve_paths(config, db, workdir, experiments)
    if run and config_path is None:
        raise ConfigError(None, "--run needs an experiments file (--config FILE)")
    from ncbench.tui import run_tui

    run_args: list[str] = []
    for flag, value in (("--workers", workers), ("--gpus", gpus), ("--executor", executor)):
        if value is not None:
            run_args += [flag, str(value)]
    # Shown: the named experiments, else the default ones and those with stored runs; the queue
    # runs the named ones, else the config's default (as `ncbench run` does).
    code = run_tui(db_path, config_path=config_path, experiments=names, workdir=work,
                   start_queue=run, poll_interval=interval, run_args=run_args,
                   queue_experiments=names if experiments else [])
    if code == 130:
        typer.echo("the queue was stopped; its running runs are interrupted and resume on the "
                   "next `ncbench run` (or `ncbench tui --run`)", err=True)
    elif code not in (None, 0):
        typer.echo(f"the queue exited with code {code}", err=True)
