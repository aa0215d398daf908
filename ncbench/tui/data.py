"""What the TUI reads from the database: the polled runs, one run's stored row and metric history.

The TUI polls the database about once a second. Each poll opens the file read-only
(`ncbench.store.read_connection`, which retries while the writer holds it), runs a few queries and
closes it again, so the `ncbench run` manager that opens-writes-closes the file every second is
never held up. The queries are shaped for many runs:

* `RunsReader` — the runs of the listing (`ncbench.listing`, the same rows and the same "latest
  metrics" as `ncbench status`), read incrementally: one query for the runs table, then the
  latest metrics of only the runs whose row changed, never one query per run;
* `fetch_series` — the metric rows of one run after the last epoch already held (so a run detail
  view only fetches new evaluations);
* comparisons go through `ncbench.report` (one implementation shared with `ncbench report`).

`RunSeries` holds a run's metric history, grown in place. No Textual, no torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ncbench.lifecycle import RUNNING
from ncbench.listing import (
    STATUS_METRICS, RunRow, declared_rows, latest_metrics, metrics_at, read_run_records,
    stored_row,
)
from ncbench.store import query_runs

__all__ = ["RunSeries", "RunsReader", "fetch_run_detail", "fetch_series", "declared_runs"]


class RunsReader:
    """The listing's stored runs, read incrementally: what the app calls on every poll.

    Each poll reads the `runs` table (`ncbench.listing.read_run_records`, one small query) and
    compares each run's record with the previous poll's; the store changes a run's record
    (`last_epoch`, `heartbeat_at`, `status` …) whenever it ingests that run's events. For the
    changed runs it reads the metrics recorded at their `last_epoch` (`listing.metrics_at`, a
    lookup on the metrics' primary key, cheap for any number of runs) — the latest values when
    there are any. A metric not recorded there (a heartbeat ran ahead of the evaluations) keeps
    its previous value and the run is marked stale; stale runs are settled by a full read
    (`listing.latest_metrics` over every run) at most every `stale_every` polls, and everything
    is re-read every `full_every` polls and on the first (to catch edits made outside the
    store). Rows are built by `listing.stored_row`, so a settled poll returns exactly
    `listing.stored_rows`. Unchanged runs keep their `RunRow` object, so the view can skip them
    by identity. `listed`: the run ids the config declares (each row's `listed` flag).

    Per-attempt times: the executor stores a run as `running` with its new `attempt` when it
    launches the worker, and the worker's `start` event (seconds later) brings the attempt's
    `started_at`. Until then the row still holds the previous attempt's `started_at`; a row
    whose attempt went up while its `started_at` stayed the one seen with the lower attempt is
    returned with `started_at=None` — "starting" (`ncbench.tui.rows.is_starting`), not the
    previous attempt's elapsed time.
    """

    def __init__(self, experiments: Iterable[str] | None = None, *, full_every: int = 60,
                 stale_every: int = 5):
        self.experiments = list(experiments or [])
        self.full_every = full_every
        self.stale_every = stale_every
        self.listed: frozenset[str] = frozenset()
        self.polls = 0
        self.last_changed = 0  # runs whose row changed in the last poll
        self.last_full = False  # whether the last poll re-read every run's latest metrics
        self._since_full = 0
        self._stale: set[str] = set()
        self._sig: dict[str, dict[str, Any]] = {}
        self._rows: dict[str, RunRow] = {}
        self._starts: dict[str, tuple[int, Any]] = {}  # run id -> (attempt, its started_at)

    def _this_attempt(self, row: RunRow) -> RunRow:
        """`row`, without a `started_at` that belongs to an earlier attempt (class docstring)."""
        seen = self._starts.get(row.run_id)
        if (row.status == RUNNING and seen is not None and seen[0] < row.attempt
                and row.started_at is not None and row.started_at == seen[1]):
            return replace(row, started_at=None)
        self._starts[row.run_id] = (row.attempt, row.started_at)
        return row

    def read(self, con: Any) -> dict[str, RunRow]:
        """This poll's stored runs, keyed by run id (in the listing's order)."""
        sigs = {r["run_id"]: r for r in read_run_records(con, self.experiments or None)}
        changed = [rid for rid, r in sigs.items() if self._sig.get(rid) != r]
        self._stale &= set(sigs)
        full = (self.polls % self.full_every == 0 or len(changed) > 200
                or bool(self._stale and self._since_full >= self.stale_every))
        self.polls += 1
        if full:
            latest = latest_metrics(con, STATUS_METRICS)
            self._stale.clear()
            self._since_full = 0
            update = list(sigs)
        else:
            self._since_full += 1
            latest = metrics_at(con, {rid: sigs[rid]["last_epoch"] for rid in changed
                                      if sigs[rid]["last_epoch"] is not None}, STATUS_METRICS)
            update = changed
        for rid in update:
            values = latest.get(rid, {})
            old = self._rows.get(rid)
            missing = [m for m in STATUS_METRICS if m not in values]
            if not full and missing and sigs[rid]["last_epoch"] is not None:
                # not recorded at last_epoch: keep the last values seen until a full read
                values = {**{m: old.field(m) if old else None for m in missing}, **values}
                self._stale.add(rid)
            new = self._this_attempt(stored_row(sigs[rid], values, listed=rid in self.listed))
            self._rows[rid] = old if old == new else new
        for rid in set(self._rows) - set(sigs):
            del self._rows[rid]
        for rid, row in self._rows.items():  # the config's declarations changed
            if row.listed != (rid in self.listed):
                self._rows[rid] = replace(row, listed=rid in self.listed)
        self._sig = sigs
        self.last_changed, self.last_full = len(changed), full
        return {rid: self._rows[rid] for rid in sigs}


def fetch_run_detail(con: Any, run_id: str) -> dict[str, Any] | None:
    """The run's full `runs` row as a dict, with `config` parsed from JSON; None if unknown."""
    rows = query_runs(con, run_ids=[run_id])
    return rows[0] if rows else None


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


# -- runs declared in the config ------------------------------------------------------------

def declared_runs(config_path: Path | str, experiments: Iterable[str] | None = None,
                  selection: dict[str, set] | None = None) -> tuple[list[RunRow], frozenset[str]]:
    """The runs `experiments.toml` declares (optionally only these experiments) that `--only`
    `selection` keeps (`ncbench.selection`), as the listing's queued, not-stored rows
    (`ncbench.listing.declared_rows`), and the ids of every declared run (selected or not).
    Uses `ncbench.config` (validation errors propagate as ConfigError)."""
    from ncbench.config import expand, load_config
    from ncbench.selection import select_specs

    cfg = load_config(Path(config_path))
    specs = expand(cfg, list(experiments or []) or None)
    return (declared_rows(select_specs(specs, selection or {})),
            frozenset(s.run_id for s in specs))
