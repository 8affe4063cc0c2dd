"""grporm/stats.py, the suite's statistics, on numbers with known answers (the verdict's rules, planning, torch-free)."""
import math

import numpy as np
import pytest

from grporm import stats as inf


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


def test_one_sided_power_is_the_far_tail_at_the_one_sided_critical_value():
    from scipy import stats
    # one-sided at 5% equals the far tail of the two-sided test at 10%, which adds only the tiny near tail
    assert inf.power(1.0, 1.0, 10, 0.05, sides=1) == pytest.approx(inf.power(1.0, 1.0, 10, 0.10), abs=1e-4)
    expected = stats.nct.sf(stats.t.ppf(0.95, 9), 9, math.sqrt(10))
    assert inf.power(1.0, 1.0, 10, 0.05, sides=1) == pytest.approx(expected)
    assert inf.detectable(1.0, 10, sides=1) < inf.detectable(1.0, 10)


def test_bounds_are_the_t_interval_with_the_level_on_each_side_and_match_the_one_sided_tests():
    from scipy import stats
    diffs = np.array([0.5, 1.0, 1.5, 0.2, 0.9])
    mean, std, n = diffs.mean(), diffs.std(ddof=1), diffs.size
    low, high = inf.bounds(mean, std, n, 0.05 / 3)
    assert (low, high) == pytest.approx(stats.t.interval(1 - 2 * 0.05 / 3, n - 1, loc=mean, scale=std / math.sqrt(n)))
    for level in (0.001, 0.01, 0.05):
        low, high = inf.bounds(mean, std, n, level)
        assert (low > 0) == (inf.one_sided_p(mean, std, n, 0.0) < level)
        assert (high < 1.2) == (inf.one_sided_p(mean, std, n, 1.2, above=False) < level)
    assert inf.one_sided_p(mean, std, n) == pytest.approx(stats.ttest_1samp(diffs, 0.0, alternative="greater").pvalue)
    assert all(math.isnan(b) for b in inf.bounds(1.0, math.nan, 1, 0.05))


def test_cell_word_is_read_off_the_bounds_and_the_margin_test_off_the_upper_bound():
    assert inf.cell_word(0.1, 2.0) == inf.AHEAD
    assert inf.cell_word(-2.0, -0.1) == inf.BEHIND
    assert inf.cell_word(-0.1, 2.0) == inf.NO_DIFFERENCE
    assert inf.cell_word(math.nan, math.nan) == ""
    assert inf.below_margin(0.9, 1.0) and not inf.below_margin(1.0, 1.0) and not inf.below_margin(math.nan, 1.0)


def test_paired_p_is_the_t_test_of_the_differences():
    from scipy import stats
    diffs = np.array([0.5, 1.0, 1.5, 0.2, 0.9])
    expected = stats.ttest_1samp(diffs, 0.0).pvalue
    assert inf.paired_p(diffs.mean(), diffs.std(ddof=1), diffs.size) == pytest.approx(expected)
    assert math.isnan(inf.paired_p(1.0, math.nan, 1))


@pytest.mark.parametrize("rows, expected", [
    ([{"a": (0.5, 3.0), "b": (-4.0, -1.0)}, {"a": (0.1, 2.0), "b": (-1.0, 0.5)}], inf.REPRODUCED),
    ([{"a": (0.5, 3.0)}, {"a": (-0.5, 2.0)}], inf.INCONCLUSIVE),              # ahead on one backbone only
    ([{"a": (0.5, 3.0), "b": (-1, 1)}, {"a": (-1, 0.5), "b": (0.2, 2)}], inf.INCONCLUSIVE),  # not the same one
    ([{"a": (-9.0, -5.0)}, {"a": (-0.5, 0.9)}], inf.CONTRADICTED),            # every upper bound below δ = 1
    ([{"a": (-9.0, -5.0), "b": (-1.0, 1.5)}], inf.INCONCLUSIVE),              # one treatment not ruled out
    ([{"a": (-9.0, -5.0)}, {}], inf.INCONCLUSIVE),                            # a row without a test
    ([{"a": (math.nan, math.nan)}], inf.INCONCLUSIVE),
    ([], inf.INCONCLUSIVE),
])
def test_claim_word(rows, expected):
    assert inf.claim_word(rows, margin=1.0) == expected


def test_seeds_to_decide_plans_for_the_test_whose_null_is_farther():
    # mean 0.2, margin 1: deciding below the margin (distance 0.8) is nearer than ahead (0.2)
    assert inf.seeds_to_decide(0.2, 2.0, 1.0, 0.05) == inf.seeds_needed(2.0, 0.8, 0.05, sides=1)
    assert inf.seeds_to_decide(3.0, 2.0, 1.0, 0.05) == inf.seeds_needed(2.0, 3.0, 0.05, sides=1)
    assert inf.seeds_to_decide(0.2, 2.0, 1.0, 0.05 / 3) > inf.seeds_to_decide(0.2, 2.0, 1.0, 0.05)


def test_improvement_is_paired_by_seed_with_ties_half():
    wins = inf.seed_improvement([{0: (2, 1), 1: (1, 1), 2: (0, 1)}, {0: (5, 1), 3: (0, 1)}])
    assert wins.shape == (2, 4) and np.isnan(wins[1, 1]) and np.isnan(wins[0, 3])
    assert list(wins[0, :3]) == [1.0, 0.5, 0.0]
    assert inf.paired_improvement_probability(wins) == pytest.approx((0.5 + 0.5) / 2)
    # unpaired, a run of 3 vs 1 and 2 would count twice; paired, each seed once
    assert inf.paired_improvement_probability(inf.seed_improvement([{0: (3, 2), 1: (0, 1)}])) == 0.5


def test_seed_bootstrap_resamples_seeds_jointly_over_rows():
    rng = np.random.default_rng(3)
    rows = [{s: (rng.normal(0.3, 1), rng.normal(0, 1)) for s in range(6)} for _ in range(3)]
    wins = inf.seed_improvement(rows)
    point = inf.paired_improvement_probability(wins)
    low, high = inf.seed_bootstrap(wins, reps=500, seed=1)
    assert 0 <= low <= point <= high <= 1 and (low, high) == inf.seed_bootstrap(wins, reps=500, seed=1)
    # two rows that are copies of one (the same runs): joint resampling gives the interval of one row,
    # not the narrower one of two independent rows
    one = inf.seed_bootstrap(wins[:1], reps=2000, seed=2)
    twice = inf.seed_bootstrap(np.vstack([wins[:1], wins[:1]]), reps=2000, seed=2)
    assert twice == pytest.approx(one)


def test_separation_is_named():
    assert inf.separation(inf.seed_improvement([{0: (2, 1), 1: (3, 1)}, {0: (2, 1)}])) == "all"
    assert inf.separation(inf.seed_improvement([{0: (0, 1)}])) == "none"
    assert inf.separation(inf.seed_improvement([{0: (0, 1), 1: (2, 1)}])) == ""
    # each row one way, the rows apart: no resample of seeds moves it either
    rows = inf.seed_improvement([{0: (2, 1), 1: (2, 1)}, {0: (0, 1), 1: (0, 1)}])
    assert inf.separation(rows) == "rows" and inf.seed_bootstrap(rows, reps=200)[0] == inf.seed_bootstrap(rows, reps=200)[1]


def test_clopper_pearson_upper_bound():
    assert inf.clopper_pearson_upper(0, 22) == pytest.approx(1 - 0.05 ** (1 / 22))  # 12.7%: 0 of 22 is no proof of 0
    from scipy import stats
    assert inf.clopper_pearson_upper(3, 20) == pytest.approx(stats.binomtest(3, 20, alternative="less").proportion_ci(0.95).high)
    assert inf.clopper_pearson_upper(5, 5) == 1.0 and math.isnan(inf.clopper_pearson_upper(0, 0))


def test_exclusion_rate_of_an_aa_control():
    assert inf.exclusion_rate([True, False, False, False]) == 0.25
    assert math.isnan(inf.exclusion_rate([]))


def test_planning_seeds_unknown_spread_is_no_figure_and_zero_spread_a_true_one():
    """One pair: the spread is unknown, so no figure (NaN, shown '—'), never 'more than 500'; identical
    differences: the true figure (two pairs), not 'more than 500'."""
    assert math.isnan(inf.seeds_to_decide(2.0, math.nan, 1.0, 0.05))
    assert inf.seeds_to_decide(2.0, 0.0, 1.0, 0.05) == 2
    assert inf.seeds_to_decide(0.5, 1000.0, 1.0, 0.05) is None  # beyond the search: '> 500'


def test_the_statistics_module_imports_no_torch():
    """grporm.stats is every statistic of the suite; the report and the tuning rules use it without torch."""
    import subprocess
    import sys

    code = "import sys, grporm.stats; print(sorted(m for m in ('torch', 'timm', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_power_is_statsmodels_noncentral_t():
    from statsmodels.stats.power import TTestPower

    assert inf.power(0.7, 1.3, 9, 0.05) == pytest.approx(TTestPower().power(0.7 / 1.3, 9, 0.05))
    assert inf.power(-0.7, 1.3, 9, 0.01, sides=1) == pytest.approx(TTestPower().power(0.7 / 1.3, 9, 0.01, alternative="larger"))
