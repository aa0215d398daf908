"""`ncbench run`: train the runs of one or more experiments (a thin layer over
`ncbench.grid.run_grid`)."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from ncbench.cli.app import app
from ncbench.errors import plural
from ncbench.lifecycle import DONE, QUEUED, STATUS_STYLE
from ncbench.paths import DEFAULT_CONFIG

#: Exit codes of `ncbench run`.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_SLURM = "Slurm (with --executor slurm; these override the config's executor.slurm table)"


def _pct(v) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}%"


def _num(v) -> str:
    return "" if v is None else ("nan" if isinstance(v, float) and math.isnan(v) else f"{v:.3g}")


_LABEL_KEYS = (("experiment", ""), ("dataset", ""), ("model", ""), ("loss", ""), ("width", "w"),
               ("epochs", "e"), ("seed", "s"))


def _short_labels(specs) -> dict[str, str]:
    """run_id → the settings that differ between these runs (e.g. "ce w0.5 s0"); the full label
    when there is a single run."""
    varying = [(k, p) for k, p in _LABEL_KEYS if len({getattr(s, k) for s in specs}) > 1]
    if not varying:
        return {s.run_id: s.label for s in specs}
    return {s.run_id: " ".join(f"{p}{_fmt(getattr(s, k))}" for k, p in varying) for s in specs}


def _common_label(specs) -> str:
    """The settings shared by all these runs (e.g. "demo digits mlp e30"), when some vary."""
    if len(specs) < 2:
        return ""
    return " ".join(f"{p}{_fmt(getattr(specs[0], k))}" for k, p in _LABEL_KEYS
                    if len({getattr(s, k) for s in specs}) == 1)


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


#: The summary's columns after "run"; accuracies in percent, at the last evaluation unless named.
SUMMARY_COLUMNS = ("status", "epoch", "final train", "best val", "test @ best val", "final test",
                   "nc1")


def _summary(console, result) -> None:
    """The end-of-run table: this invocation's runs with status, accuracies (percent, each
    labelled: "test @ best val" is the headline number, "final test" the last evaluation's)
    and NC1. Piped (a log, CI): printed at full width, so that no column is cut."""
    from rich.console import Console
    from rich.table import Table

    from ncbench.store import query_dicts, read_connection

    ids = [s.run_id for s in result.plan.todo]
    rows: dict[str, dict] = {}
    if ids and result.db_path.exists():
        with read_connection(result.db_path) as con:
            marks = ", ".join("?" * len(ids))
            for r in query_dicts(con, f"SELECT r.run_id, r.status, r.error, r.attempt, res.final_epoch, "
                                      f"res.best_val_acc, res.test_acc_at_best_val, res.final_train_acc, "
                                      f"res.final_test_acc, res.final_nc1 FROM runs r JOIN results res USING (run_id) "
                                      f"WHERE r.run_id IN ({marks})", ids):
                rows[r["run_id"]] = r
    labels = _short_labels(result.plan.todo)
    common = _common_label(result.plan.todo)
    table = Table(title="ncbench run — summary" + (f" ({common})" if common else ""),
                  title_justify="left", header_style="bold")
    table.add_column("run", no_wrap=True, overflow="ellipsis")
    for col in SUMMARY_COLUMNS:
        # Two-line headers ("test @" over "best val") and min_width: at 80 columns every
        # number stays readable; the run label gives way first.
        head = {"test @ best val": "test @\nbest val"}.get(col, col.replace(" ", "\n"))
        table.add_column(head, no_wrap=True, justify="left" if col == "status" else "right",
                         min_width=8 if col == "status" else max(map(len, head.split("\n"))))
    errors = any((rows.get(s.run_id, {}).get("error") and result.results.get(s.run_id) != DONE)
                 for s in result.plan.todo)
    if errors:
        table.add_column("error", overflow="fold")
    for spec in result.plan.todo:
        r = rows.get(spec.run_id, {})
        st = result.results.get(spec.run_id) or r.get("status") or QUEUED
        look = STATUS_STYLE.get(st)
        cells = [labels[spec.run_id], f"[{look.style if look else ''}]{st}[/]",
                 f"{r.get('final_epoch') or 0}/{spec.epochs}", _pct(r.get("final_train_acc")),
                 _pct(r.get("best_val_acc")), _pct(r.get("test_acc_at_best_val")),
                 _pct(r.get("final_test_acc")), _num(r.get("final_nc1"))]
        if errors:
            cells.append((r.get("error") or "") if st != DONE else "")
        table.add_row(*cells)
    if result.plan.todo:
        wide = console if console.is_terminal else Console(file=console.file, width=1000)
        wide.print(table)  # piped: never truncate (as `ncbench status`)
    counts: dict[str, int] = {}
    for st in result.results.values():
        counts[st] = counts.get(st, 0) + 1
    skipped = len(result.plan.skipped)
    parts = [f"{n} {s}" for s, n in sorted(counts.items())]
    if skipped:
        parts.append(f"{skipped} skipped (already done or running elsewhere)")
    not_started = len(result.plan.todo) - len(result.results)
    if not_started:
        parts.append(f"{not_started} not started")
    console.print(f"{plural(len(result.specs), 'run')}: " + (", ".join(parts) if parts else "nothing to do")
                  + f" — results in {result.db_path}", highlight=False, soft_wrap=True)


@app.command()
def run(
    experiments: list[str] = typer.Argument(None, help="Experiments to run \\[default: the config's "
                                                       "`default`]."),
    config: Path = typer.Option(None, "--config", "-c",
                                help=f"Experiments file \\[default: {DEFAULT_CONFIG}]."),
    db: Path = typer.Option(None, "--db", help="Results database \\[default: ncbench.duckdb beside "
                                               "the config]."),
    workdir: Path = typer.Option(None, "--workdir", help="Run directories (events, checkpoints) "
                                                         "\\[default: .ncbench beside the config]."),
    executor: str = typer.Option("local", "--executor", "-e", help="local | slurm."),
    workers: int = typer.Option(None, "--workers", "-w", help="CPU-only: runs at a time "
                                                               "\\[default: 1]."),
    gpus: str = typer.Option(None, "--gpus", help="GPU indices among the visible ones, e.g. 0,1,3 "
                                                  "('none': CPU only) \\[default: all visible]."),
    per_gpu: int = typer.Option(None, "--per-gpu", help="Runs packed on each GPU \\[default: 1]."),
    retries: int = typer.Option(None, "--retries", help="Times a failed run is queued again "
                                                        "\\[default: 0]."),
    only: list[str] = typer.Option(None, "--only", help="Only the runs with KEY=V1,V2 "
                                   "(repeatable: AND over keys), e.g. --only loss=ce,mse."),
    set_: list[str] = typer.Option(None, "--set", help="Override KEY=VALUE (a TOML value) for a "
                                   "quick try, e.g. --set epochs=5 (new run ids)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would run; change nothing."),
    rerun: bool = typer.Option(False, "--rerun", help="Delete the selected runs that ended done, "
                               "diverged or failed (rows, events, checkpoints) and train them "
                               "again from scratch."),
    # Slurm (--executor slurm): override [executor.slurm]; see ncbench.executors.slurm
    partition: str = typer.Option(None, "--partition", help="Slurm partition.",
                                  rich_help_panel=_SLURM),
    slurm_gpus: int = typer.Option(None, "--slurm-gpus", help="GPUs per run (job).",
                                   rich_help_panel=_SLURM),
    slurm_cpus: int = typer.Option(None, "--slurm-cpus", help="CPUs per run (job).",
                                   rich_help_panel=_SLURM),
    slurm_mem_gb: float = typer.Option(None, "--slurm-mem-gb", help="Memory per run, GB.",
                                       rich_help_panel=_SLURM),
    slurm_time: int = typer.Option(None, "--slurm-time", help="Time limit per job, minutes (it "
                                   "requeues and resumes when reached).", rich_help_panel=_SLURM),
    account: str = typer.Option(None, "--account", help="Slurm account.", rich_help_panel=_SLURM),
    qos: str = typer.Option(None, "--qos", help="Slurm QOS.", rich_help_panel=_SLURM),
    array_parallelism: int = typer.Option(None, "--array-parallelism", help="Array tasks running at "
                                          "once.", rich_help_panel=_SLURM),
    detach: bool = typer.Option(False, "--detach", help="Return once submitted; `ncbench sync` "
                                "picks the results up later.", rich_help_panel=_SLURM),
) -> None:
    """Train the runs of the experiments: skips runs already done, resumes interrupted ones.

    Exit code 0 when every run started ended done or diverged, 1 if one failed, 2 for a bad
    config or missing dataset (nothing is stored), 130 when stopped with Ctrl-C."""
    from rich.console import Console

    console = Console()
    if console.is_terminal and not dry_run:  # checks + worker start-up take seconds: say so now
        console.print("[dim]ncbench run: checking the config and the grid…[/]", highlight=False)

    from ncbench.grid import run_grid
    from ncbench.progress import RichUI

    options = {"workers": workers, "gpus": gpus, "per_gpu": per_gpu, "retries": retries,
               "partition": partition, "gpus_per_run": slurm_gpus, "cpus_per_run": slurm_cpus,
               "mem_gb": slurm_mem_gb, "time_min": slurm_time, "account": account, "qos": qos,
               "array_parallelism": array_parallelism, "detach": detach or None}
    result = run_grid(config, experiments, db_path=db, workdir=workdir, executor=executor,
                      options=options, dry_run=dry_run, rerun=rerun, only=only, sets=set_,
                      ui_factory=lambda skipped: RichUI(console, skipped=skipped))
    if dry_run:
        for spec in result.specs:
            console.print(f"{spec.run_id}  {spec.label:<48} {result.plan.action(spec.run_id)}",
                          highlight=False, soft_wrap=True)
        again = (f", {len(result.plan.rerun)} of them rerun from scratch (their results deleted)"
                 if result.plan.rerun else "")
        console.print(f"{len(result.plan.todo)} of {plural(len(result.specs), 'run')} would run{again} "
                      f"(executor {executor}); nothing was changed.", highlight=False,
                      soft_wrap=True)
        return
    _summary(console, result)
    if result.failed:
        raise typer.Exit(EXIT_FAILED)
    if result.interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
