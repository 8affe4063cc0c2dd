"""Seeds until decided (analysis/sequential.py): the look schedule, the level each look spends, and a
small run of the simulation: error rates under repeated looks at most α (with binomial slack), and
above it when every look spends the full α."""
import math

import pytest

from grporm.analysis import sequential as seq
from grporm.stats import ALPHA, power, seeds_needed

REPS = 400
SLACK = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / REPS)  # α plus three binomial standard errors


def test_looks_from_the_first_seeds_by_batch_up_to_the_cap():
    assert seq.looks(5, 2, 20) == (5, 7, 9, 11, 13, 15, 17, 19, 20)  # a smaller last batch at the cap
    assert seq.looks(5, 3, 11) == (5, 8, 11)
    assert seq.looks(5, 2, None) == (5,) and seq.looks(5, 2, 5) == (5,) and seq.looks(5, 2, 3) == (5,)
    with pytest.raises(ValueError):
        seq.looks(0, 2, 10)


@pytest.mark.parametrize("spending", sorted(seq.SPENDING))
def test_the_looks_spend_alpha_in_total_each_a_part(spending):
    levels = seq.spent(seq.looks(5, 2, 20), ALPHA, spending)
    assert sum(levels) == pytest.approx(ALPHA, abs=1e-15) and all(0 < v < ALPHA for v in levels)
    assert [seq.look_level(n, 5, 2, 20, ALPHA, spending) for n in seq.looks(5, 2, 20)] == list(levels)


def test_look_level_of_a_fixed_design_is_the_full_alpha_and_off_grid_counts_fall_to_a_look():
    assert seq.look_level(5, 5, 2, None) == ALPHA and seq.is_last_look(5, 5, 2, None)
    assert seq.look_index(4, 5, 2, 20) == 0      # a failed run: still the first look
    assert seq.look_index(8, 5, 2, 20) == 1      # between looks: the last look reached
    assert seq.look_index(25, 5, 2, 20) == 8 and seq.is_last_look(25, 5, 2, 20)
    assert not seq.is_last_look(19, 5, 2, 20) and seq.is_last_look(20, 5, 2, 20)


def test_simulation_error_rates_stay_below_alpha_under_repeated_looks():
    null = seq.simulate([0.0, 0.0, 0.0], reps=REPS, seed=11)
    at_margin = seq.simulate([1.0, 0.0, 0.0], reps=REPS, seed=12)
    assert null["reproduced"] <= SLACK            # false reproduced at Δ = 0
    assert at_margin["contradicted"] <= SLACK     # false contradicted at Δ = δ
    assert null["reproduced"] + null["contradicted"] + null["inconclusive"] == pytest.approx(1.0)
    improves = seq.simulate([3.0, 0.0, 0.0], reps=REPS, seed=13)
    assert improves["reproduced"] > 0.9 and improves["seeds"] < 20  # stops early at a clear effect
    assert seq.simulate([-3.0, -3.0, -3.0], reps=REPS, seed=14)["contradicted"] > 0.9


def test_full_alpha_at_every_look_inflates_the_error_the_spending_keeps():
    naive = seq.simulate([0.0, 0.0, 0.0], reps=REPS, seed=11, spending=None)
    assert naive["reproduced"] > SLACK


def test_a_fixed_design_has_its_nominal_error():
    # one look at α / m per side: the false reproduced rate near 1 - (1 - α/m)^m-ish, below α
    fixed = seq.simulate([0.0, 0.0, 0.0], max_seeds=None, reps=REPS, seed=15)
    assert 0.005 < fixed["reproduced"] <= SLACK and fixed["seeds"] == 5


def test_fixed_design_seeds_reach_the_power():
    n = seeds_needed(2.0, 2.0, ALPHA / 3, 0.8, sides=1)  # the simulation table's fixed design
    assert power(2.0, 2.0, n, ALPHA / 3, sides=1) >= 0.8 > power(2.0, 2.0, n - 1, ALPHA / 3, sides=1)
    # the one-sided power is the noncentral t's tail beyond the critical value
    from scipy import stats
    assert power(2.0, 2.0, n, ALPHA / 3, sides=1) == pytest.approx(
        stats.nct.sf(stats.t.isf(ALPHA / 3, n - 1), n - 1, math.sqrt(n)), rel=1e-6)


def test_the_table_has_every_scenario_and_procedure():
    table = seq.simulation_table(reps=50)
    assert table.count("\n| ") == 1 + len(seq.SCENARIOS) * (len(seq.SPENDING) + 1)  # the header, then the rows
    assert "naive (full α at every look)" in table and "looks at 5, 7, 9" in table


def test_make_simulate_prints_the_table(capsys):
    from grporm.analysis import simulate

    simulate.main(["40"])
    out = capsys.readouterr().out
    assert out.startswith("40 synthetic rows per scenario") and "| no effect (Δ = 0) | obrien_fleming |" in out


def test_the_report_shows_a_search_for_seeds_from_its_looks_json(tmp_path):
    """The looks, their levels, seeds per row and CPU-minutes per decided claim: the same lines the command
    prints at its end; a damaged looks.json is said, not a traceback."""
    import json

    from grporm.analysis.report import _looks_lines

    doc = {"experiment": "mine", "design": {"n0": 3, "batch": 2, "max_seeds": 7, "counts": [3, 5, 7]},
           "looks": [{"look": 0, "level": 0.0016, "claims": {"SR": "inconclusive"}, "undecided": ["g"],
                      "cpu_minutes": 4.0, "seeds_per_row": {"SR / r18": {"ce": 3, "g": 3}}},
                     {"look": 1, "level": 0.0143, "claims": {"SR": "contradicted"}, "undecided": [],
                      "cpu_minutes": 6.0, "seeds_per_row": {"SR / r18": {"ce": 5, "g": 5}}}],
           "stopped": "decided"}
    (tmp_path / "looks.json").write_text(json.dumps(doc))
    text = "\n".join(_looks_lines(tmp_path))
    assert "2 look(s) at 3, 5 seeds per cell (batch 2, cap 7); every primary claim decided" in text
    assert "look 1 (α 0.0143): SR contradicted" in text and "seeds, SR / r18: ce 5, g 5" in text
    assert "1 of 1 primary claim(s) decided; 6.0 CPU-minutes in all, 6.0 CPU-minutes per decided claim" in text
    (tmp_path / "looks.json").write_text("{not json")
    assert "unreadable" in _looks_lines(tmp_path)[0]
    assert _looks_lines(tmp_path / "none") == []
