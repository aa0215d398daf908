"""`ncbench doctor`: check the results database against the run directories; `--rebuild` it."""

from __future__ import annotations

from pathlib import Path

import typer

from ncbench.cli.app import app
from ncbench.errors import plural


@app.command()
def doctor(
    config: Path = typer.Option(None, "--config", "-c",
                                help="Experiments file (only places the database and workdir) "
                                     "\\[default: experiments.toml]."),
    db: Path = typer.Option(None, "--db", help="Results database \\[default: ncbench.duckdb beside "
                                               "the config]."),
    workdir: Path = typer.Option(None, "--workdir", help="Run directories \\[default: .ncbench "
                                                         "beside the config]."),
    rebuild: bool = typer.Option(False, "--rebuild", help="Rebuild the database from every run "
                                 "directory (the old file is kept as <db>.corrupt-<time>)."),
) -> None:
    """Check the results database against the run directories: a damaged or foreign file,
    missing tables, runs missing on either side, statuses that differ.

    Exit code 0 when nothing is wrong (or after --rebuild), 1 when problems were found."""
    from rich.console import Console
    from rich.markup import escape

    from ncbench.paths import resolve
    from ncbench.rebuild import diagnose
    from ncbench.rebuild import rebuild as rebuild_db

    console = Console(soft_wrap=True, highlight=False)
    paths = resolve(config, db, workdir, need_config=False)
    if rebuild:
        rep = rebuild_db(paths.db, paths.workdir)
        console.print(f"rebuilt {escape(str(paths.db))} from the run directories of "
                      f"{escape(str(paths.workdir))}: {plural(len(rep.restored), 'run')} restored, "
                      f"{len(rep.skipped)} skipped, {len(rep.carried)} carried over from the old "
                      f"database (runs without a run directory)")
        for rid, status in rep.restored.items():
            console.print(f"  restored {rid}: {status}")
        for name, why in rep.skipped.items():
            console.print(f"  [yellow]skipped[/] {escape(name)}: {escape(why)}")
        for rid in rep.carried:
            console.print(f"  carried over {rid} (no run directory)")
        for text in rep.warnings:
            console.print(f"  [yellow]warning:[/] {escape(text)}")
        if rep.kept_as is not None:
            console.print(f"the old file is kept as {escape(str(rep.kept_as))}")
        return
    diag = diagnose(paths.db, paths.workdir)
    state = ("not readable" if diag.unreadable else "ok" if diag.exists else "does not exist")
    console.print(f"database {escape(str(paths.db))}: {state}; {diag.dirs} run directories in "
                  f"{escape(str(paths.workdir))}")
    problems = diag.problems
    for text in problems:
        console.print(f"  [yellow]problem:[/] {escape(text)}")
    if not problems:
        console.print("no problems found")
        return
    console.print(f"{plural(len(problems), 'problem')}: `ncbench doctor "
                  f"--rebuild` rebuilds the database from the run directories (`ncbench sync` "
                  f"adds what is missing without a rebuild, if the file is readable)")
    raise typer.Exit(1)
