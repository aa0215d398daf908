"""Running grids on Slurm: one Slurm job per run (or one job array), submitted through submitit.

One job per module:

* `options` — `[executor.slurm]` and its flags, checked into `SlurmOptions` (sbatch parameters);
* `scheduler` — talking to Slurm: `query_jobs` (squeue, then sacct), `map_state`;
* `job` — what runs inside the job: `SlurmRunJob` starts the worker, checkpoints and requeues;
* `verdict` — a run's outcome from its job record, Slurm's job state and its events (`decide`),
  and writing it (`apply_verdict`);
* `executor` — `SlurmExecutor` (submit, then poll until every job is over) and `refresh` (one
  poll for `ncbench sync`).

Flow. `SlurmExecutor.run` prepares each run directory, submits a `SlurmRunJob(run_dir)` per run,
records the job id in the run dir (`slurm.json`) and in the database, then — unless `detach` —
polls until every job is over. Inside the job, `SlurmRunJob.__call__` runs `python -m
ncbench.worker RUN_DIR`; on SIGUSR2 (preemption, time limit near) submitit calls its
`checkpoint`, which stops the worker gracefully and requeues the job, which resumes the run from
its last checkpoint.

States (Slurm → ncbench, `map_state`): PENDING, REQUEUED, CONFIGURING… → `queued`; RUNNING,
COMPLETING… → `running`; COMPLETED → `done` (the run's own `end` event wins: a run that failed
or diverged inside a completed job says so); FAILED, OUT_OF_MEMORY, NODE_FAIL, BOOT_FAIL →
`failed` (cause from Slurm and the job's stderr); CANCELLED, TIMEOUT, PREEMPTED, DEADLINE →
`interrupted` (a later `ncbench run` resumes it); TIMEOUT/PREEMPTED jobs that were requeued show
PENDING again, hence `queued`.

Importing this package does not import submitit (only submitting a job, or checkpointing one,
does).
"""

from __future__ import annotations

from ncbench.executors.slurm.executor import SlurmExecutor, refresh
from ncbench.executors.slurm.job import RunFailedError, SlurmRunJob
from ncbench.executors.slurm.options import (
    CLI_FLAGS, OPTION_KEYS, SlurmOptions, check_options, slurm_options_from_cli,
)
from ncbench.executors.slurm.scheduler import (
    SLURM_STATE_MAP, JobState, map_state, query_jobs, slurm_available,
)
from ncbench.executors.slurm.verdict import LOST_AFTER_S, Verdict, decide, read_record

__all__ = [
    "SlurmExecutor", "SlurmOptions", "SlurmRunJob", "JobState", "check_options",
    "slurm_options_from_cli", "map_state", "query_jobs", "refresh", "SLURM_STATE_MAP",
    "OPTION_KEYS", "CLI_FLAGS", "slurm_available", "RunFailedError", "Verdict", "decide",
    "read_record", "LOST_AFTER_S",
]
