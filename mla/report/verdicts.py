"""Verdicts on "A > B" comparisons over seeds: Welch's 95 % confidence interval of the difference.

For two cells with sample means a, b, sample standard deviations s_a, s_b (ddof = 1) over n_a, n_b seeds,
the difference d = a − b has standard error se = sqrt(s_a²/n_a + s_b²/n_b) and Welch–Satterthwaite degrees
of freedom ν = se⁴ / ((s_a²/n_a)²/(n_a − 1) + (s_b²/n_b)²/(n_b − 1)) (Welch 1947). The 95 % interval is
d ± h with h = t_{0.975, ν} · se; h is the smallest difference these seeds can call significant.

- **holds**: the interval lies above 0 (the claimed direction, beyond noise);
- **contradicted**: the interval lies below 0 (the other direction, beyond noise);
- **inconclusive**: the interval contains 0, or there is one seed (no interval), so a zero difference is
  never "opposite";
- **not applicable**: the claim's premise fails (e.g. no lazy modality to lift);
- **not evaluated**: a cell is not in the grid.

No torch here: the report builds in the Snakemake process's environment.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import stats as _stats

from mla.report.collect import Stat

HOLDS, CONTRADICTED, INCONCLUSIVE = "holds", "contradicted", "inconclusive"
NOT_APPLICABLE, NOT_EVALUATED = "not applicable", "not evaluated"
VERDICTS = (HOLDS, CONTRADICTED, INCONCLUSIVE, NOT_APPLICABLE, NOT_EVALUATED)
LEVEL = 0.95
RULE = ("Each comparison A > B gives the difference of seed means, its 95 % confidence interval (Welch's t, "
        "sample standard deviations, Welch–Satterthwaite degrees of freedom) and a verdict: holds (interval "
        "above 0), contradicted (interval below 0), inconclusive (interval contains 0, or a single seed), "
        "not applicable (the claim's premise fails), not evaluated (a cell outside the grid). The interval's "
        "half-width is the smallest difference these seeds can call significant.")


@dataclass(frozen=True)
class Interval:
    """d ± half (95 %); ``half`` is None for a single seed, ``df`` None when the interval is exact."""

    diff: float
    half: float | None
    df: float | None

    @property
    def lo(self) -> float | None:
        return None if self.half is None else self.diff - self.half

    @property
    def hi(self) -> float | None:
        return None if self.half is None else self.diff + self.half

    def fmt(self, digits: int = 2) -> str:
        if self.half is None:
            return f"{self.diff:+.{digits}f} (one seed: no interval)"
        return f"{self.diff:+.{digits}f} [{self.lo:+.{digits}f}, {self.hi:+.{digits}f}]"


def t_quantile(df: float, level: float = LEVEL) -> float:
    """Two-sided Student t quantile t_{(1+level)/2, df}."""
    return float(_stats.t.ppf((1 + level) / 2, df))


def welch(a: Stat, b: Stat, level: float = LEVEL) -> Interval:
    """Welch's interval of mean(a) − mean(b) (see the module docstring)."""
    diff = a.mean - b.mean
    if a.std is None or b.std is None:
        return Interval(diff, None, None)
    va, vb = a.std ** 2 / a.n, b.std ** 2 / b.n
    se2 = va + vb
    if se2 == 0.0:  # every seed gave the same number: the difference is exact
        return Interval(diff, 0.0, None)
    df = se2 ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1))
    return Interval(diff, t_quantile(df, level) * math.sqrt(se2), df)


def verdict(iv: Interval) -> str:
    """holds / contradicted / inconclusive from an interval (see the module docstring)."""
    if iv.half is None:
        return INCONCLUSIVE
    if iv.lo > 0:
        return HOLDS
    if iv.hi < 0:
        return CONTRADICTED
    return INCONCLUSIVE


def smallest_significant(std: float, n: int, level: float = LEVEL) -> float | None:
    """Half-width of the 95 % interval of a difference between two cells of ``n`` seeds each with the
    same standard deviation ``std``: t_{0.975, 2n−2} · std · sqrt(2/n) (Welch's ν is 2n − 2 then)."""
    if n < 2:
        return None
    return t_quantile(2 * n - 2, level) * std * math.sqrt(2 / n)
