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
#: Rows a table shows unless --limit says otherwise (a terminal is no place for a million).
TABLE_ROWS = 1000


@app.command()
def sql(
    query: str = typer.Argument(..., help="A SQL query, e.g. \"SELECT * FROM results\"."),
    db: Path = typer.Option(None, "--db", help="Results database \\[default: ncbench.duckdb beside "
                                               "the config]."),
    config: Path = typer.Option(None, "--config", "-c",
                                help="Experiments file; only locates the default database."),
    fmt: str = typer.Option("table", "--format", "-f", help="Output: table, csv or json."),
    limit: int = typer.Option(None, "--limit", min=0, help="Show at most N rows \\[default: "
                              f"{TABLE_ROWS} for a table, all for csv/json; 0: all]."),
    timeout: float = typer.Option(60.0, "--timeout", min=0,
                                  help="Stop the query after SECONDS (0: no limit)."),
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
    shown = limit if limit is not None else (TABLE_ROWS if fmt == "table" else 0)
    cols, rows = run_sql(db_path, query, max_rows=shown + 1 if shown else None,
                         query_timeout_s=timeout or None)
    more = bool(shown) and len(rows) > shown
    rows = rows[:shown] if more else rows
    if not cols:
        return
    if more:  # on stderr: csv/json on stdout stay clean
        typer.echo(f"only the first {plural(shown, 'row')} shown; more match (--limit N, or "
                   "--limit 0 for all)", err=True)
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
        console.print(f"[dim]{plural(len(rows), 'row')}{' (more not shown)' if more else ''}[/]")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
