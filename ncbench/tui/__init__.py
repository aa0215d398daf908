"""`ncbench tui`: a Textual app over the results database (and experiments.toml).

Views: runs (every run of the config and the database, live), run detail (charts of NC metrics,
accuracies, loss and learning rate against epoch), compare (all losses of an experiment: mean
curves and the tables of `ncbench report`). It controls runs only by starting/stopping
`ncbench run` and signalling workers; it never imports torch or training code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

__all__ = ["NcbenchApp", "run_tui"]


def __getattr__(name: str):
    if name == "NcbenchApp":
        from ncbench.tui.app import NcbenchApp

        return NcbenchApp
    raise AttributeError(name)


def run_tui(db_path: str | Path, *, config_path: str | Path | None = None,
            experiments: Sequence[str] = (), workdir: str | Path,
            start_queue: bool = False, poll_interval: float = 1.0,
            run_args: Sequence[str] = (), queue_experiments: Sequence[str] | None = None,
            all_stored: bool = False, selection: dict[str, set] | None = None) -> int | None:
    """Run the app in this terminal until the user quits. `experiments` are shown (their
    declared and stored runs; with `all_stored`, the stored runs of every experiment too, as
    `ncbench status` lists them when no experiment is named; `selection`: `--only`, applied to
    the shown runs as `ncbench status --only` applies it); `queue_experiments` (default:
    `experiments`; empty: the config's default) are what the queue runs. `run_args` go to the
    `ncbench run` the app starts (e.g. `["--workers", "2"]`); `workdir`: its run directories
    (`ncbench.paths.resolve`'s).
    A queue started from the app is stopped (SIGINT, as Ctrl-C would) and waited for before
    returning; returns its exit code."""
    from ncbench.tui.app import NcbenchApp
    from ncbench.tui.control import QueueController

    queued = experiments if queue_experiments is None else queue_experiments
    controller = QueueController(config_path, db_path, queued, workdir=workdir,
                                 run_args=run_args)
    app = NcbenchApp(db_path, config_path=config_path, experiments=experiments,
                     workdir=workdir, start_queue=start_queue, poll_interval=poll_interval,
                     controller=controller, all_stored=all_stored, selection=selection)
    try:
        app.run()
    finally:
        code = None
        if app.controller.running:
            print("stopping the queue started from the TUI (Ctrl-C again to kill it) ...",
                  flush=True)
            code = app.controller.shutdown(timeout=30.0)
    return code
