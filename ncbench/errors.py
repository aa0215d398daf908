"""Every user-facing error kind, and the one "did you mean" helper.

One class per kind of user mistake (or environment problem the user must fix). The CLI renders
any `NcbenchError` once, as its message without a traceback, and exits with `exit_code` (2).
Nothing else in the package defines a user-facing error class; modules raise these.

* `ConfigError`      — experiments.toml (or another config file): file, line, experiment, key.
* `UsageError`       — a command-line option or argument: names the option (`--status`).
* `ParameterError`   — a bad parameter of a component (a loss, model, dataset, the UFM solver,
  the local executor's slot options), raised by the component itself; the layer that knows where
  the value came from re-raises it (the config layer: a ConfigError naming the file and key; the
  grid, for an executor option: a UsageError naming the flag, or that ConfigError). Also a
  ValueError, so library callers may catch that.
* `UnknownNameError` — an unknown registry name (loss, model, dataset, executor, ...).
* `DatasetNotFoundError`, `StoreError`, `QueryError`, `ReportError`, `ControlError`,
  `WorkdirBusyError`, `SlurmUnavailableError` — see each class.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "NcbenchError", "ConfigError", "UsageError", "ParameterError", "UnknownNameError",
    "DatasetNotFoundError", "StoreError", "QueryError", "ReportError", "ControlError",
    "WorkdirBusyError", "SlurmUnavailableError", "closest", "did_you_mean", "plural",
]


class NcbenchError(Exception):
    """Base class: a user-facing error whose message is shown without a traceback."""

    exit_code = 2


class ConfigError(NcbenchError):
    """A problem in experiments.toml (or another config file): names file, place, key, reason."""

    def __init__(self, file: str | None, reason: str, *, experiment: str | None = None,
                 key: str | None = None, line: int | None = None):
        self.file, self.reason, self.experiment, self.key, self.line = file, reason, experiment, key, line
        where = []
        if file:
            where.append(f"{file}" + (f":{line}" if line else ""))
        if experiment:
            where.append(f"experiment '{experiment}'")
        if key:
            where.append(f"key '{key}'")
        super().__init__((": ".join([", ".join(where), reason]) if where else reason))


class UsageError(NcbenchError):
    """A bad command-line option or argument value: `option` is how the user typed it
    (`--status`, `--workers`, `EXPERIMENT`), `reason` what is wrong and what is valid."""

    def __init__(self, option: str, reason: str):
        self.option, self.reason = option, reason
        super().__init__(f"{option}: {reason}")


class ParameterError(NcbenchError, ValueError):
    """A bad parameter of a component (loss, model, dataset, UFM solver), raised by the component:
    the message names the component and the parameter. `key`: the experiments.toml key the
    parameter comes from when the component knows it (`per_class`, `test_fraction`, ...), else
    None; the config layer adds the file, experiment and key."""

    def __init__(self, reason: str, *, key: str | None = None):
        self.reason, self.key = reason, key
        super().__init__(reason)


class UnknownNameError(NcbenchError, ValueError):
    """An unknown registry name (loss, model, dataset, ...), with the closest known one."""

    def __init__(self, kind: str, name: str, known: Iterable[str], *, detail: str | None = None):
        self.kind, self.name, self.known = kind, name, sorted(known)
        if detail is not None:  # e.g. a plug-in path: why it does not resolve, not a name list
            super().__init__(f"{kind} '{name}': {detail}")
            return
        msg = f"unknown {kind} '{name}'" + did_you_mean(name, self.known)
        msg += f"; known: {', '.join(self.known)}"
        super().__init__(msg)


class DatasetNotFoundError(NcbenchError, FileNotFoundError):
    """A dataset is absent on disk and downloading is disabled (or impossible)."""


class StoreError(NcbenchError):
    """The results database cannot be opened or is not an ncbench database."""


class QueryError(NcbenchError):
    """A user's SQL query failed (syntax, unknown column, a write on the read-only database)."""


class ReportError(NcbenchError):
    """A bad report request: an invalid --where predicate, an unusable --rows/--cols key, ..."""


class ControlError(NcbenchError):
    """A queue or run control action that cannot be done (the TUI shows it as a notification)."""


class WorkdirBusyError(NcbenchError):
    """Another `ncbench run` manages the runs of this workdir right now."""


class RunAliveError(NcbenchError):
    """A run is being trained right now (a fresh heartbeat: a worker here, or a Slurm job on
    another node), so it cannot be deleted."""


class SlurmUnavailableError(NcbenchError):
    """Slurm's commands are missing or do not answer here."""


def closest(name: str, known: Iterable[str]) -> str | None:
    """The closest valid name to `name` (difflib), or None."""
    matches = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.5)
    return matches[0] if matches else None


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`" (did you mean 'x'?)"` for the closest of `known` to `name`, or `""` when none is close:
    the one place that phrases the suggestion appended to an unknown-name message."""
    hint = closest(name, known)
    return f" (did you mean '{hint}'?)" if hint else ""


def plural(n: int, word: str, many: str | None = None) -> str:
    """"1 run", "2 runs", "0 runs" (`many`: an irregular plural): the one place user-facing
    messages count things ("N run(s)")."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
