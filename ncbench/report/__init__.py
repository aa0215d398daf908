"""Comparison of losses across a grid: the paper's Figure 3 as a table, final NC metrics, curves.

The package's public face: `from ncbench import report; report.build_report(con, ...)`. Its
modules, one job each; each imports only modules listed above it:

* `ncbench.report.stats`     — statistics over seeds on plain numbers (scipy): t intervals,
  paired differences, TOST verdicts, Friedman.
* `ncbench.report.blocks`    — the data: `CellStats`, `AccuracyBlock`, `NCBlock`, `Curve`,
  `Report`, block labels.
* `ncbench.report.query`     — which runs: `select_runs`, `list_experiments`, the `--where`
  sandbox (`check_where`), a run's value of a key (`run_value`).
* `ncbench.report.aggregate` — the computations: `accuracy_table`, `nc_table`, `build_report`,
  `configurations`, `curves`, `curves_many` (mean ± std over seeds per loss per cell, and
  each cell's statistics).
* `ncbench.report.renderers` — text: rich tables (`rich_tables`, per block
  `accuracy_rich_table` / `nc_rich_table`), md, csv, latex, json, number formatting; the
  statistics tables come from `ncbench.report.stats_tables` (`stats_rich_table`, `stats_grid`).
* `ncbench.report.figures`   — Figures 1–3 with matplotlib; not imported here (importing
  `ncbench.report` imports neither matplotlib nor torch): `from ncbench.report import figures`.
"""

from __future__ import annotations

from ncbench.report.aggregate import (accuracy_table, build_report, cell_stats, configurations,
                                      curves, curves_many, in_configuration, nc_table)
from ncbench.report.blocks import (ACCURACY_METRIC, MISSING, NC_METRICS, AccuracyBlock,
                                   CellComparison, CellStats, Curve, LossComparison, NCBlock,
                                   NCRow, Report, block_label, fmt_key)
from ncbench.report.query import (check_where, is_counted, list_experiments, run_value,
                                  select_runs)
from ncbench.report.stats import DEFAULT_MARGIN_PP, DEFAULT_REFERENCE
from ncbench.report.stats_tables import (fmt_ci, fmt_diff, fmt_p, stats_grid, stats_legend,
                                         stats_rich_table, stats_title)
from ncbench.report.renderers import (ACCURACY_LEGEND, ACCURACY_LEGEND_PANE, CSV_COLUMNS,
                                      FORMATS, NC_LEGEND, NC_LEGEND_COMPACT, accuracy_grid,
                                      accuracy_rich_table, accuracy_title, check_format,
                                      csv_records, excluded_note, fmt_num, fmt_pct, fmt_spread,
                                      fmt_stats, metric_title, nc_grid, nc_rich_table, nc_title,
                                      render, render_csv, render_json, render_latex, render_md,
                                      render_table, report_dict, rich_tables)

__all__ = [
    # query
    "check_where", "is_counted", "list_experiments", "run_value", "select_runs",
    # blocks
    "ACCURACY_METRIC", "MISSING", "NC_METRICS", "AccuracyBlock", "CellComparison", "CellStats",
    "Curve", "LossComparison", "NCBlock", "NCRow", "Report", "block_label", "fmt_key",
    # stats (the computations: ncbench.report.stats) and their tables
    "DEFAULT_MARGIN_PP", "DEFAULT_REFERENCE", "fmt_ci", "fmt_diff", "fmt_p", "stats_grid",
    "stats_legend", "stats_rich_table", "stats_title",
    # aggregate
    "accuracy_table", "build_report", "cell_stats", "configurations", "curves", "curves_many",
    "in_configuration", "nc_table",
    # renderers
    "ACCURACY_LEGEND", "ACCURACY_LEGEND_PANE", "CSV_COLUMNS", "FORMATS", "NC_LEGEND",
    "NC_LEGEND_COMPACT", "accuracy_grid", "accuracy_rich_table", "accuracy_title",
    "check_format", "csv_records", "excluded_note", "fmt_num", "fmt_pct", "fmt_spread",
    "fmt_stats", "metric_title", "nc_grid", "nc_rich_table", "nc_title", "render", "render_csv",
    "render_json", "render_latex", "render_md", "render_table", "report_dict", "rich_tables",
]
