"""The paper's Figures 1–3 for any experiment in an ncbench database (matplotlib, Agg backend).

- Fig. 1 (`figure_nc`): NC1 (log scale), NC2, NC3 (of the centred classifier, as docs/metrics.md
  recommends) against epoch, one line per loss (mean over seeds) with a min–max band.
- Fig. 2 (`figure_accuracy`): train, validation and test accuracy (%) against epoch per loss.
- Fig. 3 (`figure_heatmap`): heatmaps over two swept keys (default width × epochs) of the test
  accuracy at the best-validation epoch per loss, and of the spread (max − min) across losses.
- Fig. 4 (`figure_geometry`, Papyan et al.'s panels): equinorm, equiangularity and maximal-angle
  deviation of the class means, and self-duality, against epoch, one line per loss — only for
  experiments whose runs stored these measures (`nc_extra`, docs/metrics.md).

All data comes from the report (`ncbench.report.aggregate`: curves, configurations,
accuracy_table); the figures hold no statistics of their own. Importing this module imports
matplotlib (`ncbench.report` itself does not). Figures are built with `matplotlib.figure.Figure`
(no pyplot global state), so the functions can be called from tests and the TUI alike. Empty
cells and experiments with no finished runs give a figure that says so instead of an exception.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ncbench.report.aggregate import (accuracy_table, configurations, curves_many,  # noqa: E402
                                      in_configuration)
from ncbench.report.blocks import ACCURACY_METRIC, MISSING, fmt_key  # noqa: E402
from ncbench.report.query import (check_where, columns, is_counted, list_experiments,  # noqa: E402
                                  run_value, select_runs)
from ncbench.report.renderers import metric_title  # noqa: E402

FIG1_METRICS = (
    ("nc1", r"NC$_1$ = tr($\Sigma_W\Sigma_B^\dagger$)/K (log scale)", "NC1: within-class variability collapse"),
    ("nc2_centered", r"NC$_2$ = $\|WW^\top/\|WW^\top\|_F - \mathrm{ETF}\|_F$ (centred W)",
     "NC2 (centred W): convergence to simplex ETF"),
    ("nc3_centered", r"NC$_3$ = $\|W\bar{H}/\|W\bar{H}\|_F - \mathrm{ETF}\|_F$ (centred W)",
     "NC3 (centred W): convergence to self-duality"),
)
#: Fig. 1 plots the centred NC2/NC3 (docs/metrics.md: the ones comparable with the paper's
#: figures); a database without them (older runs) falls back to the uncentred metric, labelled.
FIG1_FALLBACK = {"nc2_centered": "nc2", "nc3_centered": "nc3"}
#: At most this many x ticks; they always fall on evaluated epochs.
MAX_XTICKS = 10
FIG2_METRICS = (
    ("train_acc", "training accuracy (%)", "Training accuracy"),
    ("val_acc", "validation accuracy (%)", "Validation accuracy"),
    ("test_acc", "test accuracy (%)", "Test accuracy"),
)
FIG4_METRICS = (
    ("equinorm_means", r"std/mean of $\|\mu_k - h_G\|$", "Equinorm of class means"),
    ("equiangular_means", r"std of $\cos(\mu_k - h_G, \mu_{k'} - h_G)$", "Equiangularity"),
    ("maxangle_means", r"mean $|\cos + 1/(K-1)|$", "Maximal-angle deviation"),
    ("self_duality", r"$\|W/\|W\|_F - \bar{M}^\top/\|\bar{M}\|_F\|_F$", "Self-duality distance"),
)
FIGURE_FORMATS = ("png", "pdf")


def _config_text(select: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={fmt_key(v)}" for k, v in select.items())


def _run_context(con, experiment: str, where: str | None, include_unfinished: bool,
                 select: Mapping[str, Any] | None) -> tuple[dict[str, Any], str]:
    """The configuration the curves use and a subtitle naming dataset/model/config."""
    if select is None:
        configs = configurations(con, experiment, where, include_unfinished=include_unfinished)
        select = configs[-1] if configs else {}
    runs = [r for r in select_runs(con, [experiment], where)
            if is_counted(r, include_unfinished) and in_configuration(r, select)]
    parts = []
    for key in ("dataset", "model", "width", "epochs"):
        vals = sorted({fmt_key(run_value(r, key)) for r in runs})
        if len(vals) == 1 and key not in select:
            parts.append(f"{key}={vals[0]}")
    extra = _config_text(select)
    text = ", ".join(parts + ([extra] if extra else []))
    return dict(select), text


def _line_figure(con, experiment: str, panels, *, where: str | None, select, include_unfinished: bool,
                 title: str, percent: bool, log_first: bool) -> Figure:
    select, context = _run_context(con, experiment, where, include_unfinished, select)
    fig = Figure(figsize=(4.6 * len(panels), 3.8), dpi=100, layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    seeds_seen: set[int] = set()
    any_data = False
    wanted = [metric for metric, _, _ in panels]
    wanted += [FIG1_FALLBACK[m] for m in wanted if m in FIG1_FALLBACK]
    every = curves_many(con, experiment, wanted, where=where, select=select,
                        include_unfinished=include_unfinished)
    for k, (ax, (metric, ylabel, panel_title)) in enumerate(zip(axes, panels)):
        data = every[metric]
        if metric in FIG1_FALLBACK and not _has_values(data) and every[FIG1_FALLBACK[metric]]:
            data = every[FIG1_FALLBACK[metric]]  # no centred values stored: the plain metric
            ylabel = ylabel.replace("(centred W)", "(uncentred W)")
            panel_title = panel_title.replace("(centred W)", "(uncentred W)")
        log = log_first and k == 0
        for idx, (loss, c) in enumerate(data.items()):
            x = np.asarray(c.epochs, dtype=float)
            scale = 100.0 if percent else 1.0
            mean = np.asarray(c.mean, dtype=float) * scale
            lo = np.asarray(c.min, dtype=float) * scale
            hi = np.asarray(c.max, dtype=float) * scale
            if log:  # log axes: non-positive values (NC1 = 0 at a degenerate eval) are masked
                mean = np.where(mean > 0, mean, np.nan)
                lo = np.where(lo > 0, lo, np.nan)
                hi = np.where(hi > 0, hi, np.nan)
            color = f"C{idx % 10}"
            seeds_seen.update(c.n_seeds)
            # distinct marker and dash per loss, so overlapping curves stay visible
            (line,) = ax.plot(x, mean, color=color, label=str(loss),
                              linestyle=("-", "--", "-.", ":")[idx % 4],
                              marker="osD^v<>p"[idx % 8] if len(x) < 25 else None, markersize=4)
            if len(x):
                any_data = any_data or bool(np.isfinite(mean).any())
                ax.fill_between(x, np.where(np.isfinite(lo), lo, mean), np.where(np.isfinite(hi), hi, mean),
                                color=color, alpha=0.2, linewidth=0)
        if log:
            finite = [ln.get_ydata() for ln in ax.get_lines()]
            if any(np.isfinite(np.asarray(y, dtype=float)).any() for y in finite):
                ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_xticks(_epoch_ticks(data))
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title, fontsize="medium")  # long titles must not run into the next panel
        ax.grid(True, alpha=0.3)
        if not data:
            ax.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=ax.transAxes)
    if any(ax.get_lines() for ax in axes):
        axes[0].legend(title="loss", fontsize="small")
    n = (f"{min(seeds_seen)}–{max(seeds_seen)}" if len(seeds_seen) > 1 else str(next(iter(seeds_seen))))\
        if seeds_seen else "0"
    fig.suptitle(f"{title} — {experiment}" + (f" ({context})" if context else "")
                 + f"\nmean over seeds (n = {n}), band = min–max")
    return fig


def _has_values(data: Mapping[Any, Any]) -> bool:
    """Whether any curve of `data` ({group: Curve}) has a finite mean."""
    return any(math.isfinite(v) for c in data.values() for v in c.mean if v is not None)


#: Tick spacings tried, in epochs (1-2-2.5-5 × 10^k).
_NICE_STEPS = tuple(m * 10 ** k for k in range(7) for m in (1, 2, 2.5, 5) if m * 10 ** k >= 1)


def _epoch_ticks(data: Mapping[Any, Any]) -> list[int]:
    """X ticks on evaluated epochs only: all of them up to MAX_XTICKS, else the evaluated epochs
    that are multiples of the smallest round spacing (1, 2, 2.5, 5 × 10^k) giving at most
    MAX_XTICKS ticks — one that also ticks the last epoch when there is one (0, 25, …, 125 for
    evaluations every 5 epochs) —, else every k-th evaluation counted back from the last. One
    evaluation gives one tick."""
    epochs = sorted({int(e) for c in data.values() for e in c.epochs})
    if len(epochs) <= MAX_XTICKS:
        return epochs
    fallback = None
    for step in _NICE_STEPS:
        ticks = [e for e in epochs if e % step == 0]
        if 2 <= len(ticks) <= MAX_XTICKS:
            if ticks[-1] == epochs[-1]:
                return ticks
            fallback = fallback or ticks
    if fallback is not None:
        return fallback
    step = math.ceil(len(epochs) / MAX_XTICKS)
    return epochs[::-1][::step][::-1]  # counted back from the last evaluation


def figure_nc(con, experiment: str, where: str | None = None, *, select: Mapping[str, Any] | None = None,
              include_unfinished: bool = False) -> Figure:
    """Fig. 1: NC1 (log), NC2 and NC3 of the centred W (the uncentred ones, labelled so, when
    none are stored) against epoch, one line per loss with a min–max band."""
    return _line_figure(con, experiment, FIG1_METRICS, where=where, select=select,
                        include_unfinished=include_unfinished,
                        title="Neural collapse metrics during training", percent=False, log_first=True)


def figure_accuracy(con, experiment: str, where: str | None = None, *,
                    select: Mapping[str, Any] | None = None, include_unfinished: bool = False) -> Figure:
    """Fig. 2: train, validation and test accuracy (%) against epoch, one line per loss."""
    return _line_figure(con, experiment, FIG2_METRICS, where=where, select=select,
                        include_unfinished=include_unfinished,
                        title="Accuracy during training", percent=True, log_first=False)


def figure_geometry(con, experiment: str, where: str | None = None, *,
                    select: Mapping[str, Any] | None = None, include_unfinished: bool = False) -> Figure:
    """Fig. 4: equinorm, equiangularity, maximal-angle deviation (of the centred class means)
    and self-duality against epoch, one line per loss (mean over seeds, min–max band)."""
    return _line_figure(con, experiment, FIG4_METRICS, where=where, select=select,
                        include_unfinished=include_unfinished,
                        title="Geometry of the collapse", percent=False, log_first=False)


def _has_geometry(con, experiment: str, where: str | None, include_unfinished: bool) -> bool:
    """Whether the experiment's runs stored any Fig. 4 measure (a database of an older schema
    has no such columns)."""
    metrics = [m for m, _, _ in FIG4_METRICS]
    if not set(metrics) <= set(columns(con, "epochs")):
        return False
    every = curves_many(con, experiment, metrics, where=where, include_unfinished=include_unfinished)
    return any(_has_values(data) for data in every.values())


def _heat(ax, grid: np.ndarray, row_labels, col_labels, *, vmin, vmax, cmap: str, fmt) -> Any:
    cm = matplotlib.colormaps[cmap].with_extremes(bad="#dddddd")  # missing cells: grey
    masked = np.ma.masked_invalid(grid)
    im = ax.imshow(masked, cmap=cm, vmin=vmin, vmax=vmax, aspect="auto", origin="lower")
    ax.set_xticks(range(len(col_labels)), col_labels)
    ax.set_yticks(range(len(row_labels)), row_labels)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            v = grid[i, j]
            text = MISSING if not math.isfinite(v) else fmt(v)
            dark = False
            if math.isfinite(v):  # white text on dark cells (relative luminance of the colour)
                r, g, b, _ = cm(im.norm(v))
                dark = 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5
            ax.text(j, i, text, ha="center", va="center", fontsize="small",
                    color="white" if dark else "black")
    return im


def figure_heatmap(con, experiment: str, rows: str = "width", cols: str = "epochs",
                   where: str | None = None, *, include_unfinished: bool = False,
                   metric: str = ACCURACY_METRIC) -> Figure:
    """Fig. 3: one heatmap per loss of `metric` (%) over rows × cols, plus the spread across
    losses (percentage points); one row of panels per block of the experiment."""
    blocks = accuracy_table(con, [experiment], rows, cols, where,
                                   include_unfinished=include_unfinished, metric=metric)
    n_cols = max((len(b.losses) + 1 for b in blocks), default=1)
    fig = Figure(figsize=(max(3.2 * n_cols, 7), 3.2 * max(1, len(blocks)) + 0.6), dpi=100,
                 layout="constrained")
    axes = fig.subplots(max(1, len(blocks)), n_cols, squeeze=False)
    what = metric_title(metric)
    if not blocks:
        axes[0][0].text(0.5, 0.5, "no runs", ha="center", va="center")
        axes[0][0].set_axis_off()
    for b, row_axes in zip(blocks, axes):
        rl = [fmt_key(v) for v in b.row_values]
        cl = [fmt_key(v) for v in b.col_values]
        grids = {
            loss: np.array([[100 * c.mean if c is not None else np.nan for c in line]
                            for line in b.cells[loss]], dtype=float).reshape(len(rl), len(cl))
            for loss in b.losses
        }
        vals = np.concatenate([g[np.isfinite(g)] for g in grids.values()]) if grids else np.array([])
        vmin, vmax = (float(vals.min()), float(vals.max())) if vals.size else (0.0, 100.0)
        if vmin == vmax:
            vmin, vmax = vmin - 0.5, vmax + 0.5
        im = None
        for ax, loss in zip(row_axes, b.losses):
            im = _heat(ax, grids[loss], rl, cl, vmin=vmin, vmax=vmax, cmap="viridis",
                       fmt=lambda v: f"{v:.1f}")
            ax.set_title(f"{loss}: {b.label}" if len(blocks) > 1 else f"loss = {loss}", fontsize="medium")
            ax.set_xlabel(cols)
            ax.set_ylabel(rows)
        if im is not None:
            fig.colorbar(im, ax=list(row_axes[: len(b.losses)]), label="test accuracy (%)", shrink=0.9)
        spread = np.array([[100 * x if x is not None else np.nan for x in line] for line in b.spread],
                          dtype=float).reshape(len(rl), len(cl))
        sp_ax = row_axes[len(b.losses)]
        fin = spread[np.isfinite(spread)]
        smax = float(fin.max()) if fin.size and fin.max() > 0 else 1.0
        sim = _heat(sp_ax, spread, rl, cl, vmin=0.0, vmax=smax, cmap="magma_r", fmt=lambda v: f"{v:.1f}")
        sp_ax.set_title("spread across losses (max − min)", fontsize="medium")
        sp_ax.set_xlabel(cols)
        sp_ax.set_ylabel(rows)
        fig.colorbar(sim, ax=sp_ax, label="percentage points", shrink=0.9)
        for ax in row_axes[len(b.losses) + 1:]:
            ax.set_axis_off()
    label = blocks[0].label if len(blocks) == 1 else experiment
    fig.suptitle(f"{what.capitalize()} (%, mean over seeds) by {rows} × {cols}\n{label}")
    return fig


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "experiment"


def make_figures(
    con,
    experiments: Sequence[str] | None = None,
    rows: str = "width",
    cols: str = "epochs",
    where: str | None = None,
    *,
    include_unfinished: bool = False,
) -> dict[str, Figure]:
    """Fig. 1–3 (and 4, when stored) of each experiment (all in the database when `experiments`
    is empty), keyed by file stem `<experiment>_fig1_nc`, `_fig2_accuracy`, `_fig3_heatmap`,
    `_fig4_geometry`. All queries happen here, so the caller can close the connection before
    the (slower) rendering."""
    check_where(where)
    names = list(experiments) if experiments else list_experiments(con)
    figs: dict[str, Figure] = {}
    for exp in names:
        stem = _safe_name(exp)
        figs[f"{stem}_fig1_nc"] = figure_nc(con, exp, where, include_unfinished=include_unfinished)
        figs[f"{stem}_fig2_accuracy"] = figure_accuracy(con, exp, where, include_unfinished=include_unfinished)
        figs[f"{stem}_fig3_heatmap"] = figure_heatmap(con, exp, rows, cols, where,
                                                      include_unfinished=include_unfinished)
        if _has_geometry(con, exp, where, include_unfinished):
            figs[f"{stem}_fig4_geometry"] = figure_geometry(con, exp, where,
                                                            include_unfinished=include_unfinished)
    return figs


def save_figures(figs: Mapping[str, Figure], out_dir: str | Path,
                 formats: Sequence[str] = FIGURE_FORMATS) -> list[Path]:
    """Write each figure as `<out_dir>/<stem>.<fmt>`; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for stem, fig in figs.items():
        for fmt in formats:
            path = out / f"{stem}.{fmt}"
            fig.savefig(path, format=fmt)
            written.append(path)
    return written


def write_figures(
    con,
    out_dir: str | Path,
    experiments: Sequence[str] | None = None,
    rows: str = "width",
    cols: str = "epochs",
    where: str | None = None,
    *,
    include_unfinished: bool = False,
    formats: Sequence[str] = FIGURE_FORMATS,
) -> list[Path]:
    """`make_figures` then `save_figures`: `<out_dir>/<experiment>_fig1_nc.<fmt>`, ... ."""
    figs = make_figures(con, experiments, rows, cols, where, include_unfinished=include_unfinished)
    return save_figures(figs, out_dir, formats)
