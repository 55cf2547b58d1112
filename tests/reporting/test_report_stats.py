"""varcon.reporting.stats: paired differences over seeds against scipy's own paired t-test,
the interval/p-value agreement, the degenerate cases, and the pooled single-seed noise."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from varcon.reporting.stats import (
    ALPHA,
    paired_difference,
    pooled_seed_std,
    single_seed_contrast,
)


def test_matches_scipy_ttest_rel_and_its_interval() -> None:
    a = {0: 48.2, 1: 47.9, 2: 48.8, 5: 50.0}  # seed 5 has no partner: left out
    b = {0: 45.6, 1: 46.1, 2: 45.9, 3: 44.0}
    diff = paired_difference(a, b)
    assert diff.seeds == (0, 1, 2)
    assert diff.differences == pytest.approx((2.6, 1.8, 2.9))
    ref = sps.ttest_rel([48.2, 47.9, 48.8], [45.6, 46.1, 45.9])
    assert diff.p_two_sided == pytest.approx(ref.pvalue, rel=1e-9)
    greater = sps.ttest_rel([48.2, 47.9, 48.8], [45.6, 46.1, 45.9], alternative="greater")
    assert diff.p_higher == pytest.approx(greater.pvalue, rel=1e-9)
    ci = ref.confidence_interval(0.95)
    assert (diff.low, diff.high) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert diff.direction == "higher"
    assert paired_difference(b, a).direction == "lower"


def test_noisy_difference_is_within_noise() -> None:
    diff = paired_difference({0: 1.0, 1: 3.0, 2: 2.0}, {0: 2.0, 1: 1.0, 2: 2.5})
    assert diff.low < 0 < diff.high
    assert diff.direction == "within noise"


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(-100, 100), st.floats(-100, 100)), min_size=2, max_size=6))
def test_interval_excludes_zero_exactly_when_p_is_below_alpha(pairs) -> None:
    a = {s: x for s, (x, _) in enumerate(pairs)}
    b = {s: y for s, (_, y) in enumerate(pairs)}
    diff = paired_difference(a, b)
    if diff.std > 1e-6 * max(1.0, abs(diff.mean)):  # away from the sd = 0 special case
        excludes = diff.low > 0 or diff.high < 0
        if abs(diff.p_two_sided - ALPHA) > 1e-6:
            assert excludes == (diff.p_two_sided < ALPHA)
    assert diff.p_higher + diff.p_lower == pytest.approx(1.0)


def test_constant_difference_and_too_few_seeds() -> None:
    same = paired_difference({0: 2.0, 1: 3.0}, {0: 1.0, 1: 2.0})
    assert (same.mean, same.std, same.low, same.high) == (1.0, 0.0, 1.0, 1.0)
    assert same.p_higher == 0.0 and same.direction == "higher"
    zero = paired_difference({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
    assert zero.direction == "within noise"
    one = paired_difference({0: 2.0, 1: 3.0}, {0: 1.0})
    assert one.n == 1 and one.mean == 1.0 and math.isnan(one.low)
    assert one.direction == "too few seeds"
    assert paired_difference({}, {0: 1.0}).direction == "too few seeds"


def test_pooled_seed_std_and_single_seed_contrast() -> None:
    groups = [[1.0, 2.0, 3.0], [10.0, 12.0], [5.0]]  # the single value adds nothing
    sigma, df = pooled_seed_std(groups) or (0.0, 0)
    assert df == 3
    assert sigma == pytest.approx(math.sqrt((2.0 + 2.0) / 3))
    assert pooled_seed_std([[1.0], [2.0]]) is None
    assert statistics.stdev([1.0, 2.0, 3.0]) == 1.0
    up = single_seed_contrast(3.0 * sigma * math.sqrt(2), 2, (sigma, df))
    assert up.z == pytest.approx(3.0) and up.direction == "higher"
    assert single_seed_contrast(-1.0, 2, (sigma, df)).direction == "within noise"
    assert single_seed_contrast(-5.0, 2, (0.0, 1)).direction == "lower"
