"""How the runs view filters, orders and formats the listing's rows (no Textual, no database).

* `RunFilter` — the filter syntax typed in the runs view (`loss:ce,fl !status:done word`);
* `SORT_KEYS` / `sort_rows` — the orderings the view offers (missing values last);
* `format_duration` / `format_metric` — cell texts;
* `is_starting`, `attempt_elapsed`, `attempt_eta` — the latest attempt's state and times (a run
  whose worker has not started its attempt yet is "starting…", with no elapsed time or ETA);
* `with_status` — a row with another status (the view's optimistic update after a retry).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from ncbench.lifecycle import DONE, RUN_STATUSES, RUNNING
from ncbench.listing import RunRow

__all__ = ["RunFilter", "SORT_KEYS", "sort_rows", "format_duration", "format_metric",
           "with_status", "is_starting", "attempt_elapsed", "attempt_eta"]


# -- filtering and sorting ------------------------------------------------------------------

_FILTER_KEYS = {
    "exp": "experiment", "experiment": "experiment", "e": "experiment",
    "loss": "loss", "l": "loss",
    "status": "status", "s": "status",
    "dataset": "dataset", "data": "dataset", "d": "dataset",
    "model": "model", "m": "model",
    "width": "width", "w": "width",
    "seed": "seed",
    "epochs": "epochs",
    "device": "device",
    "id": "run_id", "run": "run_id", "run_id": "run_id",
}
_TEXT_FIELDS = ("run_id", "experiment", "dataset", "model", "loss", "status", "device")


@dataclass(frozen=True)
class RunFilter:
    """A filter typed in the runs view: space-separated terms that must all hold.

    `key:value` (or `key=value`) keeps runs whose column equals value — keys `exp`, `loss`,
    `status`, `dataset`, `model`, `width`, `seed`, `epochs`, `device`, `id`; `value` may list
    alternatives `ce,fl`; a leading `!` or `-` negates the term. A bare word keeps runs where any
    text column contains it (case-insensitive). Unknown keys make `error` non-empty.
    """

    text: str = ""
    terms: tuple[tuple[str | None, tuple[str, ...], bool], ...] = ()
    error: str = ""

    @classmethod
    def parse(cls, text: str) -> "RunFilter":
        terms = []
        errors = []
        for raw in text.split():
            neg = raw[0] in "!-" and len(raw) > 1
            tok = raw[1:] if neg else raw
            m = re.match(r"^([A-Za-z_]+)[:=](.*)$", tok)
            if m:
                key = m.group(1).lower()
                if key not in _FILTER_KEYS:
                    errors.append(f"unknown filter key '{key}' (known: exp, loss, status, "
                                  "dataset, model, width, seed, epochs, device, id)")
                    continue
                values = tuple(v.lower() for v in m.group(2).split(",") if v)
                terms.append((_FILTER_KEYS[key], values, neg))
            else:
                terms.append((None, (tok.lower(),), neg))
        return cls(text=text, terms=tuple(terms), error="; ".join(errors))

    def __call__(self, row: RunRow) -> bool:
        for key, values, neg in self.terms:
            if key is None:
                hit = any(values[0] in str(getattr(row, f) or "").lower() for f in _TEXT_FIELDS)
            else:
                hit = any(_value_matches(getattr(row, key), v) for v in values)
            if hit == neg:
                return False
        return True


def _value_matches(value: Any, wanted: str) -> bool:
    if isinstance(value, float):
        try:
            return math.isclose(value, float(wanted))
        except ValueError:
            return False
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return value == int(wanted)
        except ValueError:
            return False
    return str(value or "").lower() == wanted


# The status sort: what needs attention first — the running runs, then the others in lifecycle
# order (queued, failed, diverged, interrupted), done runs last.
_STATUS_ORDER = {s: i for i, s in enumerate(sorted(RUN_STATUSES,
                                                   key=lambda s: (s != RUNNING, s == DONE)))}

# Sort keys offered by the runs view: label -> key function (None values sort last); "config"
# (None) is the listing's own order: the config's runs as it declares them, then the others.
SORT_KEYS: dict[str, Callable[[RunRow], Any] | None] = {
    "config": None,
    "status": lambda r: (_STATUS_ORDER.get(r.status, 99), r.experiment, r.loss, r.width, r.seed),
    "loss": lambda r: (r.loss, r.experiment, r.width, r.seed),
    "progress": lambda r: r.progress,
    "nc1": lambda r: r.nc1,
    "test_acc": lambda r: r.test_acc,
    "started": lambda r: r.started_at,
}


def sort_rows(rows: Iterable[RunRow], key: str = "config", reverse: bool = False) -> list[RunRow]:
    """Rows ordered by a `SORT_KEYS` key; rows whose key is None (or NaN) go last either way.
    "config" keeps the order of `rows` (the listing's: the config's order), reversed if asked."""
    fn = SORT_KEYS[key]
    if fn is None:
        rows = list(rows)
        return rows[::-1] if reverse else rows
    have, missing = [], []
    for row in rows:
        k = fn(row)
        absent = k is None or (isinstance(k, float) and math.isnan(k))
        (missing if absent else have).append((k, row))
    have.sort(key=lambda kr: kr[0], reverse=reverse)
    return [r for _, r in have] + [r for _, r in missing]


# -- formatting -----------------------------------------------------------------------------

def format_duration(seconds: float | None) -> str:
    """`42s`, `3m05s`, `2h07m`, `3d04h`; `–` for None."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def format_metric(value: float | None, kind: str = "g") -> str:
    """A metric for a table cell: `–` for None, `nan`/`inf` spelled out, accuracies as %."""
    if value is None:
        return "–"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if kind == "%":
        return f"{100 * value:.1f}%"
    return f"{value:.3g}"


def is_starting(row: RunRow) -> bool:
    """A running run whose worker has not started its attempt yet: the executor launched it,
    its `start` event is not stored (no `started_at` for this attempt)."""
    return row.status == RUNNING and row.started_at is None


def attempt_elapsed(row: RunRow, now: datetime) -> float | None:
    """Seconds the latest attempt has run (until it ended); None while it is starting."""
    return None if is_starting(row) else row.elapsed(now)


def attempt_eta(row: RunRow, now: datetime) -> float | None:
    """Seconds left for a running run, from the latest attempt's pace (`RunRow.eta`: epochs
    since `start_epoch`); None while it is starting or before its first epoch."""
    return None if is_starting(row) else row.eta(now)


def with_status(row: RunRow, status: str) -> RunRow:
    """A copy of `row` with another status (for optimistic updates after a control action)."""
    return replace(row, status=status)
