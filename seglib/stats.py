"""Paired comparison of two models over the same test images.

d_i = score_A(image i) - score_B(image i). The mean of d gets a seeded
percentile-bootstrap 95% interval, and a two-sided paired sign-flip
permutation test (exact for n <= 16, else `permutations` random flips)
asks whether a mean this far from 0 is likely if the labels A/B were
exchangeable. Same inputs and seed -> same numbers.
"""
import itertools

import numpy as np


def bootstrap_ci(diffs, n_boot, rng, level=0.95):
    index = rng.integers(0, len(diffs), size=(n_boot, len(diffs)))
    means = diffs[index].mean(1)
    tail = (1 - level) / 2 * 100
    return [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]


def sign_flip_p(diffs, n_perm, rng):
    observed = abs(diffs.mean())
    if len(diffs) <= 16:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(diffs))))
        return float(np.mean(np.abs((signs * diffs).mean(1)) >= observed - 1e-12))
    signs = rng.choice(np.array([1.0, -1.0]), size=(n_perm, len(diffs)))
    hits = np.sum(np.abs((signs * diffs).mean(1)) >= observed - 1e-12)
    return float((hits + 1) / (n_perm + 1))


def paired_difference(a, b, n_boot=2000, n_perm=10000, seed=0):
    """Mean difference a - b with its bootstrap 95% CI and permutation p-value."""
    diffs = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if diffs.size == 0:
        return {"n": 0, "mean_diff": None, "ci95": [None, None], "p_value": None}
    rng = np.random.Generator(np.random.PCG64(seed))
    return {"n": int(diffs.size), "mean_diff": float(diffs.mean()),
            "ci95": bootstrap_ci(diffs, n_boot, rng), "p_value": sign_flip_p(diffs, n_perm, rng),
            "method": "percentile bootstrap; paired sign-flip permutation test, two-sided"}
