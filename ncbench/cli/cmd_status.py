"""`ncbench status`: the runs of experiments.toml and the database, by status (read-only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from ncbench.cli.app import app
from ncbench.lifecycle import DONE, RUN_STATUSES, RUNNING, STALE_AFTER_S, STATUS_STYLE

if TYPE_CHECKING:
    from datetime import datetime

    from ncbench.listing import RunRow

def _style(status: str) -> str:
    """The rich style of a status (lifecycle.STATUS_STYLE; none for an unknown one)."""
    look = STATUS_STYLE.get(status)
    return look.style if look else ""


def _age(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = max(0.0, seconds)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s / 60:.0f}m"
    if s < 86400:
        return f"{s / 3600:.1f}h"
    return f"{s / 86400:.1f}d"


def _num(value, fmt: str) -> str:
    if value is None:
        return ""
    if value != value:  # NaN
        return "nan"
    return format(value, fmt)


def _pct(value) -> str:
    """A fraction as percent with one decimal ("85.0%"); "" when missing, "nan" for NaN."""
    if value is None:
        return ""
    return "nan" if value != value else f"{100 * value:.1f}%"


def load_status(config: Path | None, db: Path | None, experiments: list[str] | None,
                statuses: list[str] | None = None, *, hidden: dict[str, int] | None = None,
                select_only: list[str] | None = None) -> list[RunRow]:
    """The rows `ncbench status` shows (`ncbench.listing.list_runs` over the config's runs).

    `config` None means ./experiments.toml, which may then be absent if `db` is given (the
    database alone is shown). The config is validated like `ncbench run` validates it. Without
    `experiments`, the config's experiments that have nothing stored and are not its `default`
    (e.g. the GPU grids of the shipped file, on a laptop) are left out; their names and run
    counts go into `hidden` when a dict is passed. `select_only`: `--only KEY=V1,V2`
    (`ncbench.selection`)."""
    from ncbench.config import expand, load_config, select
    from ncbench.listing import list_runs, shown_experiments
    from ncbench.paths import resolve

    specs = []
    paths = resolve(config, db, need_config=False)  # no config: the database alone
    db_path = paths.db
    if paths.config is not None:
        cfg = load_config(paths.config)
        names = select(cfg, experiments)
        if not experiments:
            shown = shown_experiments(cfg, db_path)
            for name in names:
                if name not in shown and hidden is not None:
                    hidden[name] = len(expand(cfg, [name]))
            names = shown
        specs = expand(cfg, names) if names else []
        experiments = names if experiments else None
    # --db given: the file must exist (a typo is an error, not a listing of queued runs).
    rows = list_runs(specs, db_path, experiments, include_unlisted=True, missing_ok=db is None)
    if statuses:
        rows = [r for r in rows if r.status in statuses]
    if select_only:
        from ncbench.selection import keep_row, parse_only, select_specs

        sel = parse_only(select_only)
        wanted = {s.run_id for s in select_specs(specs, sel)}
        declared = {s.run_id for s in specs}
        rows = [r for r in rows if keep_row(r, sel, declared, wanted)]
    return rows


@app.command()
def status(
    experiments: list[str] = typer.Argument(None, help="Only these experiments (default: the config's default and every experiment with stored runs)."),
    config: Path = typer.Option(None, "--config", "-c",
                                help="Experiments file \\[default: experiments.toml]."),
    db: Path = typer.Option(None, "--db", help="Results database \\[default: ncbench.duckdb beside "
                                               "the config]."),
    only: list[str] = typer.Option(None, "--status", "-s",
                                   help="Only runs with this status (repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of runs."),
    select_only: list[str] = typer.Option(None, "--only", help="Only the runs with KEY=V1,V2 "
                                          "(repeatable: AND over keys), e.g. --only loss=mse."),
) -> None:
    """Show runs with their status and progress (executor, slot, attempt, heartbeat, Slurm job).

    Without names: the config's default experiment(s) and every experiment with stored runs.
    Runs declared in the config but not yet in the database show as queued. Reads only: safe
    while `ncbench run` is writing (data at most a few seconds old)."""
    from ncbench.errors import UsageError, did_you_mean
    from ncbench.events import utcnow
    from ncbench.store import to_jsonable

    for s in only or []:
        if s not in RUN_STATUSES:
            raise UsageError("--status", f"unknown status '{s}'{did_you_mean(s, RUN_STATUSES)}; "
                             f"valid: {', '.join(RUN_STATUSES)}")
    hidden: dict[str, int] = {}
    rows = load_status(config, db, experiments or None, only or None, hidden=hidden,
                       select_only=select_only or None)
    now = utcnow()
    if as_json:
        typer.echo(json.dumps([to_jsonable(r.to_dict(now)) for r in rows], indent=2))
        return
    _print_table(rows, now)
    if hidden:
        from rich.console import Console

        from ncbench.errors import plural

        listed = ", ".join(f"{name} ({plural(n, 'run')})" for name, n in hidden.items())
        Console(soft_wrap=True).print(f"[dim]not started, not shown: {listed} — name an "
                                      f"experiment to list its runs[/]", highlight=False)


def _print_table(rows: list[RunRow], now: datetime) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from ncbench.listing import status_counts

    console = Console()
    if not console.is_terminal:  # piped: never truncate
        console = Console(width=1000)
    if not rows:
        console.print("no runs")
        return

    def where(r: RunRow) -> str:
        return "/".join(str(x) for x in (r.device, r.slot) if x)

    def beat(r: RunRow) -> str:
        age = r.heartbeat_age(now)
        if r.status != RUNNING or age is None:
            return ""
        return f"[yellow]{_age(age)} stale[/]" if age > STALE_AFTER_S else _age(age)

    # (header, cell, justify, optional: shown only when some row has a value)
    columns = [
        ("experiment", lambda r: r.experiment, "left", False),
        ("run_id", lambda r: r.run_id, "left", False),
        ("dataset", lambda r: r.dataset, "left", False),
        ("model", lambda r: r.model, "left", False),
        ("loss", lambda r: r.loss, "left", False),
        ("width", lambda r: f"{r.width:g}", "right", False),
        ("epochs", lambda r: str(r.epochs), "right", False),
        ("seed", lambda r: str(r.seed), "right", False),
        ("status", lambda r: f"[{_style(r.status)}]{r.status}[/]", "left", False),
        ("progress", lambda r: r.progress_text, "right", False),
        ("device/slot", where, "left", True),
        ("attempt", lambda r: str(r.attempt or ""), "right", True),
        ("slurm job", lambda r: r.slurm_job_id or "", "left", True),
        ("heartbeat", beat, "right", True),
        # percent, as every human-facing table; --json keeps the fraction (docs/schema.md)
        ("final test", lambda r: _pct(r.test_acc), "right", True),
        ("nc1", lambda r: _num(r.nc1, ".3g"), "right", True),
    ]
    cells = [[c[1](r) for c in columns] for r in rows]
    keep = [i for i, c in enumerate(columns) if not c[3] or any(row[i] for row in cells)]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, header_style="bold", pad_edge=False)
    for i in keep:
        table.add_column(columns[i][0], justify=columns[i][2], no_wrap=True)
    for row in cells:
        table.add_row(*(row[i] for i in keep))
    console.print(table)
    for r in rows:  # why: the error of a run that did not finish, and any note (runs.note)
        for label, text in (("error", r.error if r.status != DONE else None), ("note", r.note)):
            if text:
                text = " ".join(str(text).split())
                text = text if len(text) <= 200 else text[:199] + "…"
                console.print(f"  {r.run_id} {label}: {text}", highlight=False, markup=False)
    counts = status_counts(rows)
    console.print("  ".join(f"[{_style(k)}]{k}[/] {v}" for k, v in counts.items())
                  + f"  (total {len(rows)})", highlight=False)
