"""The report's data structures: cell statistics, accuracy and NC blocks, curves, and block labels.

Plain dataclasses, computed by `ncbench.report.aggregate` and drawn by
`ncbench.report.renderers`, `ncbench.report.figures` and the TUI's compare view. A block is one
experiment plus the values of the keys that are neither rows, cols, loss nor seed but still
distinguish runs of the same loss/row/col/seed (dataset and model always: `ALWAYS_BLOCK_KEYS`);
its `label` names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ncbench.report.stats import DEFAULT_MARGIN_PP, DEFAULT_REFERENCE, Friedman, MeanCI, Paired

# Metrics of the NC table: `results` column -> label.
NC_METRICS: dict[str, str] = {
    "final_nc1": "NC1",
    "final_nc2": "NC2",
    "final_nc3": "NC3",
    "final_nc4": "NC4",
    "final_test_nc1": "test NC1",
}
# The `results` column of the accuracy table by default (the paper's Figure 3).
ACCURACY_METRIC = "test_acc_at_best_val"
# What a missing value or cell is shown as.
MISSING = "—"
# The unit of a percent metric's stored values (json's `unit`); other metrics have none.
FRACTION = "fraction"
# Keys shown for every block (and in its label) even when they do not vary.
ALWAYS_BLOCK_KEYS = ("dataset", "model")


@dataclass(frozen=True)
class CellStats:
    """Mean and sample std (ddof=1; None for one seed) over seeds of one metric in one cell."""

    mean: float
    std: float | None
    n_seeds: int


@dataclass(frozen=True)
class LossComparison:
    """One loss in one cell: its mean with the t interval over seeds (`ci`, None when it has no
    value there) and its paired difference to the reference loss (`vs_reference`, None for the
    reference itself and where the reference has no value in the cell)."""

    loss: str
    ci: MeanCI | None
    vs_reference: Paired | None


@dataclass(frozen=True)
class CellComparison:
    """The statistics of one cell (row value, col value) of an accuracy block: every loss
    against the reference, and the Friedman test of "all losses equal"."""

    row_value: Any
    col_value: Any
    losses: list[LossComparison]
    friedman: Friedman

    def get(self, loss: str) -> LossComparison | None:
        """The statistics of `loss` here; None when it has no value in this cell."""
        return next((c for c in self.losses if c.loss == loss), None)


@dataclass
class AccuracyBlock:
    """One experiment/dataset/model (plus other distinguishing keys) as a rows × cols grid.

    ``cells[loss][i][j]`` holds the stats of ``metric`` at ``row_values[i]``, ``col_values[j]``
    (None when no counted run has a finite value there). ``spread[i][j]`` is max − min of the
    cell means across losses, None where fewer than two losses have a value.
    ``comparisons`` holds one `CellComparison` per cell (rows × cols, row-major) against the
    loss ``reference`` with the equivalence margin ``margin`` (in the metric's units: a
    fraction for the accuracies, `is_percent`).
    """

    experiment: str
    fixed: dict[str, Any]
    row_key: str
    col_key: str
    metric: str
    row_values: list[Any]
    col_values: list[Any]
    losses: list[str]
    cells: dict[str, list[list[CellStats | None]]]
    spread: list[list[float | None]]
    n_runs: int = 0
    n_excluded: int = 0
    reference: str = DEFAULT_REFERENCE
    margin: float | None = DEFAULT_MARGIN_PP / 100  # None: no equivalence test
    comparisons: list[CellComparison] = field(default_factory=list)

    @property
    def label(self) -> str:
        """"experiment · digits / mlp (lr=0.1)" — what the block holds, for titles."""
        return block_label(self.experiment, self.fixed)

    def comparison(self, i: int, j: int) -> CellComparison | None:
        """The statistics of the cell at ``row_values[i]``, ``col_values[j]`` (None if absent)."""
        k = i * len(self.col_values) + j
        return self.comparisons[k] if 0 <= k < len(self.comparisons) else None


@dataclass
class NCRow:
    """Final NC metrics of one loss in one configuration (row value, col value) of a block."""

    row_value: Any
    col_value: Any
    loss: str
    stats: dict[str, CellStats | None]


@dataclass
class NCBlock:
    """The NC table of one block: one NCRow per configuration and loss (rows × cols × losses)."""

    experiment: str
    fixed: dict[str, Any]
    row_key: str
    col_key: str
    metrics: list[str]
    rows: list[NCRow]
    n_runs: int = 0
    n_excluded: int = 0

    @property
    def label(self) -> str:
        return block_label(self.experiment, self.fixed)


class Curve(NamedTuple):
    """A metric against epoch for one group (loss), over the seeds that have it at each epoch."""

    epochs: list[int]
    mean: list[float]
    min: list[float]
    max: list[float]
    n_seeds: list[int]


@dataclass
class Report:
    """Everything `ncbench report` prints: accuracy blocks and NC blocks."""

    accuracy: list[AccuracyBlock] = field(default_factory=list)
    nc: list[NCBlock] = field(default_factory=list)
    include_unfinished: bool = False


def is_percent(metric: str) -> bool:
    """Whether a `results` column is an accuracy — a fraction in [0, 1] that the human formats
    show as percent (differences and `--margin` in percentage points): exactly the names ending
    in ``_acc`` or ``_acc_at_best_val`` (`best_val_acc`, `test_acc_at_best_val`,
    `final_train_acc`, `final_val_acc`, `final_test_acc`). Every other metric (NC1, CDNV,
    equinorm, losses, ...) is shown as stored, in its own units. The one owner of this rule."""
    return metric.endswith("_acc") or metric.endswith("_acc_at_best_val")


def metric_unit(metric: str) -> str | None:
    """`FRACTION` for a percent metric (`is_percent`), None (the metric's own units) otherwise."""
    return FRACTION if is_percent(metric) else None


def fmt_num(x: float, *, sign: bool = False) -> str:
    """An NC value with 3 significant digits, scientific outside [1e-3, 1e4); `sign`: "+0.003"."""
    s = "+" if sign else ""
    x = x + 0.0  # no "-0"
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:{s}.3g}"
    return f"{x:{s}.2e}"


def fmt_key(v: Any) -> str:
    """A swept value for display: 2.0 -> "2", 0.25 -> "0.25", None -> "—"."""
    if v is None:
        return MISSING
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def block_label(experiment: str, fixed: Mapping[str, Any]) -> str:
    """"demo · digits / mlp (lr=0.1)"."""
    main = [fmt_key(fixed[k]) for k in ALWAYS_BLOCK_KEYS if k in fixed]
    rest = [f"{k}={fmt_key(v)}" for k, v in fixed.items() if k not in ALWAYS_BLOCK_KEYS]
    label = experiment + (" · " + " / ".join(main) if main else "")
    return label + (f" ({', '.join(rest)})" if rest else "")
