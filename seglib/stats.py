"""Paired comparison of two models over the same test images, and one model's mean with its interval.

d_i = score_A(image i) - score_B(image i). Slices of one subject are not
independent, so when each image carries its subject the resampling unit is
the subject: the bootstrap draws whole subjects (the mean over their images
is the statistic), and the two-sided sign-flip permutation test flips the
sign of a whole subject's differences. Without subjects each image is its
own unit. The bootstrap interval is a 95% percentile interval; the test is
exact for up to 16 units, else uses `permutations` seeded random flips.
Same inputs and seed -> same numbers.
"""
import itertools

import numpy as np


def _unit_sums(diffs, groups):
    """Per-unit sums and image counts of the differences."""
    if groups is None:
        return diffs, np.ones_like(diffs)
    keys = sorted(set(groups))
    index = np.array([keys.index(g) for g in groups])
    return np.bincount(index, weights=diffs, minlength=len(keys)), np.bincount(index, minlength=len(keys)) * 1.0


def bootstrap_ci(sums, counts, n_boot, rng, level=0.95):
    draw = rng.integers(0, len(sums), size=(n_boot, len(sums)))
    means = sums[draw].sum(1) / counts[draw].sum(1)
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]


def sign_flip_p(sums, counts, n_perm, rng):
    total = counts.sum()
    observed = abs(sums.sum() / total)
    if len(sums) <= 16:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(sums))))
        return float(np.mean(np.abs(signs @ sums / total) >= observed - 1e-12))
    signs = rng.choice(np.array([1.0, -1.0]), size=(n_perm, len(sums)))
    hits = np.sum(np.abs(signs @ sums / total) >= observed - 1e-12)
    return float((hits + 1) / (n_perm + 1))


def paired_difference(a, b, groups=None, n_boot=2000, n_perm=10000, seed=0):
    """Mean difference a - b over images, its bootstrap 95% CI and permutation p-value."""
    diffs = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if diffs.size == 0:
        return {"n": 0, "units": 0, "mean_diff": None, "ci95": [None, None], "p_value": None}
    sums, counts = _unit_sums(diffs, groups)
    rng = np.random.Generator(np.random.PCG64(seed))
    return {"n": int(diffs.size), "units": int(len(sums)), "unit": "image" if groups is None else "subject",
            "mean_diff": float(diffs.mean()), "ci95": bootstrap_ci(sums, counts, n_boot, rng),
            "p_value": sign_flip_p(sums, counts, n_perm, rng),
            "method": "percentile bootstrap over units; paired sign-flip permutation test over units, two-sided"}


def mean_interval(values, groups=None, n_boot=2000, seed=0):
    """Mean of per-image scores and its bootstrap 95% CI, resampling units as paired_difference does."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"n": 0, "units": 0, "mean": None, "ci95": [None, None]}
    sums, counts = _unit_sums(values, groups)
    rng = np.random.Generator(np.random.PCG64(seed))
    return {"n": int(values.size), "units": int(len(sums)), "mean": float(values.mean()),
            "ci95": bootstrap_ci(sums, counts, n_boot, rng)}


def lead(stat):
    """+1 when the first model is ahead (the interval clear of 0 and sign-flip p < 0.05), -1 when the
    second is, 0 when no difference is detectable."""
    lo, hi = stat["ci95"]
    if stat["n"] == 0 or lo <= 0 <= hi or stat["p_value"] >= 0.05:
        return 0
    return 1 if stat["mean_diff"] > 0 else -1


def verdict(a, b, stat, wins=None, totals=None):
    """One sentence in plain words: who is ahead and how surely, or that no difference is detectable.

    Ahead means both the bootstrap interval excludes 0 and the sign-flip test
    gives p < 0.05: with few subjects the bootstrap alone is overconfident (4
    subjects cannot reach p < 0.125). For cross-validation, wins[m] = (folds,
    seeds) in which m scored higher and totals = (folds, seeds) end the sentence.
    """
    if stat["n"] == 0:
        return f"{a} and {b}: no image scored by both"
    lo, hi = stat["ci95"]
    evidence = f"over {stat['units']} {stat['unit']}s, sign-flip p = {stat['p_value']:.3g}"
    if not lead(stat):
        return (f"no detectable difference between {a} and {b}: {stat['mean_diff']:+.3f} Dice "
                f"[{lo:+.3f}, {hi:+.3f}] {evidence}")
    leader, other = (a, b) if stat["mean_diff"] > 0 else (b, a)
    lo, hi = (lo, hi) if leader == a else (-hi, -lo)
    sentence = f"{leader} ahead of {other} by {abs(stat['mean_diff']):.3f} Dice [{lo:.3f}, {hi:.3f}] {evidence}"
    if wins is None:
        return sentence
    folds, seeds = wins[leader]
    return f"{sentence}, in {folds} of {totals[0]} folds and {seeds} of {totals[1]} seeds"
