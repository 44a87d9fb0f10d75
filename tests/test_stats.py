import numpy as np
import pytest

from seglib.stats import mean_interval, paired_difference


def test_constant_difference_has_a_point_interval():
    out = paired_difference([0.9] * 30, [0.8] * 30, seed=1)
    assert out["mean_diff"] == pytest.approx(0.1)
    assert out["ci95"] == pytest.approx([0.1, 0.1])
    assert out["p_value"] < 0.001


def test_interval_matches_normal_theory_and_is_seeded():
    rng = np.random.default_rng(3)
    d = rng.normal(0.05, 0.1, 400)
    out = paired_difference(d, np.zeros_like(d), n_boot=4000, seed=7)
    half = 1.96 * d.std() / np.sqrt(len(d))
    assert out["ci95"][0] == pytest.approx(d.mean() - half, abs=0.003)
    assert out["ci95"][1] == pytest.approx(d.mean() + half, abs=0.003)
    assert paired_difference(d, np.zeros_like(d), n_boot=4000, seed=7) == out


def test_exact_permutation_p_value_for_small_samples():
    # All 4 differences positive and equal: only the all-plus and all-minus sign
    # patterns reach |mean| = 1 out of 2^4 = 16, so p = 2/16.
    out = paired_difference([1, 1, 1, 1], [0, 0, 0, 0])
    assert out["p_value"] == pytest.approx(2 / 16)


def test_symmetric_differences_are_not_significant():
    out = paired_difference([0.1, -0.1] * 20, [0.0] * 40, seed=0)
    assert out["mean_diff"] == pytest.approx(0.0)
    assert out["p_value"] > 0.5


def test_subjects_are_the_resampling_unit():
    # Two subjects with 10 identical slices each: by image the difference looks certain,
    # by subject there are only 2 units, so the exact test cannot go below 2/4.
    a, b = [0.9] * 10 + [0.7] * 10, [0.8] * 10 + [0.8] * 10
    groups = ["s1"] * 10 + ["s2"] * 10
    by_subject = paired_difference(a, b, groups=groups)
    assert by_subject["units"] == 2 and by_subject["unit"] == "subject"
    assert by_subject["mean_diff"] == pytest.approx(0.0)
    assert by_subject["p_value"] == pytest.approx(1.0)
    a2 = [0.9] * 10 + [0.85] * 10
    by_subject = paired_difference(a2, b, groups=groups)
    by_image = paired_difference(a2, b)
    assert by_subject["p_value"] == pytest.approx(2 / 4)
    assert by_image["p_value"] < 0.001
    # resampling whole subjects: the interval spans the two subject means (0.1 and 0.05)
    assert by_subject["ci95"] == pytest.approx([0.05, 0.1])


def test_mean_interval_resamples_subjects():
    # Subject A's slices 0.6 and 0.8, subject B's one slice 0.9. A bootstrap draw of two subjects is
    # AA (mean 0.7), AB or BA ((0.6 + 0.8 + 0.9) / 3) or BB (0.9), each pure draw with chance 1/4,
    # so both 2.5 % tails sit inside the pure draws: the interval is [0.7, 0.9].
    out = mean_interval([0.6, 0.8, 0.9], ["A", "A", "B"], n_boot=2000, seed=3)
    assert (out["n"], out["units"]) == (3, 2)
    assert out["mean"] == pytest.approx(2.3 / 3)
    assert out["ci95"] == pytest.approx([0.7, 0.9])
    assert mean_interval([0.6, 0.8, 0.9], ["A", "A", "B"], n_boot=2000, seed=3) == out
    assert mean_interval([]) == {"n": 0, "units": 0, "mean": None, "ci95": [None, None]}
