"""`ncbench report`: comparison tables across losses (and the paper's Figures 1–3 on request)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import typer

from ncbench.cli.app import app
from ncbench.errors import UsageError, plural
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
    select_only: list[str] = typer.Option(None, "--only", help="Only the runs with KEY=V1,V2 "
                                          "(repeatable: AND over keys), e.g. --only loss=ce,mse."),
    include_unfinished: bool = typer.Option(False, "--include-unfinished",
                                            help="Count runs that are not 'done' (running, failed, ...) too."),
    metric: str = typer.Option("test_acc_at_best_val", "--metric",
                               help="results column of the accuracy table (e.g. final_test_acc, "
                                    "final_nc1); accuracies show as percent, any other "
                                    "metric in its own units."),
    reference: str = typer.Option(None, "--reference",
                                  help="Loss the others are compared with, paired by seed "
                                       "\\[default: ce]."),
    margin: float = typer.Option(None, "--margin",
                                 help="Equivalence margin of the verdicts: percentage points "
                                      "for an accuracy --metric \\[default: 0.5], the metric's "
                                      "own units otherwise (e.g. 0.01 for final_nc1; no "
                                      "default: without it, no equivalence test)."),
) -> None:
    """Accuracy per loss over a rows × cols grid (mean ± std over seeds, spread across losses),
    its statistics (95 % CIs, paired differences to --reference, equivalence verdicts,
    Friedman) and final NC metrics; optional figures. Only finished ('done') runs count by
    default."""
    from rich.console import Console

    from ncbench import report as rep
    from ncbench.paths import resolve
    from ncbench.report.blocks import is_percent
    from ncbench.store import check_ncbench_db, sandboxed_connection

    rep.check_format(fmt)
    rep.check_where(where)
    percent = is_percent(metric)
    if margin is None and percent:
        margin = rep.DEFAULT_MARGIN_PP
    if margin is not None and not (math.isfinite(margin) and margin > 0):
        unit = "percentage points" if percent else f"{metric}'s units"
        raise UsageError("--margin", f"must be a positive number ({unit}), not {margin:g}")
    if select_only:
        from ncbench.selection import parse_only, to_where

        picked = to_where(parse_only(select_only))
        where = f"({where}) AND {picked}" if where else picked
    for option, path, check in (("--output", output, _check_output), ("--figures", figures, _check_figures)):
        try:
            check(path)
        except OSError as exc:  # e.g. a name too long for the file system
            raise UsageError(option, f"cannot use {str(path)!r}: {exc.strerror or exc}") from None
    db_path = resolve(config, db).db
    with sandboxed_connection(db_path) as con:  # --where is user SQL: the results tables only
        check_ncbench_db(con, db_path)
        _check_declared(con, config, db, experiments or [])
        stats = dict(reference=reference or rep.DEFAULT_REFERENCE,
                     margin=None if margin is None else margin / 100 if percent else margin)
        result = rep.build_report(con, experiments or None, rows, cols, where,
                                  include_unfinished=include_unfinished, metric=metric, **stats)
        if reference is not None:
            _check_reference(reference, result)
        figs = {}
        if figures is not None:
            from ncbench.report.figures import make_figures

            figs = make_figures(con, experiments or None, rows, cols, where,
                                include_unfinished=include_unfinished)
    # the database is closed again here: rendering must not hold up a running `ncbench run`
    written = []
    if figures is not None:
        from ncbench.report.figures import save_figures

        try:
            written = save_figures(figs, figures)
        except OSError as exc:
            raise UsageError("--figures", f"cannot write figures to {str(figures)!r}: "
                                          f"{exc.strerror or exc}") from None
    if output is not None:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(rep.render(result, fmt))
        except OSError as exc:
            raise UsageError("--output", f"cannot write {str(output)!r}: {exc.strerror or exc}") from None
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


def _check_reference(reference: str, result) -> None:
    """UsageError when `--reference` names a loss that no reported run has."""
    from ncbench.errors import did_you_mean

    losses = sorted({loss for block in result.accuracy for loss in block.losses}, key=str)
    if reference not in losses:
        known = ", ".join(map(str, losses)) or "none"
        raise UsageError("--reference", f"no reported run has the loss '{reference}'"
                                        f"{did_you_mean(reference, map(str, losses))}; "
                                        f"losses: {known}")


def _blocking_file(path: Path) -> Path | None:
    """The nearest existing ancestor folder of `path` when it is no folder (a file), else None."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def _check_output(output: Path | None) -> None:
    """UsageError unless `--output` names a file that can be written (before any work is done)."""
    if output is None:
        return
    if str(output).strip() == "":
        raise UsageError("--output", "empty file name")
    if output.is_dir():
        raise UsageError("--output", f"{str(output)!r} is a directory; give a file name "
                                     "(e.g. report.md)")
    blocker = _blocking_file(output)
    if blocker is not None:
        raise UsageError("--output", f"cannot write {str(output)!r}: {str(blocker)!r} is a file, "
                                     "not a folder")
    target = output if output.exists() else next((p for p in output.parents if p.exists()), Path("."))
    if not os.access(target, os.W_OK):
        raise UsageError("--output", f"cannot write {str(output)!r}: {str(target)!r} is not writable")


def _check_figures(figures: Path | None) -> None:
    """UsageError unless `--figures` names a folder that exists or can be made, writable."""
    if figures is None:
        return
    if str(figures).strip() == "":
        raise UsageError("--figures", "empty folder name")
    if figures.exists() and not figures.is_dir():
        raise UsageError("--figures", f"{str(figures)!r} is a file; --figures takes a folder "
                                      "(the figures are written into it)")
    blocker = _blocking_file(figures)
    if blocker is not None:
        raise UsageError("--figures", f"cannot make the folder {str(figures)!r}: {str(blocker)!r} "
                                      "is a file")
    target = figures if figures.exists() else next((p for p in figures.parents if p.exists()), Path("."))
    if not os.access(target, os.W_OK):
        raise UsageError("--figures", f"cannot write into {str(figures)!r}: {str(target)!r} is "
                                      "not writable")


def _check_declared(con, config: Path | None, db: Path | None, experiments: list[str]) -> None:
    """ReportError for a named experiment that the config declares but the database has no
    runs of yet ("no finished runs: N declared, all queued"), instead of "unknown experiment"."""
    from ncbench.errors import ConfigError, ReportError
    from ncbench.report.query import list_experiments

    stored = set(list_experiments(con))
    missing = [name for name in experiments if name not in stored]
    if not missing:
        return
    from ncbench.config import expand, load_config
    from ncbench.paths import resolve

    try:
        paths = resolve(config, db, need_config=False)
        cfg = load_config(paths.config) if paths.config is not None else None
    except ConfigError:
        return  # no usable config: the report's own "unknown experiment" says what is known
    for name in missing:
        if cfg is not None and name in cfg.experiments:
            n = len(expand(cfg, [name]))
            raise ReportError(f"experiment '{name}' has no finished runs yet: "
                              f"{plural(n, 'run')} declared in {paths.config}, none in "
                              f"{paths.db} (all {n} queued) — `ncbench run {name}` trains them")
