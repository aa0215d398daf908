"""`ncbench rm`: delete runs whole (rows, metrics, events, checkpoints), by id or by selection."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ncbench.cli.app import app
from ncbench.paths import DEFAULT_CONFIG


def _stored(db_path: Path) -> dict[str, dict]:
    from ncbench.store import query_dicts, read_connection

    if not db_path.exists():
        return {}
    with read_connection(db_path) as con:
        return {r["run_id"]: r for r in query_dicts(
            con, "SELECT run_id, experiment, dataset, model, loss, width, epochs, seed, status "
                 "FROM runs ORDER BY run_id")}


class _Run:
    """A run to delete: its id, label and status (stored row or config's spec)."""

    def __init__(self, run_id: str, label: str, status: str):
        self.run_id, self.label, self.status = run_id, label, status


@app.command()
def rm(
    targets: list[str] = typer.Argument(None, help="Run ids, or experiment names with --only."),
    only: list[str] = typer.Option(None, "--only", help="The runs of the named experiments "
                                   "(default: the config's default) with KEY=V1,V2 "
                                   "(repeatable: AND over keys)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Delete without asking."),
    config: Path = typer.Option(None, "--config", "-c",
                                help=f"Experiments file \\[default: {DEFAULT_CONFIG}]."),
    db: Path = typer.Option(None, "--db", help="Results database \\[default: ncbench.duckdb beside "
                                               "the config]."),
    workdir: Path = typer.Option(None, "--workdir", help="Run directories \\[default: .ncbench "
                                                         "beside the config]."),
) -> None:
    """Delete runs whole: their database rows and metrics, events and checkpoints.

    `ncbench rm RUN_ID...` or `ncbench rm EXPERIMENT --only loss=mse`. Shows what will be
    deleted and asks first (`--yes` skips the question; needed when not at a terminal).
    Refuses while `ncbench run` works in the workdir."""
    from rich.console import Console
    from rich.markup import escape

    from ncbench.errors import UsageError, plural
    from ncbench.grid import delete_runs, lock_workdir
    from ncbench.paths import resolve
    from ncbench.rundir import run_dir_of, run_dirs
    from ncbench.store import Store

    targets = list(targets or [])
    paths = resolve(config, db, workdir, need_config=bool(only))
    stored = _stored(paths.db)
    runs: list[_Run] = []
    if only:
        from ncbench.config import expand, load_config, select
        from ncbench.selection import parse_only, select_specs

        cfg = load_config(paths.config)
        specs = select_specs(expand(cfg, select(cfg, targets or cfg.default)), parse_only(only))
        for s in specs:
            if s.run_id in stored or run_dir_of(paths.workdir, s.run_id).is_dir():
                runs.append(_Run(s.run_id, s.label, stored.get(s.run_id, {}).get("status", "?")))
    else:
        if not targets:
            raise UsageError("RUN_ID", "name the runs to delete (`ncbench rm RUN_ID...`) or select "
                             "them (`ncbench rm EXPERIMENT --only KEY=VALUE`)")
        on_disk = {d.name for d in run_dirs(paths.workdir)} if paths.workdir.is_dir() else set()
        for rid in dict.fromkeys(targets):
            if rid not in stored and rid not in on_disk:
                hint = (f" (to delete runs of experiment '{rid}': ncbench rm {rid} --only KEY=VALUE)"
                        if paths.config is not None and paths.config.exists()
                        and f"[experiments.{rid}]" in paths.config.read_text(errors="replace") else "")
                raise UsageError("RUN_ID", f"no run '{rid}' in {paths.db} or {paths.workdir}{hint}")
            r = stored.get(rid)
            label = (f"{r['experiment']}/{r['dataset']}/{r['model']}/{r['loss']}/w{r['width']:g}/"
                     f"e{r['epochs']}/s{r['seed']}") if r else "(run directory only)"
            runs.append(_Run(rid, label, r["status"] if r else "?"))
    console = Console(soft_wrap=True)
    if not runs:
        console.print("nothing to delete: no stored run matches", highlight=False)
        return
    for r in runs:
        console.print(f"{r.run_id}  {escape(r.label):<48} {r.status}", highlight=False)
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("--yes", f"would delete {plural(len(runs), 'run')}; not at a terminal, "
                             "so nothing was deleted: pass --yes to confirm")
        if not typer.confirm(f"Delete {plural(len(runs), 'run')} (rows, events, checkpoints)?"):
            console.print("nothing deleted", highlight=False)
            raise typer.Exit(1)
    lock = lock_workdir(paths.workdir)  # WorkdirBusyError while `ncbench run` works there
    try:
        delete_runs(Store(paths.db), paths.workdir, runs, register_again=False)
    finally:
        lock.close()
    console.print(f"deleted {plural(len(runs), 'run')}", highlight=False)
