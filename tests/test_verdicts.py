"""Verdict rules of the claims on constructed inputs, and Welch's interval against SciPy's t-test."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from mla.report.claims import Claim, compare, not_applicable
from mla.report.collect import stat
from mla.report.verdicts import (CONTRADICTED, HOLDS, INCONCLUSIVE, NOT_APPLICABLE, NOT_EVALUATED,
                                 smallest_significant, welch)


def _item(a, b):
    return compare("x", stat(a), stat(b), "a", "b")


def test_welch_interval_equals_scipys():
    a, b = [81.2, 79.9, 83.4, 80.1, 82.0], [76.0, 79.5, 74.2]
    iv = welch(stat(a), stat(b))
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert iv.lo == pytest.approx(ref.low, abs=1e-9) and iv.hi == pytest.approx(ref.high, abs=1e-9)
    assert iv.diff == pytest.approx(np.mean(a) - np.mean(b))


def test_clear_effect_holds():
    assert _item([90.0, 91.0, 89.5], [80.0, 81.0, 79.0]).verdict == HOLDS


def test_clear_reverse_effect_is_contradicted():
    it = _item([70.0, 71.0, 69.5], [80.0, 81.0, 79.0])
    assert it.verdict == CONTRADICTED and it.numbers["ci_high"] < 0


def test_noise_is_inconclusive():
    it = _item([80.0, 90.0, 70.0], [78.0, 82.0, 76.0])
    assert it.verdict == INCONCLUSIVE and it.numbers["ci_low"] < 0 < it.numbers["ci_high"]


@pytest.mark.parametrize("a, b", [([80.0, 81.0, 79.0], [80.0, 81.0, 79.0]), ([80.0, 80.0], [80.0, 80.0]),
                                  ([80.0], [80.0])])
def test_zero_difference_is_never_opposite(a, b):
    it = _item(a, b)
    assert it.numbers["diff"] == 0.0 and it.verdict == INCONCLUSIVE


def test_exact_numbers_decide_without_noise():
    assert _item([80.0, 80.0], [79.0, 79.0]).verdict == HOLDS
    assert _item([79.0, 79.0], [80.0, 80.0]).verdict == CONTRADICTED


def test_single_seed_is_inconclusive_and_missing_cell_not_evaluated():
    assert _item([95.0], [10.0]).verdict == INCONCLUSIVE
    assert compare("x", None, stat([1.0, 2.0]), "a", "b").verdict == NOT_EVALUATED


def test_failed_premise_is_not_applicable_and_claim_verdicts():
    c = Claim("c_x", "statement", [not_applicable("d", "no lazy modality")])
    assert c.verdict() == NOT_APPLICABLE and c.weakest() is None
    hold, noise = _item([90.0, 91.0, 89.5], [80.0, 81.0, 79.0]), _item([80.0, 90.0, 70.0], [78.0, 82.0, 76.0])
    rev = _item([70.0, 71.0, 69.5], [80.0, 81.0, 79.0])
    assert Claim("k", "s", [hold, hold]).verdict() == HOLDS
    assert Claim("k", "s", [hold, noise]).verdict() == INCONCLUSIVE
    assert Claim("k", "s", [hold, noise, rev]).verdict() == CONTRADICTED
    assert Claim("k", "s", [hold, rev]).weakest() is rev
    # the headline item decides the verdict: a narrow hold (+1, smaller) is not the weakest of a claim that a
    # noisy +2 leaves inconclusive; among inconclusive items, the lowest interval bound
    narrow = _item([81.0, 81.1, 80.9], [80.0, 80.1, 79.9])
    assert narrow.verdict == HOLDS and noise.verdict == INCONCLUSIVE and narrow.numbers["diff"] < noise.numbers["diff"]
    assert Claim("k", "s", [narrow, noise]).weakest() is noise
    wide = _item([80.0, 95.0, 65.0], [78.0, 80.0, 76.0])
    assert wide.numbers["ci_low"] < noise.numbers["ci_low"] and Claim("k", "s", [noise, wide, narrow]).weakest() is wide
    assert Claim("k", "s", [wide, rev, hold]).weakest() is rev  # contradicted beats a lower inconclusive bound
    one_seed = _item([85.0], [80.0])
    assert Claim("k", "s", [one_seed, noise]).weakest() is noise  # noise's lower bound is below one_seed's +5
    assert Claim("k", "s", [hold, not_applicable("d", "why")]).verdict() == HOLDS


def test_smallest_significant_difference():
    # two cells of n seeds with the same std: Welch's df is 2n - 2 and the half-width t * std * sqrt(2/n)
    for n, std in ((3, 2.0), (5, 1.3)):
        a = stat([50.0 + std * z for z in _unit(n)])
        b = stat([40.0 + std * z for z in _unit(n)])
        assert a.std == pytest.approx(std)
        assert welch(a, b).half == pytest.approx(smallest_significant(std, n))
    assert smallest_significant(2.0, 3) == pytest.approx(stats.t.ppf(0.975, 4) * 2.0 * np.sqrt(2 / 3))
    assert smallest_significant(2.0, 1) is None


def _unit(n: int) -> list[float]:
    """n values with mean 0 and sample std 1."""
    z = np.arange(n, dtype=float) - (n - 1) / 2
    return list(z / z.std(ddof=1))
