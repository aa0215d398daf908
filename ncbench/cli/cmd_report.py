"""`ncbench report`: comparison tables across losses (and the paper's Figures 1–3 on request)."""

from __future__ import annotations

from pathlib import Path

import typer

from ncbench.cli.app import app
from ncbench.paths import DEFAULT_CONFIG


@app.command()
def report(
    experiments: list[str] = typer.Argument(None, help="Experiments to report (default: all in the database)."),
    config: Path = typer.Option(None, "--config", "-c",
                                help=f"Config file; the default database sits beside it "
                                     f"\\[default: {DEFAULT_CONFIG}]."),
    db: Path = typer.Option(None, "--db", help="Results database (default: ncbench.duckdb beside --config)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | md | csv | latex | json."),
    output: Path = typer.Option(None, "--output", "-o", help="Write the tables to FILE instead of stdout."),
    figures: Path = typer.Option(None, "--figures", help="Also write Fig. 1–3 (PNG + PDF) of each experiment to DIR."),
    rows: str = typer.Option("width", "--rows", help="Swept key for the table rows."),
    cols: str = typer.Option("epochs", "--cols", help="Swept key for the table columns."),
    where: str = typer.Option(None, "--where", help="SQL predicate over run columns and experiments.toml keys, e.g. \"width >= 1 AND loss != 'fl' AND momentum = 0.9\"."),
    include_unfinished: bool = typer.Option(False, "--include-unfinished",
                                            help="Count runs that are not 'done' (running, failed, ...) too."),
    metric: str = typer.Option("test_acc_at_best_val", "--metric",
                               help="results column of the accuracy table (e.g. final_test_acc)."),
) -> None:
    """Accuracy per loss over a rows × cols grid (mean ± std over seeds, spread across losses)
    and final NC metrics; optional figures. Only finished ('done') runs count by default."""
    from rich.console import Console

    from ncbench import report as rep
    from ncbench.paths import resolve
    from ncbench.store import check_ncbench_db, read_connection

    rep.check_format(fmt)
    rep.check_where(where)
    db_path = resolve(config, db).db
    with read_connection(db_path) as con:
        check_ncbench_db(con, db_path)
        result = rep.build_report(con, experiments or None, rows, cols, where,
                                  include_unfinished=include_unfinished)
        if metric != rep.ACCURACY_METRIC:
            result.accuracy = rep.accuracy_table(con, experiments or None, rows, cols, where,
                                                 include_unfinished=include_unfinished, metric=metric)
        figs = {}
        if figures is not None:
            from ncbench.report.figures import make_figures

            figs = make_figures(con, experiments or None, rows, cols, where,
                                include_unfinished=include_unfinished)
    # the database is closed again here: rendering must not hold up a running `ncbench run`
    written = []
    if figures is not None:
        from ncbench.report.figures import save_figures

        written = save_figures(figs, figures)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(rep.render(result, fmt))
        Console(stderr=True).print(f"wrote {output}", highlight=False)
    elif fmt == "table":
        console = Console()
        for table in rep.rich_tables(result):
            console.print(table)
            console.print()
    else:
        typer.echo(rep.render(result, fmt), nl=False)
    if figures is not None:
        Console(stderr=True).print(f"wrote {len(written)} figure files to {figures}", highlight=False)
