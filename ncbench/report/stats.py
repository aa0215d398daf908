"""Statistics over seeds for the report: t intervals, paired differences, Friedman, TOST verdicts.

Pure functions on plain numbers (lists, or seed -> value maps); every interval, test statistic
and p-value comes from `scipy.stats` (imported on first use, so importing `ncbench.report` stays
light). `ncbench.report.aggregate` feeds them the values of one report cell; the renderers and
the TUI's compare view show the results. The rules (also in docs/report.md):

- NaN, ±inf and non-numbers are skipped before anything is computed.
- `mean_ci`: the mean with its Student t interval over seeds (`ttest_1samp(...)
  .confidence_interval`); needs n >= 2. Zero variance gives the zero-width interval.
- `paired`: a loss against the reference loss over the seeds both have (runs with the same seed
  share initial weights and data order): mean difference, its t interval and the two-sided
  paired t-test p-value (`ttest_rel`), and TOST — two one-sided paired t-tests (`ttest_rel`
  with ``alternative=``) against ``-margin`` and ``+margin``; its p-value is the larger of two.
- `verdict`: with fewer than `MIN_VERDICT_SEEDS` pairs, `TOO_FEW` (the tests are still shown
  from 2 pairs on, but one degree of freedom rests the test entirely on the normality of two
  differences). Otherwise `EQUAL` when TOST p < alpha (the difference lies within the margin,
  even if it is detectably non-zero), else `DIFFERENT` when the paired p < alpha (its CI
  excludes 0), else `INCONCLUSIVE`.
- Zero variance of the differences (ties): scipy's limits. All differences 0: the paired t is
  0/0 (p undefined, `None`) and both TOST t are ±inf (p = 0): `EQUAL`. All differences the
  same non-zero d: paired p = 0; TOST p = 0 when |d| < margin.
- `friedman`: "all losses equal" in one cell, `friedmanchisquare` over the seeds every loss has
  (complete blocks only); needs >= 3 losses and >= `MIN_VERDICT_SEEDS` complete blocks.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ALPHA = 0.05
CONFIDENCE = 0.95
MIN_VERDICT_SEEDS = 3
DEFAULT_REFERENCE = "ce"
DEFAULT_MARGIN_PP = 0.5  # percentage points; the data (fractions) use DEFAULT_MARGIN_PP / 100

EQUAL = "equal"
DIFFERENT = "different"
INCONCLUSIVE = "inconclusive"
TOO_FEW = "too few seeds"
VERDICTS = (EQUAL, DIFFERENT, INCONCLUSIVE, TOO_FEW)

FRIEDMAN = "friedman"


@dataclass(frozen=True)
class MeanCI:
    """The mean of n finite values and its t interval; `low`/`high` None when n < 2."""

    mean: float
    low: float | None
    high: float | None
    n: int


@dataclass(frozen=True)
class Paired:
    """A loss minus the reference over `n` shared seeds (`mean`… None when n = 0)."""

    n: int
    mean: float | None
    low: float | None
    high: float | None
    p: float | None
    tost_p: float | None
    margin: float | None
    verdict: str


@dataclass(frozen=True)
class Friedman:
    """The Friedman test of "all losses equal" in one cell; `p` None when not computed (`note`
    says why: fewer than 3 losses, too few complete blocks, or every block tied)."""

    n_losses: int
    n_blocks: int
    statistic: float | None
    p: float | None
    note: str = ""
    test: str = FRIEDMAN


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def finite_values(values: Iterable[Any]) -> list[float]:
    """The finite numbers of `values`, as floats (NaN, inf, None, bools, strings skipped)."""
    return [float(v) for v in values if _finite(v)]


def _num(x: Any) -> float | None:
    """A scipy result as a float; None when NaN."""
    x = float(x)
    return None if math.isnan(x) else x


@contextmanager
def _quiet():
    """scipy warns on zero variance ("catastrophic cancellation", 0/0); its results are the
    documented limits, so the warnings are not the user's business."""
    import numpy as np

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def mean_ci(values: Iterable[Any], confidence: float = CONFIDENCE) -> MeanCI | None:
    """Mean and Student t `confidence` interval of the finite values (None when there are
    none; no interval for one value; the zero-width interval when all values are equal)."""
    from scipy import stats

    xs = finite_values(values)
    if not xs:
        return None
    n = len(xs)
    mean = math.fsum(xs) / n
    if n < 2:
        return MeanCI(mean, None, None, n)
    if max(xs) == min(xs):
        return MeanCI(xs[0], xs[0], xs[0], n)
    with _quiet():
        ci = stats.ttest_1samp(xs, 0.0).confidence_interval(confidence_level=confidence)
    return MeanCI(mean, _num(ci.low), _num(ci.high), n)


def seed_values(pairs: Iterable[tuple[Hashable, Any]]) -> dict[Hashable, float]:
    """{seed: value} of (seed, value) pairs, finite values only; a seed given more than once
    gets the mean of its values."""
    acc: dict[Hashable, list[float]] = {}
    for seed, value in pairs:
        if _finite(value):
            acc.setdefault(seed, []).append(float(value))
    return {s: math.fsum(vs) / len(vs) for s, vs in acc.items()}


def _sorted_keys(keys: Iterable[Hashable]) -> list:
    keys = list(keys)
    try:
        return sorted(keys)
    except TypeError:
        return sorted(keys, key=str)


def _shared(values: Mapping[Hashable, Any], reference: Mapping[Hashable, Any]) -> list:
    """The keys both maps have with finite values, sorted."""
    return _sorted_keys(k for k in values
                        if k in reference and _finite(values[k]) and _finite(reference[k]))


def verdict(n: int, p: float | None, tost_p: float | None, alpha: float = ALPHA) -> str:
    """The verdict of a paired comparison over n pairs (see the module docstring)."""
    if n < MIN_VERDICT_SEEDS:
        return TOO_FEW
    if tost_p is not None and tost_p < alpha:
        return EQUAL
    if p is not None and p < alpha:
        return DIFFERENT
    return INCONCLUSIVE


def paired(values: Mapping[Hashable, Any], reference: Mapping[Hashable, Any], margin: float | None,
           *, confidence: float = CONFIDENCE, alpha: float = ALPHA) -> Paired:
    """`values` − `reference` paired by key (seed), over the keys both have with finite values:
    mean difference, its t interval, the paired t-test p-value and the TOST p-value for the
    equivalence margin ±`margin` (same units as the values; None: no TOST, so never `EQUAL`),
    and the verdict."""
    from scipy import stats

    if margin is not None and (not margin > 0 or not math.isfinite(margin)):
        raise ValueError(f"margin must be a positive number, not {margin!r}")
    keys = _shared(values, reference)
    a = [float(values[k]) for k in keys]
    b = [float(reference[k]) for k in keys]
    n = len(keys)
    if n == 0:
        return Paired(0, None, None, None, None, None, margin, TOO_FEW)
    mean = math.fsum(x - y for x, y in zip(a, b)) / n
    if n < 2:
        return Paired(n, mean, None, None, None, None, margin, TOO_FEW)
    with _quiet():
        res = stats.ttest_rel(a, b)
        ci = res.confidence_interval(confidence_level=confidence)
        # TOST: H0 d <= -margin (rejected when a + margin > b) and H0 d >= +margin
        if margin is not None:
            lower = stats.ttest_rel([x + margin for x in a], b, alternative="greater")
            upper = stats.ttest_rel([x - margin for x in a], b, alternative="less")
    p = _num(res.pvalue)
    tost_p = None
    if margin is not None:
        p_lo, p_hi = _num(lower.pvalue), _num(upper.pvalue)
        tost_p = None if p_lo is None or p_hi is None else max(p_lo, p_hi)
    return Paired(n, mean, _num(ci.low), _num(ci.high), p, tost_p, margin,
                  verdict(n, p, tost_p, alpha))


def friedman(groups: Mapping[str, Mapping[Hashable, Any]]) -> Friedman:
    """Friedman's test that all groups (losses) are equal, blocked by key (seed), over the keys
    every group has a finite value for; `groups` with no finite value at all are left out."""
    from scipy import stats

    groups = {g: vs for g, vs in groups.items() if finite_values(vs.values())}
    k = len(groups)
    if k == 0:
        return Friedman(0, 0, None, None, "no values")
    shared = set.intersection(*({key for key, v in vs.items() if _finite(v)}
                                for vs in groups.values()))
    keys = _sorted_keys(shared)
    n = len(keys)
    if k < 3:
        return Friedman(k, n, None, None, "< 3 losses")
    if n < MIN_VERDICT_SEEDS:
        return Friedman(k, n, None, None, f"< {MIN_VERDICT_SEEDS} seeds")
    samples = [[float(vs[key]) for key in keys] for vs in groups.values()]
    with _quiet():
        res = stats.friedmanchisquare(*samples)
    statistic, p = _num(res.statistic), _num(res.pvalue)
    if statistic is None or p is None:
        return Friedman(k, n, None, None, "all tied")
    return Friedman(k, n, statistic, p)
