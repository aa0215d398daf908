"""The run-directory layout: the folder and file names of a workdir and of its run directories.

A workdir (where it is by default is `ncbench.paths`' business) holds:

    <workdir>/
      manager.lock          the `ncbench run` that manages this workdir (ncbench.grid.lock_workdir)
      tui-queue.log         output of the queue the TUI starts (ncbench.tui.control)
      slurm/<job id>/       submitit's files of each Slurm job (ncbench.executors.slurm)
      trash/                run directories being deleted (`ncbench run --rerun`, ncbench.grid)
      runs/<run_id>/        one run directory per run:
        spec.json           the resolved RunSpec (ncbench.events.write_spec)
        events.jsonl        the event log (ncbench.events.EventLog)
        heartbeat.json      the worker's heartbeat (ncbench.events.EventLog.heartbeat)
        worker.log          the worker's stdout and stderr (written by the executors)
        checkpoint.pt       the latest training checkpoint (ncbench.checkpoint)
        checkpoint.prev.pt  the checkpoint before it (the fallback when the latest is damaged)
        checkpoint.damaged.pt, checkpoint.prev.damaged.pt
                            a checkpoint found damaged on resume, moved aside (ncbench.checkpoint)
        best.json           the best-validation record (ncbench.train)
        slurm.json          the Slurm job that runs the run (ncbench.executors.slurm)

Only names and paths live here: what the files hold belongs to the modules named above. Every
module that names one of these files or builds one of these paths imports it from here.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "RUNS_DIR", "SPEC_FILE", "EVENTS_FILE", "HEARTBEAT_FILE", "WORKER_LOG", "CHECKPOINT_FILE",
    "CHECKPOINT_PREV_FILE", "CHECKPOINT_DAMAGED_FILE", "CHECKPOINT_PREV_DAMAGED_FILE",
    "BEST_FILE", "SLURM_RECORD", "MANAGER_LOCK", "QUEUE_LOG", "SLURM_DIR",
    "runs_root", "run_dir_of", "run_dirs", "slurm_dir", "TRASH_DIR",
]

# -- in a workdir ------------------------------------------------------------------------------
#: The folder of the run directories: `<workdir>/runs/`.
RUNS_DIR = "runs"
#: The lock (and pid/host) of the `ncbench run` managing the workdir.
MANAGER_LOCK = "manager.lock"
#: The output of the `ncbench run` the TUI starts (in the workdir it runs).
QUEUE_LOG = "tui-queue.log"
#: submitit's folder: `<workdir>/slurm/<job id>/` (submission script, stdout, stderr).
SLURM_DIR = "slurm"
#: Where run directories are moved (in one step) before being deleted: `<workdir>/trash/`.
TRASH_DIR = "trash"

# -- in a run directory ------------------------------------------------------------------------
SPEC_FILE = "spec.json"
EVENTS_FILE = "events.jsonl"
HEARTBEAT_FILE = "heartbeat.json"
WORKER_LOG = "worker.log"
CHECKPOINT_FILE = "checkpoint.pt"
#: The checkpoint written before `CHECKPOINT_FILE` (kept when a new one is written).
CHECKPOINT_PREV_FILE = "checkpoint.prev.pt"
#: Where a resume moves a damaged `CHECKPOINT_FILE` / `CHECKPOINT_PREV_FILE` (kept to inspect).
CHECKPOINT_DAMAGED_FILE = "checkpoint.damaged.pt"
CHECKPOINT_PREV_DAMAGED_FILE = "checkpoint.prev.damaged.pt"
BEST_FILE = "best.json"
SLURM_RECORD = "slurm.json"


def runs_root(workdir: str | os.PathLike) -> Path:
    """`<workdir>/runs`: the folder holding one directory per run."""
    return Path(workdir) / RUNS_DIR


def run_dir_of(workdir: str | os.PathLike, run_id: str) -> Path:
    """`<workdir>/runs/<run_id>`: the directory of one run."""
    return runs_root(workdir) / run_id


def run_dirs(workdir: str | os.PathLike) -> list[Path]:
    """The run directories of a workdir, sorted by name ([] if it has none)."""
    root = runs_root(workdir)
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def slurm_dir(workdir: str | os.PathLike) -> Path:
    """`<workdir>/slurm`: submitit's folder (exists once a grid was submitted to Slurm)."""
    return Path(workdir) / SLURM_DIR
