"""Executors: how the runs of a grid get computed (local slots, or Slurm jobs).

An executor takes the runs to do, starts one worker per run (`python -m ncbench.worker RUN_DIR`
locally, a Slurm job elsewhere), keeps the database in step with the run directories
(`store.sync`, open-write-close, never holding the file), reports progress to a `RunUI`, and
returns each run's final status. The contract (`ncbench.executors.base.Executor`, used by
`ncbench.grid.run_grid` and implemented by `ncbench.executors.local.LocalExecutor` and
`ncbench.executors.slurm.SlurmExecutor`):

    class Executor(Protocol):
        name: str                                          # "local" | "slurm" → runs.executor
        def run(self, specs: Sequence[RunSpec], workdir: Path, store: Store, ui: RunUI,
                requeued: Callable[[set[str]], list[RunSpec]] | None = None,
                ) -> dict[str, str]                        # run_id -> final status

`requeued(held)` (optional to use): the runs set back to `queued` meanwhile (the TUI's retry),
leaving out the run ids in `held` (those the executor has queued or running);
an executor with free capacity may start them before its own queue ends (the local one does,
whenever a slot frees up); `run_grid` runs whatever is left once the executor returns.

`specs` are the runs to do now, in the declared order, already registered in the store and
already filtered by `ncbench.grid.plan_runs` (done/diverged/alive-elsewhere runs are not passed).
The executor calls `lifecycle.prepare_run_dir` for each before starting it. It must leave every
run it was given in a final state in the database: `done`, `failed`, `diverged` or
`interrupted` — a worker that died without writing an `end` event gets one from the executor
(`lifecycle.mark_ended`). The attempt number of each start is `lifecycle.next_attempt`; whether a
failed attempt is started again (`retries`) is `lifecycle.retries_again`.

`ncbench.executors.base` holds the protocol and what the progress display receives (`RunView`,
`RunUI`, `NullUI`) and `RunWatcher` (incremental reading of a run's events and heartbeat). The
executors never import `ncbench.grid`: the grid drives them.
"""

from __future__ import annotations

from typing import Any

from ncbench.executors.base import Executor

__all__ = ["get_executor"]


def get_executor(name: str, **options: Any) -> Executor:
    """`local` → LocalExecutor(**options); `slurm` → ncbench.executors.slurm.SlurmExecutor
    (imported lazily: submitit is only needed there)."""
    if name == "local":
        from ncbench.executors.local import LocalExecutor, parse_gpus

        options = dict(options)
        if "gpus" in options:
            options["gpus"] = parse_gpus(options["gpus"])
        return LocalExecutor(**options)
    if name == "slurm":
        from ncbench.executors import slurm

        return slurm.SlurmExecutor(**options)
    from ncbench.errors import UnknownNameError
    from ncbench.names import EXECUTORS

    raise UnknownNameError("executor", name, EXECUTORS)
