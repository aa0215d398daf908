"""What the TUI reads: plain queries over the results database, no Textual, no torch.

The TUI polls the database about once a second. Each poll opens the file read-only
(`ncbench.store.read_connection`, which retries while the writer holds it), runs a few queries and
closes it again, so the `ncbench run` manager that opens-writes-closes the file every second is
never held up. The queries are shaped for many runs:

* `fetch_runs` — one query for the runs table plus one for every run's latest `nc1`/`test_acc`
  (`arg_max(value, epoch)` over the two metric names), never one query per run; `RunsReader`
  does the same incrementally (only runs whose row changed since the last poll);
* `fetch_series` — the metric rows of one run after the last epoch already held (so a run detail
  view only fetches new evaluations);
* comparisons go through `ncbench.report` (one implementation shared with `ncbench report`).

`RunRow` holds one line of the runs view; `RunSeries` a run's metric history, grown in place.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from ncbench.schema import RUN_STATUSES

__all__ = [
    "RunRow", "RunSeries", "RunFilter", "RunsReader", "SORT_KEYS", "fetch_runs", "fetch_run_detail",
    "fetch_series", "config_runs", "merge_runs", "status_counts", "sort_rows", "utcnow",
    "format_duration", "format_metric",
]

# Statuses a run may be retried from (`ncbench run` reruns these) / cancelled in.
RETRYABLE = ("failed", "interrupted")
CANCELLABLE = ("running",)


def utcnow() -> datetime:
    """The current time as a naive UTC datetime (how the store writes TIMESTAMP columns)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class RunRow:
    """One run as the runs view shows it.

    `epoch` is the last epoch the run reached (its heartbeat or its last evaluation; None before
    either), `nc1`/`test_acc` the values at the run's latest evaluation that has them. `in_db` is False for a run declared in
    the config but not registered in the database yet (shown as queued).
    """

    run_id: str
    experiment: str
    dataset: str
    model: str
    loss: str
    width: float
    epochs: int
    seed: int
    status: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    device: str | None = None
    error: str | None = None
    attempt: int = 0
    epoch: int | None = None
    nc1: float | None = None
    test_acc: float | None = None
    in_db: bool = True
    start_epoch: int = 0  # the epoch the latest attempt started from (its checkpoint's, resumed)

    @property
    def progress(self) -> float:
        """Fraction of epochs done, in [0, 1] (1 for a finished `done` run)."""
        if self.status == "done":
            return 1.0
        if not self.epoch or self.epochs <= 0:
            return 0.0
        return max(0.0, min(1.0, self.epoch / self.epochs))

    def elapsed(self, now: datetime) -> float | None:
        """Seconds since the run started (until it finished); None if it never started."""
        if self.started_at is None or self.status == "queued":
            return None
        end = self.finished_at if (self.finished_at and self.status != "running") else now
        return max(0.0, (end - self.started_at).total_seconds())

    def eta(self, now: datetime) -> float | None:
        """Estimated seconds left for a running run: the latest attempt's seconds per epoch
        (elapsed since it started / epochs done since `start_epoch`) × epochs left."""
        done = (self.epoch or 0) - self.start_epoch
        if self.status != "running" or done <= 0:
            return None
        elapsed = self.elapsed(now)
        if elapsed is None:
            return None
        left = max(0, self.epochs - (self.epoch or 0))
        return elapsed / done * left

    def field(self, name: str) -> Any:
        """A column's value by name (for filters and sorting)."""
        return getattr(self, name)


# -- queries -------------------------------------------------------------------------------

_RUNS_SQL = """
SELECT run_id, experiment, dataset, model, loss, width, epochs, seed, status, started_at,
       finished_at, device, error, coalesce(attempt, 0), last_epoch, heartbeat_at, {start_epoch}
FROM runs
"""

_LATEST_SQL = """
SELECT run_id,
       max(epoch),
       arg_max(value, epoch) FILTER (WHERE name = 'nc1' AND value IS NOT NULL),
       arg_max(value, epoch) FILTER (WHERE name = 'test_acc' AND value IS NOT NULL)
FROM metrics
WHERE name IN ('nc1', 'test_acc'){where}
GROUP BY run_id
"""


def _latest(con: Any, run_ids: list[str] | None) -> dict[str, tuple]:
    """run_id -> (last evaluated epoch, latest nc1, latest test_acc): one query over the two
    metric names, for every run (None) or only these."""
    where, params = "", []
    if run_ids is not None:
        if not run_ids:
            return {}
        where = " AND run_id IN (" + ", ".join("?" * len(run_ids)) + ")"
        params = run_ids
    return {r[0]: r[1:] for r in con.execute(_LATEST_SQL.format(where=where), params).fetchall()}


def _select_runs(con: Any, experiments: list[str]) -> list[tuple]:
    where, params = "", []
    if experiments:
        where = " WHERE experiment IN (" + ", ".join("?" * len(experiments)) + ")"
        params = experiments
    try:
        return con.execute(_RUNS_SQL.format(start_epoch="start_epoch") + where, params).fetchall()
    except duckdb.BinderException:  # a database of schema version 2 (no writer has opened it since)
        return con.execute(_RUNS_SQL.format(start_epoch="NULL") + where, params).fetchall()


def _row(r: tuple, latest: tuple | None) -> RunRow:
    epoch, nc1, acc = latest or (None, None, None)
    last = r[14] if epoch is None else (epoch if r[14] is None else max(r[14], epoch))
    return RunRow(
        run_id=r[0], experiment=r[1], dataset=r[2], model=r[3], loss=r[4], width=float(r[5]),
        epochs=int(r[6]), seed=int(r[7]), status=r[8], started_at=r[9], finished_at=r[10],
        device=r[11], error=r[12], attempt=int(r[13] or 0), epoch=last, nc1=_num(nc1),
        test_acc=_num(acc), start_epoch=int(r[16] or 0),
    )


def fetch_runs(con: Any, experiments: Iterable[str] | None = None) -> dict[str, RunRow]:
    """Every run in the database (optionally only these experiments), keyed by run id, with its
    latest NC1 and test accuracy — two queries, whatever the number of runs."""
    rows = _select_runs(con, list(experiments or []))
    latest = _latest(con, None)
    return {r[0]: _row(r, latest.get(r[0])) for r in rows}


class RunsReader:
    """`fetch_runs`, incrementally: what the app calls on every poll.

    Each poll reads the `runs` table (one small query) and compares each row with the previous
    poll's; the store changes a run's row (`last_epoch`, `heartbeat_at`, `status` …) whenever
    it ingests that run's events. For the changed runs it looks up `nc1` / `test_acc` at their
    `last_epoch` (a join on the metrics' primary key, cheap for any number of runs). A run whose
    `last_epoch` is not an evaluated epoch (a heartbeat ran ahead of the evaluations) keeps its
    previous values and is marked stale; stale runs are settled by a full read (`fetch_runs`'
    query over all runs) at most every `stale_every` polls, and everything is re-read every
    `full_every` polls and on the first (to catch edits made outside the store). Unchanged runs
    keep their `RunRow` object, so the view can skip them by identity.
    """

    def __init__(self, experiments: Iterable[str] | None = None, *, full_every: int = 60,
                 stale_every: int = 5):
        self.experiments = list(experiments or [])
        self.full_every = full_every
        self.stale_every = stale_every
        self.polls = 0
        self.last_changed = 0  # runs whose row changed in the last poll
        self.last_full = False  # whether the last poll re-read every run's latest metrics
        self._since_full = 0
        self._stale: set[str] = set()
        self._sig: dict[str, tuple] = {}
        self._rows: dict[str, RunRow] = {}

    def read(self, con: Any) -> dict[str, RunRow]:
        rows = _select_runs(con, self.experiments)
        sigs = {r[0]: r for r in rows}
        changed = [rid for rid, r in sigs.items() if self._sig.get(rid) != r]
        self._stale &= set(sigs)
        full = (self.polls % self.full_every == 0 or len(changed) > 200
                or (self._stale and self._since_full >= self.stale_every))
        self.polls += 1
        if full:
            latest = _latest(con, None)
            self._stale.clear()
            self._since_full = 0
            update = list(sigs)
        else:
            self._since_full += 1
            latest = self._at_last_epoch(con, [sigs[rid] for rid in changed])
            update = changed
        for rid in update:
            new = _row(sigs[rid], latest.get(rid))
            old = self._rows.get(rid)
            if rid not in latest and old is not None and sigs[rid][14] is not None:
                # no evaluation at last_epoch: keep the values of the last one seen
                new = replace(new, nc1=old.nc1, test_acc=old.test_acc,
                              epoch=max(new.epoch or 0, old.epoch or 0) or None)
                self._stale.add(rid)
            self._rows[rid] = old if old == new else new
        for rid in set(self._rows) - set(sigs):
            del self._rows[rid]
        self._sig = sigs
        self.last_changed, self.last_full = len(changed), full
        return {rid: self._rows[rid] for rid in sigs}

    @staticmethod
    def _at_last_epoch(con: Any, rows: list[tuple]) -> dict[str, tuple]:
        """run_id -> (epoch, nc1, test_acc) at each run's `last_epoch`, for runs that have an
        evaluation there."""
        keyed = [(r[0], r[14]) for r in rows if r[14] is not None]
        if not keyed:
            return {}
        pairs = " OR ".join("(run_id = ? AND epoch = ?)" for _ in keyed)
        got = con.execute(
            "SELECT run_id, epoch, max(value) FILTER (WHERE name = 'nc1'), "
            "max(value) FILTER (WHERE name = 'test_acc') FROM metrics "
            f"WHERE name IN ('nc1', 'test_acc') AND ({pairs}) GROUP BY run_id, epoch",
            [v for pair in keyed for v in pair],
        ).fetchall()
        return {r[0]: r[1:] for r in got}


def fetch_run_detail(con: Any, run_id: str) -> dict[str, Any] | None:
    """The run's full `runs` row as a dict, with `config` parsed from JSON; None if unknown."""
    cur = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
    row = cur.fetchone()
    if row is None:
        return None
    names = [d[0] for d in cur.description]
    out = dict(zip(names, row))
    cfg = out.get("config")
    if isinstance(cfg, str):
        try:
            out["config"] = json.loads(cfg)
        except ValueError:
            pass
    return out


@dataclass
class RunSeries:
    """A run's metric history, `name -> (epochs, values)`, grown in place by `fetch_series`.

    `attempt` is the run attempt the history belongs to; when the run is retried (its attempt
    changes) or its stored history shrinks, the history is fetched again from the start.
    """

    run_id: str
    metrics: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    last_epoch: int = -1
    attempt: int | None = None

    def get(self, name: str) -> tuple[list[int], list[float]]:
        return self.metrics.get(name, ([], []))

    def reset(self) -> None:
        self.metrics.clear()
        self.last_epoch = -1


def fetch_series(con: Any, series: RunSeries, attempt: int | None = None) -> int:
    """Append to `series` the metric rows of its run after `series.last_epoch`; returns how many
    evaluations (epochs) were added. Starts over when `attempt` differs from the one held or
    the database holds fewer epochs than `series` does (a retried run)."""
    if attempt is not None and series.attempt is not None and attempt != series.attempt:
        series.reset()
    series.attempt = attempt if attempt is not None else series.attempt
    if series.last_epoch >= 0:
        top = con.execute(
            "SELECT max(epoch) FROM metrics WHERE run_id = ?", [series.run_id]
        ).fetchone()[0]
        if top is None or top < series.last_epoch:
            series.reset()
    rows = con.execute(
        "SELECT epoch, name, value FROM metrics WHERE run_id = ? AND epoch > ? "
        "ORDER BY epoch, name",
        [series.run_id, series.last_epoch],
    ).fetchall()
    added: set[int] = set()
    for epoch, name, value in rows:
        xs, ys = series.metrics.setdefault(name, ([], []))
        xs.append(int(epoch))
        ys.append(float("nan") if value is None else float(value))
        added.add(int(epoch))
    if added:
        series.last_epoch = max(added)
    return len(added)


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


# -- runs declared in the config ------------------------------------------------------------

def config_runs(config_path: Path | str, experiments: Iterable[str] | None = None) -> list[RunRow]:
    """The runs `experiments.toml` declares (optionally only these experiments), as queued rows
    not yet in the database. Uses `ncbench.config` (validation errors propagate as ConfigError)."""
    from ncbench.config import expand, load_config

    cfg = load_config(Path(config_path))
    exps = list(experiments or [])
    specs = expand(cfg, exps or None)
    rows = []
    for spec in specs:
        rows.append(RunRow(
            run_id=spec.run_id, experiment=spec.experiment, dataset=spec.dataset,
            model=spec.model, loss=spec.loss, width=float(spec.width), epochs=int(spec.epochs),
            seed=int(spec.seed), status="queued", in_db=False,
        ))
    return rows


def merge_runs(db_rows: Mapping[str, RunRow], declared: Iterable[RunRow]) -> dict[str, RunRow]:
    """Database rows plus the declared runs the database does not hold yet (config order)."""
    out = dict(db_rows)
    for row in declared:
        if row.run_id not in out:
            out[row.run_id] = row
    return out


def status_counts(rows: Iterable[RunRow]) -> dict[str, int]:
    """Number of runs per status, every known status present (0 if none), known ones first."""
    counts = {s: 0 for s in RUN_STATUSES}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    return counts


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


_STATUS_ORDER = {s: i for i, s in enumerate(("running", "queued", "failed", "diverged",
                                             "interrupted", "done"))}

# Sort keys offered by the runs view: label -> key function (None values sort last).
SORT_KEYS: dict[str, Callable[[RunRow], Any]] = {
    "config": lambda r: (r.experiment, r.dataset, r.model, r.loss, r.width, r.epochs, r.seed),
    "status": lambda r: (_STATUS_ORDER.get(r.status, 99), r.experiment, r.loss, r.width, r.seed),
    "loss": lambda r: (r.loss, r.experiment, r.width, r.seed),
    "progress": lambda r: r.progress,
    "nc1": lambda r: r.nc1,
    "test_acc": lambda r: r.test_acc,
    "started": lambda r: r.started_at,
}


def sort_rows(rows: Iterable[RunRow], key: str = "config", reverse: bool = False) -> list[RunRow]:
    """Rows ordered by a `SORT_KEYS` key; rows whose key is None (or NaN) go last either way."""
    fn = SORT_KEYS[key]
    have, missing = [], []
    for row in rows:
        k = fn(row)
        (missing if k is None or (isinstance(k, float) and math.isnan(k)) else have).append((k, row))
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


def with_status(row: RunRow, status: str) -> RunRow:
    """A copy of `row` with another status (for optimistic updates after a control action)."""
    return replace(row, status=status)
