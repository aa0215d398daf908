"""The report as text: rich tables, markdown, csv, LaTeX and json, with the number formatting.

Renderers take the data of `ncbench.report.blocks` (a `Report`, or one block) and return text or
rich renderables; they compute nothing. The database stores accuracies as fractions in [0, 1]:
json/csv keep fractions, the text formats (table, md, latex) show percent with one decimal
(spread in percentage points). Any other metric of the accuracy table (`--metric final_nc1`;
`blocks.is_percent` decides) is shown as stored, 3 significant digits (`fmt_num`), its spread in
its own units. A missing value is `MISSING`; with one seed a cell shows just the mean (``null``
in json, empty in csv).

`accuracy_rich_table` and `nc_rich_table` draw one block each; `rich_tables` (what `--format
table` prints) is them for every block, and the TUI's compare view calls them with ``pane=True``.
Every accuracy block is followed by its statistics table (`ncbench.report.stats_tables`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import asdict
from typing import Any

from ncbench.errors import UnknownNameError
from ncbench.lifecycle import DONE
from ncbench.report.blocks import (MISSING, NC_METRICS, AccuracyBlock, CellStats, NCBlock, Report,
                                   fmt_key, fmt_num, is_percent, metric_unit)
from ncbench.report.stats_tables import (STATS_CSV_COLUMNS, stats_csv_fields, stats_grid,
                                         stats_legend, stats_rich_table, stats_title)

FORMATS = ("table", "md", "csv", "latex", "json")

ACCURACY_LEGEND = ("cells: mean ± std over seeds in percent, (n) = seeds counted; "
                   "spread = max − min of the loss means, percentage points")
ACCURACY_LEGEND_PANE = "mean ± std over seeds (n); spread = max − min of loss means, pp"
# The same for a metric that is not a percentage (`is_percent`): its own units.
ACCURACY_LEGEND_UNITS = ("cells: mean ± std over seeds in the metric's own units, (n) = seeds "
                         "counted; spread = max − min of the loss means, same units")
ACCURACY_LEGEND_UNITS_PANE = "mean ± std over seeds (n); spread = max − min of loss means"
NC_LEGEND = ("NC1–NC4 on the training split, test NC1 on the test split, at the last evaluation; "
             "mean ± std over seeds, (n) = seeds counted")
NC_LEGEND_COMPACT = ("NC1–NC4 on the training split, test NC1 on the test split, at the last "
                     "evaluation; each cell: the mean over seeds, its ±std below; n = seeds "
                     "counted")
NO_RUNS = "No runs match (nothing to report)."

_METRIC_TITLES = {
    "test_acc_at_best_val": "test accuracy at the best-validation epoch",
    "final_test_acc": "final test accuracy",
    "best_val_acc": "best validation accuracy",
    "final_train_acc": "final train accuracy",
}


# --------------------------------------------------------------------------------------------
# Numbers, titles, notes
# --------------------------------------------------------------------------------------------


def fmt_pct(stats: CellStats | None, *, seeds: bool = True, pm: str = " ± ") -> str:
    """Accuracy stats as percent with one decimal: "81.2 ± 0.4 (3)"; one seed "81.2 (1)"."""
    if stats is None:
        return MISSING
    s = f"{100 * stats.mean:.1f}"
    if stats.std is not None:
        s += f"{pm}{100 * stats.std:.1f}"
    return s + (f" ({stats.n_seeds})" if seeds else "")


def fmt_stats(stats: CellStats | None, *, seeds: bool = True, pm: str = " ± ") -> str:
    """NC stats: "0.0123 ± 0.002 (3)"; "—" when missing."""
    if stats is None:
        return MISSING
    s = fmt_num(stats.mean)
    if stats.std is not None:
        s += f"{pm}{fmt_num(stats.std)}"
    return s + (f" ({stats.n_seeds})" if seeds else "")


def fmt_spread(x: float | None, *, percent: bool = True) -> str:
    """Spread across losses in percentage points, one decimal; not `percent`: `fmt_num`."""
    if x is None:
        return MISSING
    return f"{100 * x:.1f}" if percent else fmt_num(x)


def _fmt_compact(stats: CellStats | None) -> str:
    """Mean to 3 significant digits over "±std" (2 digits) on a second line; "—" when missing."""
    if stats is None:
        return MISSING
    s = fmt_num(stats.mean)
    if stats.std is not None:
        s += "\n±" + (f"{stats.std:.2g}" if stats.std == 0 or 1e-3 <= abs(stats.std) < 1e4
                      else f"{stats.std:.1e}")
    return s


def metric_title(metric: str) -> str:
    """What an accuracy metric (a `results` column) is, in words: "final test accuracy"."""
    return _METRIC_TITLES.get(metric, metric)


def accuracy_title(block: AccuracyBlock) -> str:
    """"demo · digits / mlp — final test accuracy (%)"; no "(%)" unless `is_percent`."""
    unit = " (%)" if is_percent(block.metric) else ""
    return f"{block.label} — {metric_title(block.metric)}{unit}"


def accuracy_legend(block: AccuracyBlock, *, pane: bool = False) -> str:
    """The accuracy table's legend (`pane`: the TUI's short one), in the metric's units."""
    if is_percent(block.metric):
        return ACCURACY_LEGEND_PANE if pane else ACCURACY_LEGEND
    return ACCURACY_LEGEND_UNITS_PANE if pane else ACCURACY_LEGEND_UNITS


def nc_title(block: NCBlock) -> str:
    return f"{block.label} — final NC metrics"


def excluded_note(n_excluded: int, include_unfinished: bool,
                  hint: str = "see --include-unfinished") -> str:
    """"3 unfinished run(s) not counted (only status 'done'; <hint>)"; "" when none were left
    out or unfinished runs count. `hint` says how to count them (a CLI flag, a TUI key)."""
    if include_unfinished or not n_excluded:
        return ""
    return f"{n_excluded} unfinished run(s) not counted (only status '{DONE}'; {hint})"


# --------------------------------------------------------------------------------------------
# Tables as header + rows of strings (shared by the table/md/latex renderers and the TUI)
# --------------------------------------------------------------------------------------------


def accuracy_grid(block: AccuracyBlock, *, pm: str = " ± ") -> tuple[list[str], list[list[str]]]:
    """Header and text rows: one row per loss × row value, then one spread row per row value."""
    header = ["loss", block.row_key] + [f"{block.col_key}={fmt_key(c)}" for c in block.col_values]
    percent = is_percent(block.metric)
    cell = fmt_pct if percent else fmt_stats
    lines = []
    for loss in block.losses:
        for i, rv in enumerate(block.row_values):
            lines.append([loss, fmt_key(rv)] + [cell(s, pm=pm) for s in block.cells[loss][i]])
    for i, rv in enumerate(block.row_values):
        lines.append(["spread (max−min)", fmt_key(rv)]
                     + [fmt_spread(x, percent=percent) for x in block.spread[i]])
    return header, lines


def nc_grid(block: NCBlock, *, pm: str = " ± ") -> tuple[list[str], list[list[str]]]:
    """Header and text rows: one row per configuration (row value, col value) and loss."""
    header = [block.row_key, block.col_key, "loss"] + [NC_METRICS.get(m, m) for m in block.metrics]
    lines = [
        [fmt_key(r.row_value), fmt_key(r.col_value), r.loss] + [fmt_stats(r.stats[m], pm=pm) for m in block.metrics]
        for r in block.rows
    ]
    return header, lines


# --------------------------------------------------------------------------------------------
# Rich tables (the terminal, and the TUI's compare view)
# --------------------------------------------------------------------------------------------


def accuracy_rich_table(block: AccuracyBlock, *, include_unfinished: bool = False,
                        pane: bool = False):
    """One accuracy block as a rich Table: title, `accuracy_grid` rows (spread rows bold), a
    legend as caption.

    Default (`ncbench report`): the full legend plus `excluded_note` as caption, a rule after
    each loss, the value columns may wrap. ``pane=True`` (the TUI's compare view): the short
    legend (`accuracy_legend` with ``pane=True``) without the note (the caller shows `excluded_note` with its
    own hint), every cell on one line, both key columns left-aligned, one rule between the loss
    rows and the spread rows."""
    from rich.table import Table

    header, lines = accuracy_grid(block)
    if pane:
        caption = accuracy_legend(block, pane=True)
    else:
        note = excluded_note(block.n_excluded, include_unfinished)
        caption = accuracy_legend(block) + (f"\n{note}" if note else "")
    t = Table(title=accuracy_title(block), title_justify="left", caption=caption,
              caption_justify="left")
    n_left = 2 if pane else 1
    for k, h in enumerate(header):
        t.add_column(h, justify="left" if k < n_left else "right", no_wrap=pane or k < 2)
    n_loss_lines = len(block.losses) * len(block.row_values)
    per_loss = max(1, len(block.row_values))
    for idx, line in enumerate(lines):
        if pane:
            end_section = idx == n_loss_lines - 1
        else:
            end_section = (idx + 1) % per_loss == 0 and idx < len(lines) - 1
        t.add_row(*line, end_section=end_section, style="bold" if idx >= n_loss_lines else None)
    return t


def nc_rich_table(block: NCBlock, *, pane: bool = False):
    """One NC block as a rich Table with the title `nc_title`.

    Default (`ncbench report`): cells stay on one line at 80 columns ("0.0889" over "±0.0014"),
    the seed count in its own column ``n``, `NC_LEGEND_COMPACT` as caption, a rule after each
    configuration. ``pane=True`` (the TUI's compare view): the rows of `nc_grid` as they are
    ("0.0889 ± 0.0014 (3)"), every cell on one line, no caption, no rules."""
    from rich import box
    from rich.table import Table

    if pane:
        header, lines = nc_grid(block)
        t = Table(title=nc_title(block), title_justify="left")
        for k, h in enumerate(header):
            t.add_column(h, justify="left" if k < 3 else "right", no_wrap=True)
        for line in lines:
            t.add_row(*line)
        return t
    header = [block.row_key, block.col_key, "loss", "n"] + [NC_METRICS.get(m, m) for m in block.metrics]
    t = Table(title=nc_title(block), title_justify="left", caption=NC_LEGEND_COMPACT,
              caption_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    rows = []
    for r in block.rows:
        seeds = {st.n_seeds for st in r.stats.values() if st is not None}
        n = str(max(seeds)) if len(seeds) == 1 else ("–".join(map(str, (min(seeds), max(seeds))))
                                                    if seeds else MISSING)
        rows.append([fmt_key(r.row_value), fmt_key(r.col_value), r.loss, n]
                    + [_fmt_compact(r.stats[m]) for m in block.metrics])
    for k, h in enumerate(header):
        widest = max([len(h)] + [len(line) for row in rows for line in row[k].split("\n")])
        t.add_column(h, justify="left" if k < 3 else "right", no_wrap=True, min_width=widest)
    n_losses = len({r.loss for r in block.rows}) or 1
    for idx, cells in enumerate(rows):
        t.add_row(*cells, end_section=(idx + 1) % n_losses == 0 and idx < len(block.rows) - 1)
    return t


def rich_tables(report: Report) -> list:
    """The report as rich renderables (tables with titles and captions)."""
    from rich.text import Text

    if not report.accuracy and not report.nc:
        return [Text(NO_RUNS)]
    tables: list = []
    for b in report.accuracy:
        tables += [accuracy_rich_table(b, include_unfinished=report.include_unfinished),
                   stats_rich_table(b)]
    return tables + [nc_rich_table(b) for b in report.nc]


# --------------------------------------------------------------------------------------------
# Text formats
# --------------------------------------------------------------------------------------------


def check_format(fmt: str) -> None:
    """Raise UnknownNameError unless `fmt` is one of FORMATS."""
    if fmt not in FORMATS:
        raise UnknownNameError("format", fmt, FORMATS)


def render(report: Report, fmt: str = "table", *, width: int | None = None) -> str:
    """The report as text in one of FORMATS ("table" is rich's box drawing, no colour codes)."""
    check_format(fmt)
    return {"table": render_table, "md": render_md, "csv": render_csv, "latex": render_latex,
            "json": render_json}[fmt](report, **({"width": width} if fmt == "table" else {}))


def render_table(report: Report, width: int | None = None) -> str:
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=width or 200, color_system=None, force_terminal=False)
    for t in rich_tables(report):
        console.print(t)
        console.print()
    return buf.getvalue()


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def _md_table(header: list[str], lines: list[list[str]], right_from: int) -> str:
    align = ["---" if k < right_from else "---:" for k in range(len(header))]
    rows = [header, align] + lines
    return "\n".join("| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows)


def render_md(report: Report) -> str:
    parts = []
    if not report.accuracy and not report.nc:
        return NO_RUNS + "\n"
    for block in report.accuracy:
        header, lines = accuracy_grid(block)
        note = excluded_note(block.n_excluded, report.include_unfinished)
        legend = accuracy_legend(block) + (f". {note}" if note else "")
        parts.append(f"### {accuracy_title(block)}\n\n{_md_table(header, lines, 2)}\n\n*{legend}*")
        header, lines = stats_grid(block)
        parts.append(f"### {stats_title(block)}\n\n{_md_table(header, lines, 3)}\n\n"
                     f"*{stats_legend(block)}*")
    for block in report.nc:
        header, lines = nc_grid(block)
        parts.append(f"### {nc_title(block)}\n\n{_md_table(header, lines, 3)}\n\n*{NC_LEGEND}*")
    return "\n\n".join(parts) + "\n"


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                  "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "\\": r"\textbackslash{}"}


def _tex(s: str) -> str:
    s = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in s)
    return (s.replace(MISSING, "--").replace("−", "-").replace("–", "--")
            .replace("·", r"$\cdot$").replace("±", r"$\pm$").replace("Δ", r"$\Delta$")
            .replace("χ²", r"$\chi^2$"))


_SCI = re.compile(r"(?<![\w.])(-?\d+(?:\.\d+)?)e([+-]?\d+)(?![\w.])")


def _tex_sci(s: str) -> str:
    """Scientific notation as LaTeX math: "1.02e-04" → "$1.02\\times10^{-4}$"."""
    return _SCI.sub(lambda m: rf"${m.group(1)}\times10^{{{int(m.group(2))}}}$", s)


def _latex_table(caption: str, header: list[str], lines: list[list[str]], left: int,
                 section: int) -> str:
    spec = "l" * left + "r" * (len(header) - left)
    out = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{_tex(caption)}}}",
           rf"\begin{{tabular}}{{{spec}}}", r"\hline",
           " & ".join(_tex(h) for h in header) + r" \\", r"\hline"]
    for idx, line in enumerate(lines):
        cells = [_tex_sci(_tex(c)).replace("PMSIGN", r"$\pm$") for c in line]
        out.append(" & ".join(cells) + r" \\")
        if section and (idx + 1) % section == 0 and idx < len(lines) - 1:
            out.append(r"\hline")
    out += [r"\hline", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out)


def render_latex(report: Report) -> str:
    parts = []
    for block in report.accuracy:
        header, lines = accuracy_grid(block, pm=" PMSIGN ")
        parts.append(_latex_table(f"{accuracy_title(block)}. {accuracy_legend(block)}.", header, lines, 2,
                                  max(1, len(block.row_values))))
        header, lines = stats_grid(block)
        parts.append(_latex_table(f"{stats_title(block)}. {stats_legend(block)}.", header, lines,
                                  3, 0))
    for block in report.nc:
        header, lines = nc_grid(block, pm=" PMSIGN ")
        parts.append(_latex_table(f"{nc_title(block)}. {NC_LEGEND}.", header, lines, 3,
                                  max(1, len({r.loss for r in block.rows}))))
    return "\n\n".join(parts) + "\n" if parts else "% no runs match\n"


CSV_COLUMNS = ("table", "experiment", "block", "loss", "row_key", "row", "col_key", "col",
               "metric", "mean", "std", "n_seeds", "spread") + STATS_CSV_COLUMNS


def _csv_num(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else repr(float(x))


def _csv_key(v: Any) -> str:
    return "" if v is None else fmt_key(v)


def csv_records(report: Report) -> list[dict[str, str]]:
    """Long format: one record per (block, loss, row, col, metric); fractions, not percent."""
    recs = []
    for b in report.accuracy:
        block = json.dumps(b.fixed, sort_keys=True, default=str)
        for loss in b.losses:
            for i, rv in enumerate(b.row_values):
                for j, cv in enumerate(b.col_values):
                    s = b.cells[loss][i][j]
                    recs.append(dict(table="accuracy", experiment=b.experiment, block=block, loss=loss,
                                     row_key=b.row_key, row=_csv_key(rv), col_key=b.col_key, col=_csv_key(cv),
                                     metric=b.metric, mean=_csv_num(s and s.mean),
                                     std=_csv_num(s and s.std), n_seeds=str(s.n_seeds if s else 0),
                                     spread=_csv_num(b.spread[i][j]),
                                     **stats_csv_fields(b, i, j, loss)))
    for b in report.nc:
        block = json.dumps(b.fixed, sort_keys=True, default=str)
        for r in b.rows:
            for m in b.metrics:
                s = r.stats[m]
                recs.append(dict(table="nc", experiment=b.experiment, block=block, loss=r.loss,
                                 row_key=b.row_key, row=_csv_key(r.row_value), col_key=b.col_key,
                                 col=_csv_key(r.col_value), metric=m, mean=_csv_num(s and s.mean),
                                 std=_csv_num(s and s.std), n_seeds=str(s.n_seeds if s else 0), spread="",
                                 **dict.fromkeys(STATS_CSV_COLUMNS, "")))
    return recs


def render_csv(report: Report) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(csv_records(report))
    return buf.getvalue()


def _jsonable(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def report_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON-able data (raw values: fractions for the accuracies, whose
    block says ``"unit": "fraction"``, else the metric's own units, ``"unit": null``; NaN →
    null)."""
    return _jsonable({
        "include_unfinished": report.include_unfinished,
        "accuracy": [asdict(b) | {"label": b.label, "unit": metric_unit(b.metric)}
                     for b in report.accuracy],
        "nc": [asdict(b) | {"label": b.label} for b in report.nc],
    })


def render_json(report: Report) -> str:
    return json.dumps(report_dict(report), indent=2, allow_nan=False) + "\n"
