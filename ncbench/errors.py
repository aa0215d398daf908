"""One error type per kind of user mistake; the CLI renders them once, with exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


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


class UnknownNameError(NcbenchError, ValueError):
    """An unknown registry name (loss, model, dataset, ...), with the closest known one."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        self.kind, self.name, self.known = kind, name, sorted(known)
        msg = f"unknown {kind} '{name}'"
        close = closest(name, self.known)
        if close:
            msg += f" (did you mean '{close}'?)"
        msg += f"; known: {', '.join(self.known)}"
        super().__init__(msg)


class DatasetNotFoundError(NcbenchError, FileNotFoundError):
    """A dataset is absent on disk and downloading is disabled (or impossible)."""


class StoreError(NcbenchError):
    """The results database cannot be opened or is not an ncbench database."""


class QueryError(NcbenchError):
    """A user's SQL query failed (syntax, unknown column, a write on the read-only database)."""


def closest(name: str, known: Iterable[str]) -> str | None:
    """The closest valid name to `name` (difflib), or None."""
    matches = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.5)
    return matches[0] if matches else None
