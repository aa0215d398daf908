"""What a Slurm job asks for: `[executor.slurm]` and its command-line flags, checked into SlurmOptions.

`check_options` validates a raw table (unknown keys and bad values are ConfigErrors naming the
file and `executor.slurm.<key>`, or UsageErrors naming the flag for values the command line gave); `SlurmOptions.sbatch_parameters` turns the options into
submitit's sbatch parameters; `slurm_options_from_cli` picks the flags of `ncbench run` that
override the table (CLI_FLAGS).
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ncbench.errors import ConfigError, NcbenchError, UsageError, did_you_mean

__all__ = ["SlurmOptions", "OPTION_KEYS", "CLI_FLAGS", "check_options", "flag_of",
           "slurm_options_from_cli"]


@dataclass
class SlurmOptions:
    """What a Slurm job asks for, and how the manager behaves. Keys of `[executor.slurm]`.

    `partition`, `account`, `qos`: passed to sbatch as is (None: the cluster's default);
    `gpus_per_run`: GPUs per job (Slurm GRES; 0: none); `cpus_per_run`: CPUs per job (also the
    worker's torch threads); `mem_gb`: memory per job (None: the cluster's default);
    `time_min`: time limit per job in minutes; `array`: submit the runs of one invocation as one
    job array (else one job per run); `array_parallelism`: at most this many array tasks at a
    time (None: no limit); `max_requeues`: times a job is requeued after reaching its time limit
    (it resumes from its checkpoint each time); `signal_delay_s`: seconds before the time limit
    at which the job is told to checkpoint and requeue (None: 90 s, less for short limits);
    `extra`: more sbatch options (`{"constraint": "a100", "exclude": "node3"}`);
    `detach`: return once submitted (`ncbench sync` picks the results up later);
    `retries`: times a failed run is submitted again; `poll_interval`: seconds between polls;
    `python`: the command that runs Python in the job (default: this interpreter)."""

    partition: str | None = None
    gpus_per_run: int = 0
    cpus_per_run: int = 1
    mem_gb: float | None = None
    time_min: int = 60
    account: str | None = None
    qos: str | None = None
    array: bool = True
    array_parallelism: int | None = None
    max_requeues: int = 3
    signal_delay_s: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    detach: bool = False
    retries: int = 0
    poll_interval: float = 1.0
    python: str | None = None

    def effective_signal_delay(self) -> int:
        """The USR2 lead time: `signal_delay_s`, else 90 s — but at most a quarter of the time
        limit (submitit's fixed 90 s would fire before a 1-minute job even starts)."""
        if self.signal_delay_s is not None:
            return self.signal_delay_s
        return int(min(90, max(10, self.time_min * 60 // 4)))

    def sbatch_parameters(self) -> dict[str, Any]:
        """The parameters of `submitit.SlurmExecutor.update_parameters`."""
        p: dict[str, Any] = {"time": self.time_min, "cpus_per_task": self.cpus_per_run,
                             "ntasks_per_node": 1, "signal_delay_s": self.effective_signal_delay()}
        for key in ("partition", "account", "qos"):
            if getattr(self, key) is not None:
                p[key] = getattr(self, key)
        if self.gpus_per_run:
            p["gpus_per_node"] = self.gpus_per_run
        if self.mem_gb is not None:
            p["mem"] = _mem(self.mem_gb)
        if self.array_parallelism is not None:
            p["array_parallelism"] = self.array_parallelism
        if self.extra:
            p["additional_parameters"] = {str(k).replace("_", "-"): v for k, v in self.extra.items()}
        return p


OPTION_KEYS: tuple[str, ...] = tuple(f.name for f in fields(SlurmOptions))
#: Keys of `[executor.slurm]` that `ncbench run` also takes as flags (see `slurm_options_from_cli`).
CLI_FLAGS = {"partition": "--partition", "gpus_per_run": "--slurm-gpus",
             "cpus_per_run": "--slurm-cpus", "mem_gb": "--slurm-mem-gb",
             "time_min": "--slurm-time", "account": "--account", "qos": "--qos",
             "array_parallelism": "--array-parallelism", "detach": "--detach"}


def _mem(gb: float) -> str:
    return f"{int(gb)}G" if float(gb) == int(gb) else f"{int(round(gb * 1024))}M"


def flag_of(key: str) -> str:
    """The `ncbench run` flag of an option key (`time_min` → `--slurm-time`, `retries` →
    `--retries`)."""
    return CLI_FLAGS.get(key, "--" + key.replace("_", "-"))


def check_options(table: Mapping[str, Any], file: str | os.PathLike | None = None, *,
                  flags: Collection[str] = ()) -> SlurmOptions:
    """Validate a raw `[executor.slurm]` table (plus command-line overrides) into SlurmOptions.
    Unknown keys and bad values are ConfigErrors naming the file and `executor.slurm.<key>`
    (with the closest valid key) — or, for the keys in `flags` (the values the command line
    gave), UsageErrors naming the flag (`--slurm-time`)."""
    fname = str(file) if file is not None else None

    def fail(key: str, reason: str) -> NcbenchError:
        if key in flags:
            return UsageError(flag_of(key), reason)
        return ConfigError(fname, reason, key=f"executor.slurm.{key}")

    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in OPTION_KEYS:
            raise fail(key, "unknown key" + did_you_mean(key, OPTION_KEYS)
                       + f"; valid: {', '.join(OPTION_KEYS)}")
        if value is None:
            continue
        if key in ("partition", "account", "qos", "python"):
            if not isinstance(value, str) or not value.strip():
                raise fail(key, f"expected a non-empty string, got {value!r}")
        elif key in ("gpus_per_run", "max_requeues", "retries"):
            value = _int(value, 0, fail, key)
        elif key in ("cpus_per_run", "time_min", "array_parallelism"):
            value = _int(value, 1, fail, key)
        elif key == "signal_delay_s":
            value = _int(value, 1, fail, key)
        elif key in ("mem_gb", "poll_interval"):
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value <= 0):
                raise fail(key, f"expected a positive (finite) number, got {value!r}")
            value = float(value)
        elif key in ("array", "detach"):
            if not isinstance(value, bool):
                raise fail(key, f"expected true or false, got {value!r}")
        elif key == "extra":
            if not isinstance(value, Mapping):
                raise fail(key, f"expected a table of sbatch options, e.g. "
                                f"{{ constraint = \"a100\" }}, got {value!r}")
            value = dict(value)
        out[key] = value
    opts = SlurmOptions(**out)
    if opts.signal_delay_s is not None and opts.signal_delay_s >= opts.time_min * 60:
        raise fail("signal_delay_s", f"{opts.signal_delay_s} s is not shorter than the time limit "
                                     f"({opts.time_min} min): the job would be told to requeue "
                                     "before it starts")
    return opts


def _int(value: Any, minimum: int, fail, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise fail(key, f"expected an integer ≥ {minimum}, got {value!r}")
    return value


def slurm_options_from_cli(**flags: Any) -> dict[str, Any]:
    """The `[executor.slurm]` overrides given on the command line: the non-None values among
    CLI_FLAGS' keys (`detach` only when true). `ncbench run` passes them to `run_grid`."""
    out = {k: v for k, v in flags.items() if k in CLI_FLAGS and v is not None}
    if out.get("detach") is False:
        out.pop("detach")
    return out
