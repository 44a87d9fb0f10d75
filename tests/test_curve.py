"""Learning curves and convergence on hand-made runs and epoch logs."""
import math

import pytest

from seglib import config
from seglib.crossval import pool
from seglib.curve import answer, convergence, convergence_spread, learning_curve
from seglib.report import curve_lines
from test_crossval import _hand_made_runs


def _log(dice, batch=8):
    return [{"epoch": e, "images_seen": e * batch, "val_dice": d} for e, d in enumerate(dice, 1)]


def test_convergence_is_the_first_epoch_at_95_percent_of_the_runs_best():
    # best 1.0 at epoch 5, so 0.95 is the bar: epoch 3 (0.96) is the first over it; a NaN epoch is skipped
    assert convergence(_log([0.2, 0.5, 0.96, math.nan, 1.0])) == {"epoch": 3, "images_seen": 24, "best_val_dice": 1.0}
    # best 0.8: the bar is 0.76, first reached at the last epoch
    assert convergence(_log([0.1, 0.4, 0.6, 0.8])) == {"epoch": 4, "images_seen": 32, "best_val_dice": 0.8}
    assert convergence(_log([math.nan, math.nan])) is None
    spread = convergence_spread({"a": [_log([0.2, 0.5, 0.96, math.nan, 1.0]), _log([0.1, 0.4, 0.6, 0.8])],
                                 "b": [_log([0.9, 1.0], batch=4)]})
    assert spread["a"] == {"runs": 2, "epoch": {"mean": 3.5, "min": 3, "max": 4},
                           "images_seen": {"mean": 28.0, "min": 24, "max": 32}}
    # 0.9 is under 0.95 x 1.0: the second epoch, 2 x 4 images
    assert spread["b"] == {"runs": 1, "epoch": {"mean": 2.0, "min": 2, "max": 2},
                           "images_seen": {"mean": 8.0, "min": 8, "max": 8}}


def _point(subjects, diff, ci, p, full=False):
    stat = {"n": 10, "units": 5, "mean_diff": diff, "ci95": ci, "p_value": p, "verdict": "..."}
    return {"train_subjects": subjects, "paired": {"a_minus_b": stat}, **({"all": True} if full else {})}


def test_the_answer_names_where_the_lead_changes_sign_or_how_it_moves():
    flips = [_point(4, -0.05, [-0.08, -0.02], 0.01), _point(8, 0.01, [-0.01, 0.03], 0.3),
             _point(30.4, 0.04, [0.02, 0.06], 0.002, full=True)]
    assert answer(flips, "a_minus_b") == (
        "The lead changes sign: b ahead with 4 subjects, a ahead with all (30.4) (a - b, mean subject Dice "
        "difference [95% interval] by training subjects: 4: -0.050 [-0.080, -0.020], 8: +0.010 [-0.010, +0.030], "
        "all (30.4): +0.040 [+0.020, +0.060]).")
    shrinking = [_point(4, 0.10, [0.05, 0.15], 0.01), _point(30.4, 0.03, [0.01, 0.05], 0.02, full=True)]
    assert answer(shrinking, "a_minus_b").startswith(
        "a is ahead at every training-set size, and its lead shrinks with more data (a - b")
    # an interval clear of 0 is not enough: p must be below 0.05 as well
    unsure = [_point(4, 0.10, [0.05, 0.15], 0.0625), _point(30.4, 0.0, [-0.01, 0.01], 0.9, full=True)]
    assert answer(unsure, "a_minus_b").startswith("No training-set size shows a detectable difference between a and b")
    partial = [_point(4, -0.10, [-0.15, -0.05], 0.01), _point(30.4, 0.0, [-0.01, 0.01], 0.9, full=True)]
    assert answer(partial, "a_minus_b").startswith("b is ahead with 4 subjects; elsewhere no detectable difference")


def test_a_learning_curve_pools_each_size_as_the_cross_validation_and_ends_with_it():
    test, rows = _hand_made_runs()
    cv_cfg, cmp_cfg = config.CrossValConfig(folds=(0, 1, 2), train_subjects=(1,)), config.CompareConfig()
    logs = {"a": [_log([0.5, 0.9, 1.0])] * 3, "b": [_log([0.9, 0.6])] * 3}
    cv = pool(test, rows, cv_cfg, cmp_cfg, ["a", "b"], {})
    cv["convergence"] = convergence_spread(logs)
    # the size-1 runs here are the same hand-made runs: the point must equal the pooled figures
    curve = learning_curve({1: (test, rows, logs)}, cv, 1.0, cv_cfg, cmp_cfg, ["a", "b"])
    small, full = curve["points"]
    assert small["train_subjects"] == 1 and "all" not in small
    assert full["all"] and full["train_subjects"] == 1.0
    for point in (small, full):
        assert point["models"]["a"]["pooled_fg_dice"] == pytest.approx(60 / 77)
        assert point["models"]["a"]["slice_fg_dice"]["mean"] == pytest.approx(0.8)
        assert point["paired"]["a_minus_b"]["mean_diff"] == pytest.approx(0.3)
        assert point["paired"]["a_minus_b"]["p_value"] == pytest.approx(0.25)
    assert small["convergence"]["a"]["epoch"] == {"mean": 3.0, "min": 3, "max": 3}  # 0.9 is under 0.95 x 1.0
    assert small["convergence"]["b"]["images_seen"]["max"] == 8
    assert curve["answers"]["a_minus_b"].startswith("No training-set size shows a detectable difference")
    lines = "\n".join(curve_lines(curve, ["a", "b"]))
    assert "| 1 | 0.8000 [0.7000, 0.9000] | 0.5000 [0.5000, 0.5000] | +0.3000 [+0.2000, +0.4000], 0.25 |" in lines
    assert "| all (1) |" in lines and curve["answers"]["a_minus_b"] in lines


@pytest.mark.parametrize("budget", ["steps", "epochs"])
def test_a_curve_run_keeps_its_subjects_images_and_draws_the_full_parts_count_or_its_own(budget):
    import numpy as np

    from seglib.train import curve_subset
    from test_crossval import _folds
    units, _, folds = _folds(k=3, subjects=20)
    fold = {**folds[0], "units": units}
    # a volume's planes are named <image>#<plane>: two planes of every training image
    names = [f"{image}#{k}" for image, _ in fold["train"] for k in range(2)]
    train = {"images": np.arange(len(names)), "names": np.array(names)}
    kept, subset = curve_subset(train, fold, 2, 5, budget, "p")
    assert {units[str(n).split("#")[0]] for n in kept["names"]} == set(subset.units) and len(subset.units) == 2
    assert len(kept["images"]) == 2 * sum(units[i] in subset.units for i, _ in fold["train"])
    assert subset.epoch_images == (len(names) if budget == "steps" else len(kept["images"]))
