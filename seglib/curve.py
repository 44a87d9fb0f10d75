"""Learning curves and convergence: how each model's score, and its lead, change with the amount of
training data, and how soon a run comes near its best.

Each learning-curve size (crossval.train_subjects) is pooled exactly as the
cross-validation is (seglib.crossval.pool): every subject tested once, by the
same folds' test parts at every size, so each size has its own paired
comparison by subject. The full training part is the cross-validation itself.
A run has converged at the first epoch whose validation Dice reaches 95 % of
that run's best; the training images it has seen by then make runs of
different epoch lengths comparable.
"""
import dataclasses
import math

import numpy as np

from seglib.crossval import pool
from seglib.stats import lead

CONVERGED = 0.95


def convergence(history, fraction=CONVERGED):
    """{epoch, images_seen, best_val_dice} at the first epoch of an epoch log whose validation fg Dice
    reaches `fraction` of its best; None when no epoch has a finite Dice."""
    dice = [float(row["val_dice"]) for row in history]
    finite = [d for d in dice if math.isfinite(d)]
    if not finite:
        return None
    best = max(finite)
    row = next(r for r, d in zip(history, dice) if math.isfinite(d) and d >= fraction * best)
    seen = row.get("images_seen")
    return {"epoch": int(row["epoch"]), "images_seen": None if seen is None else int(seen), "best_val_dice": best}


def _spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"mean": float(np.mean(values)), "min": min(values), "max": max(values)}


def convergence_spread(histories):
    """Per model, over its runs' epoch logs ({model: [history, ...]}): how many runs, and the mean,
    least and most of the epoch and of the images seen at convergence."""
    out = {}
    for model, runs in histories.items():
        points = [c for c in map(convergence, runs) if c is not None]
        out[model] = {"runs": len(points), "epoch": _spread([c["epoch"] for c in points]),
                      "images_seen": _spread([c["images_seen"] for c in points])}
    return out


def curve_point(result, models, subjects):
    """One size of the curve from a pool() result: per model its pooled and mean subject Dice with
    the interval, per pair the paired difference and its verdict."""
    return {"train_subjects": subjects,
            "models": {m: {"pooled_fg_dice": result["models"][m]["pooled"]["fg_dice"],
                           "slice_fg_dice": result["models"][m]["slice_fg_dice"]} for m in models},
            "paired": {pair: {k: stat[k] for k in ("n", "units", "mean_diff", "ci95", "p_value", "verdict")}
                       for pair, stat in result["paired_subject_dice"].items()}}


def learning_curve(sized_runs, cv_result, full_subjects, cv_cfg, cmp_cfg, models):
    """The learning curve: `sized_runs` maps each size to its runs' (test metrics, per-image rows,
    {model: epoch logs}); the last point is the cross-validation (`cv_result`, with its convergence),
    on each fold's whole training part, of `full_subjects` (the mean over the folds) subjects."""
    plain = dataclasses.replace(cv_cfg, extra_seeds=(), extra_seed_folds=())
    points = [{**curve_point(pool(test, rows, plain, cmp_cfg, models, {}), models, n),
               "convergence": convergence_spread(logs)} for n, (test, rows, logs) in sized_runs.items()]
    full = curve_point(cv_result, models, round(full_subjects, 1))
    points.append({**full, "all": True, "convergence": cv_result["convergence"]})
    return {"points": points, "answers": {pair: answer(points, pair) for pair in points[0]["paired"]}}


def size_label(point):
    """A curve point's training subjects as the report writes them: 8, or all (38.4)."""
    return f"all ({point['train_subjects']:g})" if point.get("all") else f"{point['train_subjects']}"


def answer(points, pair):
    """One sentence on how the lead of `pair` (a_minus_b) moves with the training subjects."""
    a, b = pair.split("_minus_")
    stats = [p["paired"][pair] for p in points]
    leads = [lead(s) for s in stats]
    at = ", ".join(f"{size_label(p)}: {s['mean_diff']:+.3f} [{s['ci95'][0]:+.3f}, {s['ci95'][1]:+.3f}]"
                   for p, s in zip(points, stats))
    if 1 in leads and -1 in leads:
        signed = [(i, x) for i, x in enumerate(leads) if x]
        before, after = next((p, q) for p, q in zip(signed, signed[1:]) if p[1] != q[1])
        first = a if before[1] == 1 else b
        head = (f"The lead changes sign: {first} ahead with {size_label(points[before[0]])} subjects, "
                f"{b if first == a else a} ahead with {size_label(points[after[0]])}")
    elif all(x == 1 for x in leads) or all(x == -1 for x in leads):
        leader = a if leads[0] == 1 else b
        first, last = abs(stats[0]["mean_diff"]), abs(stats[-1]["mean_diff"])
        trend = "shrinks" if last < first else "grows"
        head = f"{leader} is ahead at every training-set size, and its lead {trend} with more data"
    elif not any(leads):
        head = f"No training-set size shows a detectable difference between {a} and {b}"
    else:
        ahead = [size_label(p) for p, x in zip(points, leads) if x]
        leader = a if max(leads) == 1 else b
        head = f"{leader} is ahead with {', '.join(ahead)} subjects; elsewhere no detectable difference"
    return f"{head} ({a} - {b}, mean subject Dice difference [95% interval] by training subjects: {at})."
