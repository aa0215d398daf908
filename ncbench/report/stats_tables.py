"""The report's statistics as text: per block, each loss's 95 % CI, paired difference and verdict.

Draws the `CellComparison`s of an `AccuracyBlock` (computed by `ncbench.report.stats` through
`ncbench.report.aggregate`); computes nothing. Like the accuracy table the human formats show
percent for the accuracies (differences and the margin in percentage points) and any other
metric as stored, 3 significant digits, in its own units (`blocks.is_percent` decides). `stats_grid` gives single-line rows
(md, latex, the TUI's compare pane); `stats_rich_table` the terminal form, which fits 80 columns
by putting each interval on a second line under its mean.
"""

from __future__ import annotations

from typing import Any

from ncbench.report.blocks import (MISSING, AccuracyBlock, CellComparison, LossComparison, fmt_key,
                                   fmt_num, is_percent)
from ncbench.report.stats import ALPHA, MIN_VERDICT_SEEDS, TOO_FEW, Friedman, MeanCI, Paired

REFERENCE_ROW = "reference"
FRIEDMAN_ROW = "all"


def fmt_p(p: float | None) -> str:
    """A p-value to 2 significant digits ("0.23", "0.047"), more where rounding would cross
    0.05 ("0.0496", not "0.05"); "<0.001"; "—" when not computed or undefined."""
    if p is None:
        return MISSING
    if p < 0.001:
        return "<0.001"
    for digits in (2, 3, 4, 6):
        s = f"{p:.{digits}g}"
        if (float(s) < ALPHA) == (p < ALPHA) and float(s) != ALPHA:
            return s
    return s


def _pct(x: float, percent: bool = True) -> str:
    """A mean: percent with one decimal ("97.2"), else `fmt_num` ("0.0123")."""
    return f"{100 * x + 0.0:.1f}" if percent else fmt_num(x)


def fmt_ci(low: float | None, high: float | None, *, percent: bool = True) -> str:
    """A 95 % interval in percent: "[95.5, 98.9]" (not `percent`: "[0.0134, 0.0176]"); "—" when
    there is none (n < 2)."""
    if low is None or high is None:
        return MISSING
    return f"[{_pct(low, percent)}, {_pct(high, percent)}]"


def fmt_diff(x: float | None, *, percent: bool = True) -> str:
    """A difference in percentage points with its sign: "+0.7", "-1.2" (not `percent`: in the
    metric's units, "+0.003")."""
    if x is None:
        return MISSING
    return f"{100 * x + 0.0:+.1f}" if percent else fmt_num(x, sign=True)


def fmt_margin(margin: float | None, *, percent: bool = True) -> str:
    """The equivalence margin in percentage points: "±0.5 pp" (not `percent`: "±0.01"; None:
    "a margin (none given: --margin)")."""
    if margin is None:
        return "a margin (none given: --margin)"
    return f"±{100 * margin:g} pp" if percent else f"±{margin:g}"


def verdict_word(vs: Paired, *, short: bool = False) -> str:
    """"equal", "different", "inconclusive", "too few seeds" ("too few" when `short`)."""
    return "too few" if short and vs.verdict == TOO_FEW else vs.verdict


def friedman_word(f: Friedman) -> str:
    """"not all equal" (p < alpha), "not rejected", or why it was not computed."""
    if f.p is None:
        return f.note or MISSING
    return "not all equal" if f.p < ALPHA else "not rejected"


def has_reference(block: AccuracyBlock) -> bool:
    """Whether the block's reference loss has runs in it (else no paired columns)."""
    return block.reference in block.losses


def stats_title(block: AccuracyBlock) -> str:
    ref = f" vs {block.reference}" if has_reference(block) else ""
    unit = " (%)" if is_percent(block.metric) else f" ({block.metric})"
    return f"{block.label} — statistics over seeds{ref}{unit}"


def stats_legend(block: AccuracyBlock) -> str:
    """What the columns and verdicts of the block's statistics table mean."""
    percent = is_percent(block.metric)
    if not has_reference(block):
        units = " in percent" if percent else ""
        return (f"mean [95 % t interval] over seeds{units}, (n) = seeds; the reference loss "
                f"'{block.reference}' has no runs here, so no paired comparison (--reference "
                f"picks another); all = Friedman test of all losses equal over the (n) seeds "
                f"every loss has")
    units, d_units = ((", percent", ", percentage points") if percent
                      else (", the metric's own units", ", same units"))
    return (f"mean [95 % t interval] over seeds{units}; Δ = loss − {block.reference} paired by "
            f"seed [95 % CI]{d_units}; (n) = seeds (for Δ: seeds shared with "
            f"{block.reference}); p = paired t-test; TOST p = equivalence within "
            f"{fmt_margin(block.margin, percent=percent)}; verdict: equal if TOST p < {ALPHA}, else different if "
            f"p < {ALPHA}, else inconclusive; too few = under {MIN_VERDICT_SEEDS} shared seeds, "
            f"no verdict; all = Friedman test of all losses equal over the (n) seeds every loss "
            f"has")


def stats_legend_pane(block: AccuracyBlock) -> str:
    """The short legend of the TUI's compare pane."""
    if not has_reference(block):
        return f"mean [95% CI]; no {block.reference} runs: no paired comparison"
    percent = is_percent(block.metric)
    return (f"mean [95% CI]; Δ = loss − {block.reference} paired by seed{', pp' if percent else ''}"
            f"; equal: TOST within {fmt_margin(block.margin, percent=percent)}; n = shared seeds, < {MIN_VERDICT_SEEDS}: no "
            f"verdict; all: Friedman")


def stats_header(block: AccuracyBlock) -> list[str]:
    header = [block.row_key, block.col_key, "loss", "n", "mean [95% CI]"]
    if has_reference(block):
        header += [f"Δ vs {block.reference} [95% CI]", "p", "TOST p", "verdict"]
    else:
        header += ["p", "verdict"]
    return header


def _ci_cell(ci: MeanCI, percent: bool) -> str:
    mean = _pct(ci.mean, percent)
    return f"{mean} {fmt_ci(ci.low, ci.high, percent=percent)}" if ci.low is not None else mean


def _loss_line(block: AccuracyBlock, item: LossComparison) -> list[str]:
    percent = is_percent(block.metric)
    line = [item.loss, str(item.ci.n), _ci_cell(item.ci, percent)]
    if not has_reference(block):
        return line + ["", ""]
    vs = item.vs_reference
    if item.loss == block.reference:
        return line + ["", "", "", REFERENCE_ROW]
    if vs is None:
        return line + [MISSING, MISSING, MISSING, f"no {block.reference} here"]
    diff = fmt_diff(vs.mean, percent=percent) + (
        "" if vs.low is None else f" {fmt_ci(vs.low, vs.high, percent=percent)}")
    return line + [diff, fmt_p(vs.p), fmt_p(vs.tost_p), f"{verdict_word(vs)} (n = {vs.n})"]


def _friedman_line(block: AccuracyBlock, f: Friedman) -> list[str]:
    stat = MISSING if f.statistic is None else f"χ² = {f.statistic:.2f}"
    line = [f"{FRIEDMAN_ROW} ({f.n_losses})", str(f.n_blocks), f"Friedman {stat}"]
    if not has_reference(block):
        return line + [fmt_p(f.p), friedman_word(f)]
    return line + ["", fmt_p(f.p), "", friedman_word(f)]


def stats_grid(block: AccuracyBlock) -> tuple[list[str], list[list[str]]]:
    """Header and single-line text rows: per cell, one row per loss with a value there, then
    the Friedman row ("all (k)", n = shared seeds)."""
    lines = []
    for cell in block.comparisons:
        keys = [fmt_key(cell.row_value), fmt_key(cell.col_value)]
        for item in cell.losses:
            lines.append(keys + _loss_line(block, item))
        if cell.losses:
            lines.append(keys + _friedman_line(block, cell.friedman))
    return stats_header(block), lines


def _compact_cells(block: AccuracyBlock, cell: CellComparison) -> list[list[str]]:
    """The terminal form of one cell: "82.4 (3)" over its interval, the verdict without n."""
    keys = [fmt_key(cell.row_value), fmt_key(cell.col_value)]
    ref = has_reference(block)
    pc = is_percent(block.metric)
    out = []
    for item in cell.losses:
        ci = item.ci
        row = keys + [item.loss, f"{_pct(ci.mean, pc)} ({ci.n})"
                      + ("" if ci.low is None else "\n" + fmt_ci(ci.low, ci.high, percent=pc))]
        vs = item.vs_reference
        if not ref:
            row += [""]
        elif item.loss == block.reference:
            row += ["", "", "", REFERENCE_ROW]
        elif vs is None:
            row += [MISSING, MISSING, MISSING, f"no {block.reference} here"]
        else:
            row += [f"{fmt_diff(vs.mean, percent=pc)} ({vs.n})"
                    + ("" if vs.low is None else "\n" + fmt_ci(vs.low, vs.high, percent=pc)),
                    fmt_p(vs.p), fmt_p(vs.tost_p), verdict_word(vs, short=True)]
        out.append(row)
        keys = ["", ""]
    if cell.losses:
        f = cell.friedman
        stat = "" if f.statistic is None else f"\nχ²={f.statistic:.2f}"
        if ref:
            out.append(keys + [FRIEDMAN_ROW, f"({f.n_blocks})", f"Friedman{stat}", fmt_p(f.p),
                               "", friedman_word(f)])
        else:
            out.append(keys + [FRIEDMAN_ROW, f"Friedman ({f.n_blocks}){stat}",
                               f"{fmt_p(f.p)} {friedman_word(f)}"])
    return out


def stats_rich_table(block: AccuracyBlock, *, pane: bool = False):
    """One block's statistics as a rich Table titled `stats_title`.

    Default (`ncbench report`): fits 80 columns — each mean / difference with its n, the 95 %
    interval on the line below, the legend as caption, a rule after each cell. ``pane=True``
    (the TUI's compare view): the single-line rows of `stats_grid`, the short legend
    `stats_legend_pane`, no rules."""
    from rich import box
    from rich.table import Table

    if pane:
        header, lines = stats_grid(block)
        t = Table(title=stats_title(block), title_justify="left",
                  caption=stats_legend_pane(block), caption_justify="left")
        for k, h in enumerate(header):
            t.add_column(h, justify="left" if k < 3 or h == "verdict" else "right", no_wrap=True)
        for line in lines:
            t.add_row(*line)
        return t
    ref = has_reference(block)
    header = [block.row_key, block.col_key, "loss", "mean (n)"]
    header += ([f"Δ vs {block.reference} (n)", "p", "TOST p", "verdict"] if ref
               else ["Friedman p"])
    t = Table(title=stats_title(block), title_justify="left", caption=stats_legend(block),
              caption_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
              padding=(0, 1, 0, 0))
    cells = [_compact_cells(block, c) for c in block.comparisons if c.losses]
    rows = [r for c in cells for r in c]
    # a metric in its own units has longer numbers ("[0.00287, 0.00313]"): rather than crop
    # at 80 columns, its intervals and verdicts may wrap
    wraps = set() if is_percent(block.metric) else {3, 4, len(header) - 1}
    for k, h in enumerate(header):
        widest = max([len(h)] + [len(part) for row in rows for part in row[k].split("\n")])
        t.add_column(h, justify="left" if k < 3 or k == len(header) - 1 else "right",
                     no_wrap=k not in wraps, min_width=None if k in wraps else widest)
    for c_idx, c in enumerate(cells):
        for r_idx, row in enumerate(c):
            t.add_row(*row, end_section=r_idx == len(c) - 1 and c_idx < len(cells) - 1)
    return t


def stats_csv_fields(block: AccuracyBlock, i: int, j: int, loss: str) -> dict[str, Any]:
    """The statistics columns of one accuracy csv record (fractions; "" where none)."""
    def num(x: float | None) -> str:
        return "" if x is None else repr(float(x))

    cell = block.comparison(i, j)
    item = cell.get(loss) if cell is not None else None
    out = dict(ci_low="", ci_high="", reference=block.reference if has_reference(block) else "",
               n_pairs="", diff="", diff_low="", diff_high="", p_paired="", p_tost="",
               margin=num(block.margin), verdict="", friedman_n="", friedman_p="")
    if cell is not None:
        out.update(friedman_n=str(cell.friedman.n_blocks), friedman_p=num(cell.friedman.p))
    if item is None:
        return out
    out.update(ci_low=num(item.ci.low), ci_high=num(item.ci.high))
    vs = item.vs_reference
    if loss == block.reference and has_reference(block):
        out.update(verdict=REFERENCE_ROW)
    elif vs is not None:
        out.update(n_pairs=str(vs.n), diff=num(vs.mean), diff_low=num(vs.low),
                   diff_high=num(vs.high), p_paired=num(vs.p), p_tost=num(vs.tost_p),
                   verdict=vs.verdict)
    return out


STATS_CSV_COLUMNS = ("ci_low", "ci_high", "reference", "n_pairs", "diff", "diff_low", "diff_high",
                     "p_paired", "p_tost", "margin", "verdict", "friedman_n", "friedman_p")

