"""A line chart widget that cannot be crashed by its data.

`textual-plotext` draws with plotext, which raises `ValueError: math domain error` when a log-scale
series holds a value ≤ 0, fails on ±inf, and silently draws nothing for values beyond ~1e20 or a
range of ~1e-50. `Chart` never hands plotext such data:

* `sanitize` keeps only points with finite x and y (and y > 0 on a log scale), and counts the
  points it dropped so the chart title can say so;
* a log scale is drawn by plotting log10(y) on a linear axis with decade tick labels (`1e-3`),
  so plotext's own log code is never used;
* linear values too large for plotext are dropped (counted), tiny ones are drawn as 0;
* anything plotext still raises is caught and shown as a one-line message in the chart's place.

An empty series, a single point and a constant series all draw (a single point as a dot).

The y axis fits the data (`y_range`: its range plus a margin, kept inside the chart's `bounds`,
so 96–98 % accuracies are not squeezed onto one row of a 0–1 axis). The legend is the chart's
bottom border (`legend_text`), never drawn over the curves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.app import RenderResult
from textual.reactive import reactive
from textual_plotext import PlotextPlot

__all__ = ["Chart", "Series", "sanitize", "log_ticks", "int_ticks", "y_range", "legend_text",
           "SERIES_COLORS"]

# Largest |y| plotext draws on a linear axis; below TINY a value is drawn as 0.
HUGE = 1e15
TINY = 1e-30

# Colours by series position (the compare view keeps one colour per loss).
SERIES_COLORS = ("cyan+", "orange+", "green+", "magenta+", "red+", "blue+", "yellow+", "gray")
# The same colours for rich (the legend in the chart's border).
_RICH_COLORS = {"cyan+": "bright_cyan", "orange+": "orange1", "green+": "bright_green",
                "magenta+": "bright_magenta", "red+": "bright_red", "blue+": "bright_blue",
                "yellow+": "bright_yellow", "gray": "grey62"}


@dataclass(frozen=True)
class Series:
    """One line: its legend label and the points (x, y); any values, however bad."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    color: str | None = None


def _finite(v: object) -> bool:
    try:
        return v is not None and math.isfinite(float(v))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def sanitize(x: Sequence[float], y: Sequence[float], log: bool = False
             ) -> tuple[list[float], list[float], int]:
    """The drawable points of a series and how many were dropped.

    Keeps pairs whose x and y are finite numbers; on a log scale also requires y > 0 and
    returns log10(y); on a linear scale drops |y| > HUGE and draws |y| < TINY as 0. Pairs beyond
    the shorter of x and y are dropped too.
    """
    xs: list[float] = []
    ys: list[float] = []
    n = max(len(x), len(y))
    for xv, yv in zip(x, y):
        if not (_finite(xv) and _finite(yv)):
            continue
        xf, yf = float(xv), float(yv)
        if log:
            if yf <= 0:
                continue
            yf = math.log10(yf)
        else:
            if abs(yf) > HUGE:
                continue
            if abs(yf) < TINY:
                yf = 0.0
        xs.append(xf)
        ys.append(yf)
    return xs, ys, n - len(xs)


def y_range(lo: float, hi: float, bounds: tuple[float, float] | None = None,
            margin: float = 0.1) -> tuple[float, float]:
    """The y axis for data between lo and hi: the range widened by `margin` of it on each side
    (a flat series by 5 % of its value, or ±0.05 at 0), then kept inside `bounds` (an
    accuracy never gets an axis beyond 0–1)."""
    span = hi - lo
    pad = span * margin if span > 1e-12 else (abs(hi) * 0.05 or 0.05)
    a, b = lo - pad, hi + pad
    if bounds is not None:
        a, b = max(a, bounds[0]), min(b, bounds[1])
        if b - a < 1e-12:  # the data lie on a bound: widen inwards
            a, b = (a - 2 * pad, b) if b >= bounds[1] else (a, b + 2 * pad)
    return a, b


def legend_text(series: Sequence["Series"]) -> Text:
    """`━ train  ━ test`: each labelled series' label in its colour (for the chart's border)."""
    text = Text()
    for i, s in enumerate(series):
        if not s.label:
            continue
        color = s.color or SERIES_COLORS[i % len(SERIES_COLORS)]
        if text:
            text.append("  ")
        text.append("━ ", style=_RICH_COLORS.get(color, ""))
        text.append(s.label)
    return text


def _fmt_pow10(e: float) -> str:
    """Label for 10**e: `1e-3`, `0.01`, `1`, `100`, `1e4` (integers) or 3 significant digits."""
    if abs(e - round(e)) < 1e-9:
        k = int(round(e))
        if -2 <= k <= 3:
            return f"{10.0 ** k:g}"
        return f"1e{k}"
    return f"{10.0 ** e:.2g}"


def log_ticks(lo: float, hi: float, max_ticks: int = 5) -> tuple[list[float], list[str]]:
    """Ticks (in log10 units) between lo and hi, with labels of the values they stand for:
    whole decades when the range spans one or more, else evenly spaced values."""
    max_ticks = max(2, max_ticks)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [], []
    if hi - lo < 1e-12:
        return [lo], [_fmt_pow10(lo)]
    first, last = math.ceil(lo - 1e-9), math.floor(hi + 1e-9)
    if last - first >= 1:
        step = 1
        while (last - first) / step > max_ticks - 1:
            step = _next_step(step)
        ticks = [float(k) for k in range(math.ceil(first / step) * step, last + 1, step)]
    else:
        n = max_ticks
        ticks = [lo + (hi - lo) * i / (n - 1) for i in range(n)]
    return ticks, [_fmt_pow10(t) for t in ticks]


def int_ticks(lo: float, hi: float, max_ticks: int = 6) -> list[float]:
    """Integer ticks (epochs) between lo and hi on a 1-2-5 step, at most `max_ticks`."""
    max_ticks = max(2, max_ticks)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    a, b = math.ceil(lo), math.floor(hi)
    if b < a:
        return []
    span = b - a
    step = 1
    while span / step > max_ticks - 1:
        step = _next_step(step)
    start = math.ceil(a / step) * step
    return [float(t) for t in range(start, b + 1, step)]


def _next_step(step: int) -> int:
    """1, 2, 5, 10, 20, 50, ..."""
    mag = 10 ** int(math.floor(math.log10(step)))
    lead = step // mag
    return {1: 2, 2: 5}.get(lead, 10) * mag


class Chart(PlotextPlot):
    """A titled line chart of one or more `Series` against epoch, safe for any values.

    `log` draws the y axis in log10 (points ≤ 0 are left out and counted in the title);
    `bounds`: limits the fitted linear y axis never passes (accuracies: 0–1). Set the data with
    `set_series`; the widget re-renders on the next refresh. The legend is its border subtitle
    (`legend=False`: none, for a view that shows one legend for all its charts).
    """

    DEFAULT_CSS = """
    Chart {
        width: 1fr;
        height: 1fr;
        min-height: 6;
    }
    """

    can_focus = True  # Tab moves between charts; `l` toggles the focused one's log scale
    log: reactive[bool] = reactive(False)

    def __init__(self, title: str, *, log: bool = False,
                 bounds: tuple[float, float] | None = None, legend: bool = True,
                 id: str | None = None, classes: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id, classes=classes)
        self.title = title
        self.set_reactive(Chart.log, log)
        self.bounds = bounds
        self.legend = legend
        self.series: list[Series] = []
        self.dropped = 0
        self.error: str | None = None

    def set_series(self, series: Sequence[Series]) -> None:
        """Replace the lines drawn (any values; bad ones are filtered at draw time)."""
        self.series = list(series)
        if self.legend:
            self.border_subtitle = legend_text(self.series)  # type: ignore[assignment]
        self.refresh()

    def watch_log(self) -> None:
        self.refresh()

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_figure()
        width, height = self.size.width, self.size.height
        dropped = 0
        xs_all: list[float] = []
        ys_all: list[float] = []
        for i, s in enumerate(self.series):
            xs, ys, d = sanitize(s.x, s.y, self.log)
            dropped += d
            if not xs:
                continue
            color = s.color or SERIES_COLORS[i % len(SERIES_COLORS)]
            # no plotext label: its legend box would sit on the curves (legend_text instead)
            if len(xs) == 1:
                plt.scatter(xs, ys, marker="●", color=color)
            else:
                plt.plot(xs, ys, color=color, marker="hd")
            xs_all += xs
            ys_all += ys
        self.dropped = dropped
        title = self.title + (" (log)" if self.log else "")
        if dropped:
            title += f" · {dropped} pt{'s' if dropped != 1 else ''} hidden" + (
                " (≤0/nan)" if self.log else " (nan/inf)")
        plt.title(title)
        if not xs_all:
            # Empty: plotext draws an empty frame; label it so it does not look broken.
            plt.xticks([], [])
            plt.yticks([], [])
            return
        xlo, xhi = min(xs_all), max(xs_all)
        if xhi > xlo:
            plt.xlim(xlo, xhi)
        plt.xticks(int_ticks(xlo, xhi, max(3, width // 8)) or [xlo])
        ylo, yhi = min(ys_all), max(ys_all)
        if not self.log:
            plt.ylim(*y_range(ylo, yhi, self.bounds))
        else:
            ticks, labels = log_ticks(ylo, yhi, max(2, (height - 4) // 2))
            plt.yticks(ticks, labels)
            if yhi - ylo < 1e-12:
                plt.ylim(ylo - 0.5, yhi + 0.5)

    def render(self) -> RenderResult:
        """Draw the plot; if plotext still fails, a one-line message instead of a crash."""
        try:
            self.error = None
            self._draw()
            return super().render()
        except Exception as exc:  # noqa: BLE001 - a chart must never take the app down
            self.error = f"{type(exc).__name__}: {exc}"
            return Text(f"{self.title}: cannot draw ({self.error})", style="italic")
