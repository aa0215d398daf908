"""`ncbench sql "SELECT …"`: run a read-only query on the results database."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import typer

from ncbench.cli.app import app
from ncbench.errors import plural

FORMATS = ("table", "csv", "json")


@app.command()
def sql(
    query: str = typer.Argument(..., help="A SQL query, e.g. \"SELECT * FROM results\"."),
    db: Path = typer.Option(None, "--db", help="Results database \\[default: ncbench.duckdb beside "
                                               "the config]."),
    config: Path = typer.Option(None, "--config", "-c",
                                help="Experiments file; only locates the default database."),
    fmt: str = typer.Option("table", "--format", "-f", help="Output: table, csv or json."),
) -> None:
    """Query the results database (read-only): tables runs, metrics; views epochs, results.

    The query reads those tables only: no files, URLs, other databases, extensions or settings
    (docs/schema.md, "What queries may do")."""
    from ncbench.errors import UsageError
    from ncbench.paths import resolve
    from ncbench.store import run_sql

    if fmt not in FORMATS:
        raise UsageError("--format", f"unknown format '{fmt}'; use one of {', '.join(FORMATS)}")
    db_path = resolve(config, db).db
    cols, rows = run_sql(db_path, query)
    if not cols:
        return
    if fmt == "json":
        from ncbench.store import to_jsonable

        typer.echo(json.dumps([{c: to_jsonable(v) for c, v in zip(cols, row)} for row in rows],
                              indent=2))
    elif fmt == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(cols)
        for row in rows:
            w.writerow(["" if v is None else v for v in row])
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(show_edge=False, header_style="bold", pad_edge=False)
        for c in cols:
            table.add_column(c, overflow="fold")
        for row in rows:
            table.add_row(*("[dim]NULL[/]" if v is None else _escape(str(v)) for v in row))
        console = Console()
        if not console.is_terminal:  # piped: never fold or truncate
            console = Console(width=max(1000, 40 * len(cols)))
        console.print(table)
        console.print(f"[dim]{plural(len(rows), 'row')}[/]")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
