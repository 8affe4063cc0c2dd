"""The verdict's statistical rules on numbers with known answers."""
import math

import numpy as np
import pytest

from grporm.analysis import inference as inf


def test_power_matches_the_published_noncentral_t_value():
    # one-sample (paired) t, two-sided, alpha 0.05, effect size 1, n = 10: power 0.8031 (G*Power, statsmodels)
    assert inf.power(1.0, 1.0, 10) == pytest.approx(0.80310, abs=2e-5)


def test_power_at_zero_difference_is_the_level_and_grows_with_the_difference():
    assert inf.power(0.0, 2.0, 5) == pytest.approx(0.05, abs=1e-12)
    assert inf.power(0.5, 1.0, 8) < inf.power(1.0, 1.0, 8) < inf.power(2.0, 1.0, 8)
    assert inf.power(-1.0, 1.0, 8) == pytest.approx(inf.power(1.0, 1.0, 8))


def test_detectable_difference_has_exactly_the_target_power_and_exceeds_the_normal_approximation():
    d = inf.detectable(1.0, 5)
    assert inf.power(d, 1.0, 5) == pytest.approx(0.80, abs=1e-8)
    # the approximation (t_{1-a/2} + t_power) * sd / sqrt(n) understates it at small n
    from scipy import stats
    approx = (stats.t.ppf(0.975, 4) + stats.t.ppf(0.8, 4)) / math.sqrt(5)
    assert d > approx
    assert math.isnan(inf.detectable(1.0, 1)) and math.isnan(inf.detectable(0.0, 5))


def test_seeds_needed_is_the_first_n_that_reaches_the_target():
    n = inf.seeds_needed(2.0, 3.0)
    assert inf.detectable(2.0, n) <= 3.0 < inf.detectable(2.0, n - 1)
    assert inf.seeds_needed(100.0, 0.1, most=50) is None


def test_holm_adjusts_step_down_and_keeps_the_order_monotone():
    adjusted = inf.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": math.nan})
    assert adjusted["a"] == pytest.approx(0.03)
    assert adjusted["c"] == pytest.approx(0.06)
    assert adjusted["b"] == pytest.approx(0.06)  # 1 x 0.04 would undercut c's 0.06: step-down keeps the max
    assert math.isnan(adjusted["d"])
    assert inf.holm({"only": 0.02}) == {"only": 0.02}


def test_paired_p_is_the_t_test_of_the_differences():
    from scipy import stats
    diffs = np.array([0.5, 1.0, 1.5, 0.2, 0.9])
    expected = stats.ttest_1samp(diffs, 0.0).pvalue
    assert inf.paired_p(diffs.mean(), diffs.std(ddof=1), diffs.size) == pytest.approx(expected)
    assert math.isnan(inf.paired_p(1.0, math.nan, 1))


def test_word_follows_the_adjusted_p_value():
    assert inf.word(+1.0, 0.01) == inf.AHEAD
    assert inf.word(-1.0, 0.01) == inf.BEHIND
    assert inf.word(+1.0, 0.2) == inf.NO_DIFFERENCE
    assert inf.word(+1.0, math.nan) == ""


@pytest.mark.parametrize("rows, expected", [
    ([({"a": "ahead", "b": "behind"}, 2.0), ({"a": "ahead", "b": "no difference"}, 2.0)], inf.REPRODUCED),
    ([({"a": "ahead"}, 2.0), ({"a": "no difference"}, 2.0)], inf.INCONCLUSIVE),   # ahead on one backbone only
    ([({"a": "behind"}, 2.0), ({"a": "no difference"}, 2.5)], inf.CONTRADICTED),
    ([({"a": "behind"}, 2.0), ({"a": "no difference"}, 4.0)], inf.INCONCLUSIVE),  # one row cannot detect 3 points
    ([({"a": "behind"}, math.nan)], inf.INCONCLUSIVE),
    ([], inf.INCONCLUSIVE),
])
def test_claim_word(rows, expected):
    assert inf.claim_word(rows, target=3.0) == expected


def test_improvement_probability_counts_pairs_and_half_ties():
    assert inf.improvement_probability([1, 2], [0, 3]) == 0.5
    assert inf.improvement_probability([1, 1], [1, 1]) == 0.5
    assert inf.improvement_probability([5, 6], [1, 2]) == 1.0
    assert inf.mean_improvement_probability([([5, 6], [1, 2]), ([0, 0], [1, 1])]) == 0.5


def test_stratified_bootstrap_interval_covers_the_estimate_and_is_reproducible():
    rng = np.random.default_rng(3)
    tasks = [(rng.normal(0.3, 1, 5), rng.normal(0, 1, 5)) for _ in range(4)]
    point = inf.mean_improvement_probability(tasks)
    low, high = inf.stratified_bootstrap(tasks, reps=500, seed=1)
    assert 0 <= low <= point <= high <= 1
    assert (low, high) == inf.stratified_bootstrap(tasks, reps=500, seed=1)
    assert inf.stratified_bootstrap([([5, 6], [1, 2])], reps=200) == (1.0, 1.0)  # every resample improves


def test_exclusion_rate_of_an_aa_control():
    assert inf.exclusion_rate([True, False, False, False]) == 0.25
    assert math.isnan(inf.exclusion_rate([]))
