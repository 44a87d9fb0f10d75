"""Cross-validation results pooled: every subject scored once per seed, by models that neither
trained on it nor chose their best epoch on it.

Inputs are the cv-evaluate outputs of each run (model, fold, seed): its test
metrics (with the fold's confusion matrices, raw and post-processed) and its
per-image rows; and cv-ensemble's, the seeds of each model and fold as one. Pooled pixel
metrics sum the confusion matrices over folds (and over seeds for the
headline); each model's mean slice Dice and the paired comparison average each
image's Dice over the seeds and resample by subject (seglib.stats), so their
intervals reflect the subjects,
while the fold and seed spreads say how much moves with the split and with
training randomness.
"""
import itertools
from pathlib import Path

import numpy as np

from seglib.epochlog import read_epoch_log
from seglib.errors import SegError
from seglib.io import read_csv, read_json
from seglib.metrics import image_dice, scores, subject_means
from seglib.stats import mean_interval, paired_difference, verdict

POOLED_KEYS = ("fg_dice", "fg_iou", "fg_precision", "fg_recall", "accuracy")


def run_name(model, fold, seed):
    """The stem of one run's files, as dvc.yaml's cv stages write them."""
    return f"{model}-{fold}-{seed}"


def run_part(subjects=None):
    """The folder of a run's files under metrics/test, plots/eval and plots/train: cv, or a
    learning-curve size's curve/n<subjects> (dvc.yaml's cv and curve stages)."""
    return "cv" if subjects is None else f"curve/n{subjects}"


def run_files(test_metrics, per_image, model, fold, seed, subjects=None):
    """One run's cv-evaluate (or curve-evaluate) outputs (test metrics JSON, per-image CSV) under
    compare's --test-metrics and --per-image folders; seed 'ensemble' names cv-ensemble's test metrics."""
    stem, part = run_name(model, fold, seed), run_part(subjects)
    return Path(test_metrics) / part / f"{stem}.json", Path(per_image) / part / f"{stem}.csv"


def _read(reader, path):
    if not path.exists():
        raise SegError(f"{path}: missing; crossval asks for it (run `dvc repro`, which runs cv-evaluate, "
                       "cv-ensemble and curve-evaluate)")
    return reader(path)


def run_log(train_logs, model, fold, seed, subjects=None):
    """One run's epoch log folder under compare's --train-logs folder (cv-train's or curve-train's --log)."""
    return Path(train_logs) / run_part(subjects) / run_name(model, fold, seed)


def read_logs(train_logs, models, cv_cfg, subjects=None):
    """{model: the epoch logs of its cross-validation (or learning-curve size's) runs, every fold and
    crossval.seeds seed}."""
    return {m: [_read(read_epoch_log, run_log(train_logs, m, f, s, subjects)) for f in cv_cfg.folds for s in cv_cfg.seeds]
            for m in models}


def read_runs(test_metrics, per_image, models, cv_cfg, partial=False):
    """(test metrics, per-image rows, fold ensembles) of every run crossval asks for, keyed as `pool`
    takes them. A missing file is an error, except, with `partial` (a run still going), a fold's
    ensemble, which is then left out."""
    runs = [(m, f, s) for m in models for f in cv_cfg.folds for s in cv_cfg.seeds_of(f)]
    ensembles = {(m, f): run_files(test_metrics, per_image, m, f, "ensemble")[0]
                 for m in models for f in cv_cfg.folds}
    return (*_read_pairs(test_metrics, per_image, runs),
            {key: _read(read_json, path) for key, path in ensembles.items() if not partial or path.is_file()})


def read_curve_runs(test_metrics, per_image, models, cv_cfg, subjects):
    """(test metrics, per-image rows) of a learning-curve size's runs: every model, fold and
    crossval.seeds seed, keyed as `pool` takes them."""
    runs = [(m, f, s) for m in models for f in cv_cfg.folds for s in cv_cfg.seeds]
    return _read_pairs(test_metrics, per_image, runs, subjects)


def _read_pairs(test_metrics, per_image, runs, subjects=None):
    files = {r: run_files(test_metrics, per_image, *r, subjects) for r in runs}
    return ({r: _read(read_json, json_path) for r, (json_path, _) in files.items()},
            {r: _read(read_csv, csv_path) for r, (_, csv_path) in files.items()})


def _sd(values):
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def _check_once(rows, models, cv_cfg):
    """Each image in exactly one fold's test part, the same images for every model and seed."""
    folds, seeds = list(cv_cfg.folds), list(cv_cfg.seeds)
    reference = None
    for model, seed in itertools.product(models, seeds):
        seen = {}
        for fold in folds:
            for image in {r["image"] for r in rows[model, fold, seed]}:
                if image in seen:
                    raise SegError(f"plots/eval/cv: {image} is scored by folds {seen[image]} and {fold} "
                                   f"({run_name(model, fold, seed)}); run `dvc repro` to redo the folds")
                seen[image] = fold
        if reference is None:
            reference = set(seen)
        elif set(seen) != reference:
            raise SegError(f"plots/eval/cv: {model} with seed {seed} scored other images than "
                           f"{models[0]} with seed {seeds[0]}; run `dvc repro`")
    for model, fold, seed in itertools.product(models, cv_cfg.extra_seed_folds, cv_cfg.extra_seeds):
        if {r["image"] for r in rows[model, fold, seed]} != {r["image"] for r in rows[model, fold, seeds[0]]}:
            raise SegError(f"plots/eval/cv: {run_name(model, fold, seed)} scored other images than "
                           f"{run_name(model, fold, seeds[0])}; run `dvc repro`")


def _pooled(metrics):
    """Scores of the summed confusion matrices of several test metrics, raw and post-processed."""
    raw = scores(sum(np.asarray(m["confusion"]) for m in metrics))
    post = scores(sum(np.asarray(m["postprocessed"]["confusion"]) for m in metrics))
    return {k: raw[k] for k in POOLED_KEYS}, {k: post[k] for k in POOLED_KEYS}


def _model_summary(test, model, folds, seeds):
    fold_dice = {f: [test[model, f, s]["fg_dice"] for s in seeds] for f in folds}
    fold_post = [float(np.mean([test[model, f, s]["postprocessed"]["fg_dice"] for s in seeds])) for f in folds]
    matrices = [sum(np.asarray(test[model, f, s]["confusion"]) for f in folds) for s in seeds]  # one per seed
    pooled, post = _pooled([test[model, f, s] for f in folds for s in seeds])
    seed_dice = [scores(m)["fg_dice"] for m in matrices]
    fold_means = [float(np.mean(v)) for v in fold_dice.values()]
    return {"pooled": pooled, "pooled_postprocessed": post,
            "pooled_fg_dice_by_seed": {str(s): v for s, v in zip(seeds, seed_dice)},
            "seed_sd": _sd(seed_dice),
            "fold_fg_dice": {str(f): m for f, m in zip(folds, fold_means)},
            "fold_fg_dice_postprocessed": {str(f): m for f, m in zip(folds, fold_post)},
            "fold_sd": _sd(fold_means)}


def _seed_study(test, ensembles, model, cv_cfg):
    """Per fold with extra seeds: each seed's test Dice, their spread, and all of them as one ensemble."""
    study = {}
    for fold in cv_cfg.extra_seed_folds:
        seeds = cv_cfg.seeds_of(fold)
        dice = [test[model, fold, s]["fg_dice"] for s in seeds]
        ensemble = ensembles.get((model, fold))
        study[str(fold)] = {"fg_dice_by_seed": dict(zip(map(str, seeds), dice)),
                            "mean": float(np.mean(dice)), "seed_sd": _sd(dice),
                            "ensemble_fg_dice": ensemble and ensemble["fg_dice"],
                            "ensemble_fg_dice_postprocessed": ensemble and ensemble["postprocessed"]["fg_dice"]}
    return study


def _seed_mean_dice(rows, model, folds, seeds):
    """image -> its Dice averaged over the seeds; image -> subject."""
    per_seed = [image_dice([r for f in folds for r in rows[model, f, s]]) for s in seeds]
    subject = {r["image"]: str(r["subject"]) for f in folds for r in rows[model, f, seeds[0]]}
    return {image: float(np.mean([d[image] for d in per_seed])) for image in per_seed[0]}, subject


def pool(test, rows, cv_cfg, cmp_cfg, models, ensembles):
    """The pooled cross-validation result; `test` and `rows` map (model, fold, seed) to a run's test
    metrics and per-image rows, `ensembles` maps (model, fold) to the test metrics of that fold's
    seeds as one ensemble. The pooled scores and the paired comparison use crossval.seeds, which
    every fold has; the extra seeds of a few folds give the seed study only.

    An ensemble score is None where it is not scored: a fold's ensemble missing (a run still going,
    bench.cv_progress), or, for the pooled seed ensemble, one seed (its ensemble is the run)."""
    folds, seeds = list(cv_cfg.folds), list(cv_cfg.seeds)
    _check_once(rows, models, cv_cfg)
    summaries = {m: _model_summary(test, m, folds, seeds) for m in models}
    for m in models:
        summaries[m]["seed_ensemble"] = None
        if len(seeds) > 1 and all((m, f) in ensembles for f in folds):
            pooled, post = _pooled([ensembles[m, f] for f in folds])
            summaries[m]["seed_ensemble"] = {"pooled": pooled, "pooled_postprocessed": post}
        summaries[m]["seed_study"] = _seed_study(test, ensembles, m, cv_cfg)
    dice = {m: _seed_mean_dice(rows, m, folds, seeds) for m in models}
    for m in models:
        images = sorted(dice[m][0])
        summaries[m]["slice_fg_dice"] = mean_interval([dice[m][0][i] for i in images],
                                                      [dice[m][1][i] for i in images], cmp_cfg.bootstrap, cmp_cfg.seed)
    subjects = sorted(set(dice[models[0]][1].values()))
    per_subject = {m: subject_means(*dice[m]) for m in models}
    paired = {}
    for a, b in itertools.combinations(models, 2):
        common = sorted(set(dice[a][0]) & set(dice[b][0]))
        stat = paired_difference([dice[a][0][i] for i in common], [dice[b][0][i] for i in common],
                                 [dice[a][1][i] for i in common], cmp_cfg.bootstrap, cmp_cfg.permutations,
                                 cmp_cfg.seed)
        wins = {m: (sum(summaries[m]["fold_fg_dice"][str(f)] > summaries[n]["fold_fg_dice"][str(f)] for f in folds),
                    sum(summaries[m]["pooled_fg_dice_by_seed"][str(s)] > summaries[n]["pooled_fg_dice_by_seed"][str(s)]
                        for s in seeds))
                for m, n in ((a, b), (b, a))}
        paired[f"{a}_minus_{b}"] = {**stat, "verdict": verdict(a, b, stat, wins, (len(folds), len(seeds)))}
    result = {"folds": len(folds), "seeds": seeds, "subjects": len(subjects), "models": summaries,
              "per_subject_dice": per_subject, "paired_subject_dice": paired}
    if any(t.get("scored_per") == "volume" for t in test.values()):
        result["scored_per"] = "volume"  # slice_fg_dice and the per-image rows are per volume, in 3D
    return result
