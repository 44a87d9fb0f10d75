"""Cross-validation by split unit: the fold assignment and its settings."""
import json
import random
import re

import pytest

from seglib import config
from seglib.errors import SegError
from seglib.folds import (assign_parts, check_curve_sizes, cross_validation_folds, training_subset,
                          training_units)
from test_bad_input import project, split  # noqa: F401 (fixture)


def _dataset(subjects=10, slices=3, rare=()):
    """image -> unit (copies: S0 and S1 are one unit), image -> gray values (rare subjects hold 128)."""
    units, grays, pairs = {}, {}, []
    for s in range(subjects):
        for k in range(slices):
            image = f"S{s}_{k}.png"
            units[image] = "S0+S1" if s in (0, 1) else f"S{s}"
            grays[image] = {0, 255} | ({128} if s in rare else set())
            pairs.append([image, image])
    return units, grays, pairs


def _folds(k=5, seed=42, **kwargs):
    units, grays, pairs = _dataset(**kwargs)
    parts = assign_parts(units, grays, 0, k, seed)
    return units, parts, cross_validation_folds(pairs, units, parts, k)


def test_every_unit_is_tested_once_and_plays_one_role_per_fold():
    units, parts, folds = _folds(k=3)
    all_units = set(units.values())
    tested = [units[image] for fold in folds for image, _ in fold["test"]]
    assert sorted(set(tested)) == sorted(all_units)
    assert all(sum(units[i] == u for fold in folds for i, _ in fold["test"]) == 3 for u in all_units - {"S0+S1"})
    for i, fold in enumerate(folds):
        roles = {part: {units[image] for image, _ in fold[part]} for part in fold}
        assert not (roles["train"] & roles["val"] or roles["train"] & roles["test"] or roles["val"] & roles["test"])
        assert roles["train"] | roles["val"] | roles["test"] == all_units
        assert roles["test"] == {u for u, p in parts.items() if p == i}
        assert roles["val"] == {u for u, p in parts.items() if p == (i + 1) % 3}
    # each unit validates exactly one fold too
    assert sorted(units[i] for fold in folds for i, _ in fold["val"]) == sorted(tested)


def test_copies_stay_together_and_parts_are_balanced():
    units, parts, folds = _folds(k=4, subjects=11)
    assert "S0+S1" in parts and not any(u in parts for u in ("S0", "S1"))
    sizes = [list(parts.values()).count(i) for i in range(4)]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 10


def test_assignment_is_seeded_and_independent_of_file_order():
    units, grays, _ = _dataset()
    first = assign_parts(units, grays, 0, 5, 42)
    items = list(units.items())
    random.Random(1).shuffle(items)
    assert assign_parts(dict(items), grays, 0, 5, 42) == first
    assert assign_parts(units, grays, 0, 5, 43) != first


def test_subjects_holding_a_rare_class_are_spread_over_the_parts():
    units, grays, _ = _dataset(subjects=12, rare=(3, 7, 8))
    for seed in range(20):
        parts = assign_parts(units, grays, 0, 3, seed)
        assert sorted(parts[f"S{s}"] for s in (3, 7, 8)) == [0, 1, 2], seed


@pytest.mark.parametrize("raw, message", [
    ({"folds": [0, 1]}, "crossval.folds: 2 fold(s) cannot give each fold its own test, validation and training"),
    ({"folds": [1, 2, 3]}, "crossval.folds: expected [] (hold-out only) or the fold numbers 0 to k-1 in order"),
    ({"folds": [0, 1, 1.5]}, "crossval.folds: expected []"),
    ({"seeds": [0, 0]}, "crossval.seeds: [0, 0] repeats a seed"),
    ({"seeds": []}, "crossval.seeds: expected a list of whole-number training seeds"),
    ({"folds": [0, 1, 2], "extra_seeds": [0, 1], "extra_seed_folds": [0]},
     "crossval.extra_seeds: [0] already in crossval.seeds, which every fold trains"),
    ({"folds": [0, 1, 2], "extra_seeds": [1, 1], "extra_seed_folds": [0]}, "crossval.extra_seeds: [1, 1] repeats a seed"),
    ({"folds": [0, 1, 2], "extra_seeds": [1]}, "crossval.extra_seeds and crossval.extra_seed_folds: give both"),
    ({"folds": [0, 1, 2], "extra_seed_folds": [0]}, "crossval.extra_seeds and crossval.extra_seed_folds: give both"),
    ({"folds": [0, 1, 2], "extra_seeds": [1], "extra_seed_folds": [3]},
     "crossval.extra_seed_folds: each must be one of crossval.folds [0, 1, 2], once; got [3]"),
    ({"extra_seeds": [1], "extra_seed_folds": [0]}, "crossval.extra_seed_folds: each must be one of crossval.folds []"),
    ({"folds": [0, 1, 2], "extra_seeds": [1], "extra_seed_folds": [2, 2]}, "crossval.extra_seed_folds: each must be"),
    ({"folds": [0, 1, 2], "train_subjects": [0, 4]}, "crossval.train_subjects: expected whole numbers of training "
     "subjects from 1 up, increasing and each once, e.g. [4, 8, 16] (the full training part is the cross-validation "
     "itself); got [0, 4]"),
    ({"folds": [0, 1, 2], "train_subjects": [8, 4]}, "crossval.train_subjects: expected whole numbers"),
    ({"folds": [0, 1, 2], "train_subjects": [4, 4]}, "crossval.train_subjects: expected whole numbers"),
    ({"folds": [0, 1, 2], "train_subjects": [4, 2.5]}, "crossval.train_subjects: expected whole numbers"),
    ({"folds": [0, 1, 2], "train_subjects": [4, "all"]}, "crossval.train_subjects: expected a list of numbers"),
    ({"train_subjects": [4]}, "crossval.train_subjects: a learning curve subsets each fold's training part; "
     "set crossval.folds too"),
    ({"folds": [0, 1, 2], "curve_budget": "images"}, "crossval.curve_budget: must be one of ['steps', 'epochs']"),
])
def test_wrong_crossval_settings_name_the_key(raw, message):
    with pytest.raises(SegError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        config.build_section(config.CrossValConfig, raw, "crossval")


def test_learning_curve_subsets_are_nested_seeded_order_free_and_leave_val_and_test_alone():
    units, parts, folds = _folds(k=3, subjects=20)
    fold = next(f for f in folds if "S0+S1" in training_units(f, units))  # the fold that trains on the copies
    train_units = training_units(fold, units)
    subsets = {n: training_subset(fold, units, n, seed=7) for n in (1, 2, 4, len(train_units))}
    for small, large in zip((1, 2, 4), (2, 4, len(train_units))):
        assert set(subsets[small]) < set(subsets[large])  # each smaller set inside the larger ones
    assert [len(s) for s in subsets.values()] == [1, 2, 4, len(train_units)]
    assert subsets[len(train_units)] == train_units and set(train_units) <= set(units.values())
    held_out = {units[i] for part in ("val", "test") for i, _ in fold[part]}
    assert not held_out & set(subsets[len(train_units)])  # validation and test subjects never enter
    # copies are one unit: every subset holds both of S0 and S1 or neither
    for subset in subsets.values():
        chosen = {i for i, _ in fold["train"] if units[i] in subset}
        assert ("S0_0.png" in chosen) == ("S1_0.png" in chosen)
    assert "S0+S1" in subsets[len(train_units)]
    shuffled = {**fold, "train": random.Random(3).sample(fold["train"], len(fold["train"]))}
    assert training_subset(shuffled, units, 4, seed=7) == subsets[4]  # file order plays no part
    assert any(training_subset(fold, units, 4, seed=s) != subsets[4] for s in range(8, 12))  # the seed does
    with pytest.raises(SegError, match=f"crossval.train_subjects: {len(train_units) + 1} is more than the "
                                       f"{len(train_units)} training subjects of this fold"):
        training_subset(fold, units, len(train_units) + 1, seed=7)
    smallest = min(len(training_units(f, units)) for f in folds)
    check_curve_sizes(folds, units, [1, smallest])
    with pytest.raises(SegError, match=rf"crossval.train_subjects: {smallest + 1} is more than fold \d's "
                                       rf"{smallest} training subjects \(split units\), the smallest training part"):
        check_curve_sizes(folds, units, [1, smallest + 1])


def test_split_stage_writes_the_folds_and_refuses_more_folds_than_subjects(project):  # noqa: F811
    result = split(project, crossval={"folds": [0, 1, 2]})
    assert result.returncode == 0, result.stderr
    assert "cross-validation: 3 folds of [2, 2, 2] split units" in result.stdout
    folds = json.loads((project / "out/folds.json").read_text())
    assert folds["k"] == 3 and len(folds["folds"]) == 3
    assert sorted(i for f in folds["folds"] for i, _ in f["test"]) == sorted(folds["units"])
    result = split(project, crossval={"folds": list(range(7))})
    assert result.returncode == 2
    assert "crossval.folds: 7 folds need at least 7 split units (subjects), the data has 6" in result.stderr
    # 6 units in 3 folds leave each fold 2 training subjects: a curve of 3 is refused before any training
    result = split(project, crossval={"folds": [0, 1, 2], "train_subjects": [1, 3]})
    assert result.returncode == 2
    assert "crossval.train_subjects: 3 is more than fold 0's 2 training subjects" in result.stderr


def test_hold_out_writes_an_empty_fold_list(project):  # noqa: F811
    assert split(project).returncode == 0
    folds = json.loads((project / "out/folds.json").read_text())
    assert folds["k"] == 0 and folds["folds"] == []


def test_a_folds_seeds_are_the_common_ones_and_its_extra_ones():
    cfg = config.build_section(config.CrossValConfig, {"folds": [0, 1, 2], "seeds": [0, 1], "extra_seeds": [5, 3],
                                                       "extra_seed_folds": [2]}, "crossval")
    assert [cfg.seeds_of(f) for f in (0, 1, 2)] == [(0, 1), (0, 1), (0, 1, 5, 3)]
    assert cfg.seeds_of(None) == (0, 1)  # the hold-out split


def test_tiny_cross_validation_through_dvc(tiny_ran, tmp_path):
    import itertools

    import numpy as np
    import yaml

    from bench.scratch import dvc, set_params, sh
    from bench.stages_in_order import commands
    from seglib.io import read_csv
    from seglib.metrics import image_dice, scores
    from tiny_project import copy_project, ran_stages
    models, folds, seeds = ("unet", "deeplabv3"), (0, 1, 2), (0, 1)
    root = copy_project(tiny_ran, tmp_path / "repo")
    # the folds on the committed hold-out run: the hold-out split is the same, so nothing of it retrains
    set_params(root, {"crossval.folds": list(folds), "crossval.seeds": list(seeds)})
    ran = ran_stages(dvc("repro", cwd=root).stdout)
    assert ran == ({"check-params", "split", "compare"} | {f"cv-preprocess@{f}" for f in folds}
                   | {f"cv-{s}@{m}-{f}-{seed}" for s in ("train", "evaluate") for m in models for f in folds
                      for seed in seeds}
                   | {f"cv-ensemble@{m}-{f}" for m in models for f in folds})
    # an ensemble's upstream is its own model and fold's runs, not every checkpoint in models/cv
    upstream = dvc("dag", "--dot", "cv-ensemble@unet-0", cwd=root).stdout
    assert set(re.findall(r"cv-train@[\w-]+", upstream)) == {"cv-train@unet-0-0", "cv-train@unet-0-1"}
    units = json.loads((root / "artifacts/folds.json").read_text())["units"]
    cv = json.loads((root / "metrics/compare.json").read_text())["crossval"]
    assert cv["folds"] == 3 and cv["seeds"] == [0, 1] and cv["subjects"] == 8
    for model, seed in itertools.product(models, seeds):
        scored = [row["image"] for f in folds for row in read_csv(root / f"plots/eval/cv/{model}-{f}-{seed}.csv")]
        assert sorted(scored) == sorted(units)  # every image (one foreground class) exactly once
        matrices = [json.loads((root / f"metrics/test/cv/{model}-{f}-{seed}.json").read_text())["confusion"]
                    for f in folds]
        pooled = scores(np.sum(matrices, axis=0))["fg_dice"]
        assert cv["models"][model]["pooled_fg_dice_by_seed"][str(seed)] == pytest.approx(pooled, abs=1e-6)  # JSON keeps 6 digits
    for model in models:  # raw and post-processed pooled over every fold and seed; the seed ensemble over the folds
        runs_of = [json.loads((root / f"metrics/test/cv/{model}-{f}-{s}.json").read_text())
                   for f in folds for s in seeds]
        ensembles = [json.loads((root / f"metrics/test/cv/{model}-{f}-ensemble.json").read_text()) for f in folds]
        assert all(e["members"] == [f"models/cv/{model}-{f}/seed{s}/model.pt" for s in seeds]
                   for f, e in zip(folds, ensembles))
        for kind, metrics in (("pooled", runs_of), ("pooled_postprocessed", runs_of)):
            key = "confusion" if kind == "pooled" else "postprocessed"
            matrix = np.sum([m["confusion"] if key == "confusion" else m["postprocessed"]["confusion"]
                             for m in metrics], axis=0)
            assert cv["models"][model][kind]["fg_dice"] == pytest.approx(scores(matrix)["fg_dice"], abs=1e-6)
        ensemble_matrix = np.sum([e["confusion"] for e in ensembles], axis=0)
        assert cv["models"][model]["seed_ensemble"]["pooled"]["fg_dice"] == \
            pytest.approx(scores(ensemble_matrix)["fg_dice"], abs=1e-6)
    for model in models:  # per subject: the mean over its images of the seed-averaged image Dice
        per_seed = [image_dice([r for f in folds for r in read_csv(root / f"plots/eval/cv/{model}-{f}-{s}.csv")])
                    for s in seeds]
        for subject in set(units.values()):
            images = [i for i, u in units.items() if u == subject]
            expected = np.mean([np.mean([d[i] for d in per_seed]) for i in images])
            assert cv["per_subject_dice"][model][subject] == pytest.approx(expected, abs=1e-6)
        slice_dice = cv["models"][model]["slice_fg_dice"]
        assert slice_dice["mean"] == pytest.approx(np.mean([np.mean([d[i] for d in per_seed]) for i in units]), abs=1e-6)
        assert slice_dice["units"] == 8 and slice_dice["ci95"][0] <= slice_dice["mean"] <= slice_dice["ci95"][1]
    verdict = cv["paired_subject_dice"]["unet_minus_deeplabv3"]["verdict"]
    assert verdict.startswith(("unet ahead", "deeplabv3 ahead", "no detectable difference")), verdict
    report = (root / "reports/report.md").read_text()
    assert "## Cross-validation" in report and verdict in report
    assert (root / "plots/compare/cv_unet_minus_deeplabv3_by_subject.png").is_file()
    assert (root / "plots/compare/convergence.png").is_file()

    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "cross-validation run", cwd=root)
    assert ran_stages(dvc("exp", "run", "-S", "model=deeplabv3", cwd=root).stdout) == {"check-params", "compare"}
    dvc("exp", "apply", "HEAD", cwd=root, check=False)
    sh("git", "checkout", "--", ".", cwd=root)
    # a seed study: one more seed on fold 1 only. Only its runs, the ensembles and the comparison are new,
    # nothing finished is redone; the pooled scores keep the seeds every fold has
    before = json.loads((root / "metrics/compare.json").read_text())["crossval"]
    set_params(root, {"crossval.extra_seeds": [3], "crossval.extra_seed_folds": [1]})
    ran = ran_stages(dvc("repro", cwd=root).stdout)
    assert ran == ({f"cv-{s}-extra@{m}-1-3" for s in ("train", "evaluate") for m in models}
                   | {f"cv-ensemble@{m}-{f}" for m in models for f in folds} | {"check-params", "compare"})
    cv = json.loads((root / "metrics/compare.json").read_text())["crossval"]
    report = (root / "reports/report.md").read_text()
    for model in models:
        assert cv["models"][model]["pooled"] == before["models"][model]["pooled"]
        dice = [json.loads((root / f"metrics/test/cv/{model}-1-{s}.json").read_text())["fg_dice"]
                for s in (0, 1, 3)]
        study = cv["models"][model]["seed_study"]["1"]
        assert study["fg_dice_by_seed"] == pytest.approx(dict(zip("013", dice)), abs=1e-6)
        assert study["seed_sd"] == pytest.approx(np.std(dice, ddof=1), abs=1e-6)
        ensemble = json.loads((root / f"metrics/test/cv/{model}-1-ensemble.json").read_text())
        assert ensemble["members"] == [f"models/cv/{model}-1/seed{s}/model.pt" for s in (0, 1, 3)]
        assert study["ensemble_fg_dice"] == pytest.approx(ensemble["fg_dice"], abs=1e-6)
    assert "| fold 1: sd between 3 seeds |" in report and "| fold 1: 3 seeds as one ensemble |" in report
    # bench.stages_in_order expands foreach and matrix stages to the names and commands DVC runs: with a
    # learning curve too, one curve-train and curve-evaluate per model, fold, size and seed (run by the CT test)
    set_params(root, {"crossval.train_subjects": [1, 2]})
    pipeline, params = (yaml.safe_load((root / name).read_text()) for name in ("dvc.yaml", "params.yaml"))
    listed = dvc("stage", "list", "--name-only", cwd=root).stdout.split()
    assert [name for name, _ in commands(pipeline, params)] == listed
    assert {f"curve-train@{m}-{f}-{n}-{s}" for m in models for f in folds for n in (1, 2) for s in seeds} <= set(listed)


def _hand_made_runs():
    """3 folds of one subject and two slices each. Model a's slices: S0 0.6 / 0.8, S1 0.9 / 0.9,
    S2 0.7 / 0.9; model b's all 0.5. Fold confusion matrices [[tn, fp], [fn, tp]]."""
    a_dice = {0: (0.6, 0.8), 1: (0.9, 0.9), 2: (0.7, 0.9)}
    a_matrix = {0: [[80, 4], [6, 10]], 1: [[85, 1], [2, 12]], 2: [[88, 3], [1, 8]]}

    def run(matrix, fold_dice):
        return {"fg_dice": fold_dice, "confusion": matrix,
                "postprocessed": {"confusion": matrix, "fg_dice": fold_dice + 0.001}}

    def rows(fold, dice):
        return [{"image": f"S{fold}_{k}.png", "subject": f"S{fold}", "class_id": 1, "status": "scored", "dice": d}
                for k, d in enumerate(dice)]

    test, per_image = {}, {}
    for f in range(3):
        test["a", f, 0], per_image["a", f, 0] = run(a_matrix[f], 0.8 + f / 100), rows(f, a_dice[f])
        test["b", f, 0], per_image["b", f, 0] = run([[80, 5], [5, 10]], 0.5), rows(f, (0.5, 0.5))
    return test, per_image


def test_pool_on_hand_made_folds_matches_hand_computed_scores():
    from seglib.crossval import pool
    test, per_image = _hand_made_runs()
    result = pool(test, per_image, config.CrossValConfig(folds=(0, 1, 2)), config.CompareConfig(), ["a", "b"], {})
    a, b = result["models"]["a"], result["models"]["b"]
    assert result["subjects"] == 3
    # a's matrices sum to [[253, 8], [9, 30]]: Dice 2 * 30 / (2 * 30 + 8 + 9) = 60 / 77; b's 60 / 90
    assert a["pooled"]["fg_dice"] == pytest.approx(60 / 77) and b["pooled"]["fg_dice"] == pytest.approx(60 / 90)
    assert a["pooled_postprocessed"]["fg_dice"] == pytest.approx(60 / 77)
    assert a["fold_fg_dice"] == pytest.approx({"0": 0.80, "1": 0.81, "2": 0.82}) and a["fold_sd"] == pytest.approx(0.01)
    assert a["fold_fg_dice_postprocessed"] == pytest.approx({"0": 0.801, "1": 0.811, "2": 0.821})
    # mean slice Dice 4.8 / 6; subject means 0.7, 0.9, 0.8 and each all-one-subject draw has chance 1/27
    # (above 2.5 %), so the bootstrap interval spans the lowest and highest subject means
    assert a["slice_fg_dice"]["mean"] == pytest.approx(0.8) and a["slice_fg_dice"]["units"] == 3
    assert a["slice_fg_dice"]["ci95"] == pytest.approx([0.7, 0.9])
    assert b["slice_fg_dice"] == {"n": 6, "units": 3, "mean": pytest.approx(0.5), "ci95": pytest.approx([0.5, 0.5])}
    assert result["per_subject_dice"]["a"] == pytest.approx({"S0": 0.7, "S1": 0.9, "S2": 0.8})
    # paired a - b: subject differences 0.2, 0.4, 0.3; of the 2^3 sign patterns only all-plus and all-minus
    # reach |0.3|, so p = 2 / 8, too few subjects for a verdict
    paired = result["paired_subject_dice"]["a_minus_b"]
    assert paired["mean_diff"] == pytest.approx(0.3) and paired["ci95"] == pytest.approx([0.2, 0.4])
    assert paired["p_value"] == pytest.approx(0.25) and paired["verdict"].startswith("no detectable difference")


def test_cv_progress_pools_the_finished_folds_and_names_the_rest(tmp_path):
    import yaml

    from conftest import REPO, run_module
    from seglib.io import write_csv, write_json
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"], params["models"] = "a", {"a": {"arch": "unet"}, "b": {"arch": "unet"}}
    params["crossval"]["folds"] = [0, 1, 2]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    test, per_image = _hand_made_runs()
    for (model, fold, seed), metrics in test.items():
        if fold != 1:  # fold 1 still running
            write_json(tmp_path / f"metrics/test/cv/{model}-{fold}-{seed}.json", metrics)
            write_csv(tmp_path / f"plots/eval/cv/{model}-{fold}-{seed}.csv", per_image[model, fold, seed])
    (tmp_path / "metrics/test/cv/a-1-0.json").write_text("{}")  # one file of fold 1 is not enough
    result = run_module("bench.cv_progress", "--project", tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    # folds 0 and 2: a's matrices sum to [[168, 7], [7, 18]], Dice 36 / 50; slices 0.6, 0.8, 0.7, 0.9
    assert "2 folds x 1 seed(s); every one of 2 subjects" in out
    assert "| pooled fg_dice | 0.7200 | 0.6667 |" in out and "| mean slice fg Dice | 0.7500 | 0.5000 |" in out
    assert "| fold 2 fg_dice, post-processed | 0.8210 | 0.5010 |" in out and "fold 1 fg_dice" not in out
    assert out.rstrip().endswith("folds not finished: 1")
    only_a = run_module("bench.cv_progress", "--project", tmp_path, "--models", "a").stdout
    assert "| | a |" in only_a and "ahead" not in only_a
    # a seed study on folds 0 and 2, seed 1 done on fold 0 only: fold 0's study shows, fold 2's waits
    params["crossval"]["extra_seeds"], params["crossval"]["extra_seed_folds"] = [1], [0, 2]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for model, fold_dice in (("a", 0.78), ("b", 0.5)):
        write_json(tmp_path / f"metrics/test/cv/{model}-0-1.json", {**test[model, 0, 0], "fg_dice": fold_dice})
        write_csv(tmp_path / f"plots/eval/cv/{model}-0-1.csv", per_image[model, 0, 0])
    out = run_module("bench.cv_progress", "--project", tmp_path).stdout
    assert "| pooled fg_dice | 0.7200 | 0.6667 |" in out  # the pooled scores keep to crossval.seeds
    assert "| fold 0: mean fg Dice of 2 seeds | 0.7900 | 0.5000 |" in out and "fold 2: mean" not in out
    assert "| fold 0: sd between 2 seeds | 0.0141 | 0.0000 |" in out and "ensemble" not in out
    assert "seed study not finished on fold(s): 2\nfolds not finished: 1" in out
    for model in ("a", "b"):  # cv-ensemble has scored fold 0's two seeds as one
        write_json(tmp_path / f"metrics/test/cv/{model}-0-ensemble.json",
                   {"fg_dice": 0.83 if model == "a" else 0.5, "postprocessed": {"fg_dice": 0.84}})
    out = run_module("bench.cv_progress", "--project", tmp_path).stdout
    assert "| fold 0: 2 seeds as one ensemble | 0.8300 | 0.5000 |" in out
    assert "| fold 0: 2-seed ensemble, post-processed | 0.8400 | 0.8400 |" in out
    wrong = run_module("bench.cv_progress", "--project", tmp_path, "--models", "c")
    assert wrong.returncode == 2 and "--models: c not in models:" in wrong.stderr


def test_cv_progress_pools_the_learning_curve_of_the_folds_where_every_size_is_done(tmp_path):
    import yaml

    from conftest import REPO, run_module
    from seglib.epochlog import write_epoch_log
    from seglib.io import write_csv, write_json
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"], params["models"] = "a", {"a": {"arch": "unet"}, "b": {"arch": "unet"}}
    params["crossval"].update(folds=[0, 1, 2], train_subjects=[1])
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    test, per_image = _hand_made_runs()
    # fold f tests S<f>, validates on S<f+1> and trains on S<f+2>: one training subject each
    images = {f: [[f"S{f}_{k}.png"] * 2 for k in range(2)] for f in range(3)}
    write_json(tmp_path / "artifacts/folds.json", {
        "folds": [{"test": images[f], "val": images[(f + 1) % 3], "train": images[(f + 2) % 3]} for f in range(3)],
        "units": {f"S{f}_{k}.png": f"S{f}" for f in range(3) for k in range(2)}})
    log = [{"epoch": e, "images_seen": 8 * e, "val_dice": d} for e, d in enumerate((0.5, 0.96, 1.0), 1)]
    for (model, fold, seed), metrics in test.items():
        for part in ("cv", "curve/n1"):
            if fold == 1 and part == "curve/n1":
                continue  # fold 1's curve still running: the curve pools folds 0 and 2
            write_json(tmp_path / f"metrics/test/{part}/{model}-{fold}-{seed}.json", metrics)
            write_csv(tmp_path / f"plots/eval/{part}/{model}-{fold}-{seed}.csv", per_image[model, fold, seed])
            write_epoch_log(tmp_path / f"plots/train/{part}/{model}-{fold}-{seed}", log)
    out = run_module("bench.cv_progress", "--project", tmp_path, "--figures", tmp_path / "figures")
    assert out.returncode == 0, out.stderr
    assert "3 folds x 1 seed(s)" in out.stdout and "## Learning curve\n\nOver fold(s) 0, 2 of 3." in out.stdout
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["convergence.png", "learning_curve.png"]
    # folds 0 and 2 at 1 subject and in full (the same hand-made runs): a's slices 0.6, 0.8, 0.7, 0.9
    assert "| 1 | 0.7500 [0.7000, 0.8000] | 0.5000 [0.5000, 0.5000] | +0.2500 [+0.2000, +0.3000], 0.5 |" in out.stdout
    assert "| all (1) | 0.7500 [0.7000, 0.8000] |" in out.stdout
    assert "| 1 | 2 | 16 | 2 | 16 |" in out.stdout  # convergence: 0.96 >= 0.95 x 1.0 at epoch 2
    # a size not run on any fold: no curve, unless --sizes leaves it out
    from bench.cv_progress import progress
    from seglib.errors import SegError
    params["crossval"]["train_subjects"] = [1, 2]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert "## Learning curve" not in "\n".join(progress(tmp_path)[0])
    assert "\n".join(progress(tmp_path, sizes=[1])[0]) in out.stdout
    with pytest.raises(SegError, match=r"--sizes: 3 not in crossval.train_subjects"):
        progress(tmp_path, sizes=[3])


@pytest.mark.parametrize("stat, expected", [
    ({"n": 40, "units": 4, "unit": "subject", "mean_diff": 0.48, "ci95": [0.36, 0.61], "p_value": 0.125},
     "no detectable difference between unet and deeplabv3: +0.480 Dice [+0.360, +0.610] over 4 subjects, "
     "sign-flip p = 0.125"),
    ({"n": 500, "units": 50, "unit": "subject", "mean_diff": 0.03, "ci95": [0.02, 0.05], "p_value": 0.001},
     "unet ahead of deeplabv3 by 0.030 Dice [0.020, 0.050] over 50 subjects, sign-flip p = 0.001, "
     "in 5 of 5 folds and 3 of 3 seeds"),
    ({"n": 500, "units": 50, "unit": "subject", "mean_diff": -0.02, "ci95": [-0.04, -0.01], "p_value": 0.01},
     "deeplabv3 ahead of unet by 0.020 Dice [0.010, 0.040] over 50 subjects, sign-flip p = 0.01, "
     "in 4 of 5 folds and 2 of 3 seeds"),
    ({"n": 500, "units": 50, "unit": "subject", "mean_diff": 0.004, "ci95": [-0.002, 0.01], "p_value": 0.2},
     "no detectable difference between unet and deeplabv3: +0.004 Dice [-0.002, +0.010] over 50 subjects, "
     "sign-flip p = 0.2"),
])
def test_verdict_needs_an_interval_without_zero_and_a_significant_sign_flip_test(stat, expected):
    from seglib.stats import verdict
    wins = {"unet": (5, 3), "deeplabv3": (4, 2)}
    assert verdict("unet", "deeplabv3", stat, wins, (5, 3)) == expected


def test_a_hold_out_verdict_names_its_units_and_no_folds():
    from seglib.stats import verdict
    stat = {"n": 36, "units": 6, "unit": "subject", "mean_diff": 0.2178, "ci95": [0.1836, 0.2567], "p_value": 0.03125}
    assert verdict("unet", "deeplabv3", stat) == \
        "unet ahead of deeplabv3 by 0.218 Dice [0.184, 0.257] over 6 subjects, sign-flip p = 0.0312"
    by_image = {**stat, "unit": "image", "units": 36}
    assert verdict("deeplabv3", "unet", by_image).endswith("over 36 images, sign-flip p = 0.0312")


def test_report_shows_undefined_scores_as_n_a():
    from seglib.report import crossval_lines
    result = {"folds": 3, "seeds": [0], "subjects": 3,
              "models": {m: {"pooled": {k: (float("nan") if k == "fg_precision" else 0.5) for k in
                                        ("fg_dice", "fg_iou", "fg_precision", "fg_recall", "accuracy")},
                             "pooled_postprocessed": {"fg_dice": float("nan")},
                             "slice_fg_dice": {"mean": 0.5, "ci95": [0.4, float("nan")]},
                             "fold_fg_dice": {"0": 0.5}, "fold_fg_dice_postprocessed": {"0": float("nan")},
                             "fold_sd": 0.1, "seed_sd": None, "seed_ensemble": None,
                             "seed_study": {"0": {"fg_dice_by_seed": {"0": 0.5, "1": 0.6}, "mean": 0.55,
                                                  "seed_sd": 0.07, "ensemble_fg_dice": None,
                                                  "ensemble_fg_dice_postprocessed": None}}}
                         for m in ("a", "b")},
              "per_subject_dice": {"a": {"S1": 0.5}, "b": {"S1": 0.4}},
              "paired_subject_dice": {"a_minus_b": {"verdict": "no detectable difference"}}}
    text = "\n".join(crossval_lines(result))
    assert "| pooled fg_precision | n/a | n/a |" in text and "nan" not in text
    assert "| sd between seeds (fg Dice) | n/a | n/a |" in text
    assert "| pooled fg_dice, post-processed | n/a | n/a |" in text and "seed ensemble" not in text
    assert "| its 95% interval (bootstrap by subject) | [0.4000, n/a] | [0.4000, n/a] |" in text
    assert "| fold 0 fg_dice (mean of seeds) | 0.5000 | 0.5000 |" in text
    assert "| fold 0 fg_dice, post-processed | n/a | n/a |" in text
    assert "| fold 0: sd between 2 seeds | 0.0700 | 0.0700 |" in text and "ensemble" not in text
    # a run still going: b's fold ensembles scored, a's not yet
    result["models"]["b"]["seed_ensemble"] = {"pooled": {"fg_dice": 0.6}, "pooled_postprocessed": {"fg_dice": 0.7}}
    text = "\n".join(crossval_lines(result))
    assert "| seed ensemble pooled fg_dice | n/a | 0.6000 |" in text
    assert "| seed ensemble pooled fg_dice, post-processed | n/a | 0.7000 |" in text
    result["models"]["a"]["seed_study"]["0"]["ensemble_fg_dice"] = 0.65
    text = "\n".join(crossval_lines(result))
    assert "| fold 0: 2 seeds as one ensemble | 0.6500 | n/a |" in text
    assert "2-seed ensemble, post-processed" not in text


def test_the_kept_levels_results_pool_with_compares_code():
    """docs/results/cv-levels holds real folds' files (docs/crossval.md); they must keep pooling."""
    from conftest import REPO, run_module
    result = run_module("bench.cv_progress", "--project", REPO / "docs/results/cv-levels", "--models", "unet")
    assert result.returncode == 0, result.stderr
    assert "| fold 1 fg_dice (mean of seeds) | 0.8835 |" in result.stdout  # as docs/crossval.md reports


def test_the_kept_learning_curve_pools_with_compares_code():
    """docs/results/curve-mri-amx grows fold by fold (bench.cv_progress --keep); what docs/crossval.md quotes must pool."""
    from bench.cv_progress import progress
    from conftest import REPO
    lines = "\n".join(progress(REPO / "docs/results/curve-mri-amx", sizes=[4])[0])
    assert "| fold 0 fg_dice (mean of seeds) | 0.8927 | 0.8553 |" in lines
    assert "## Learning curve" in lines and "\n| 4 | " in lines and "\n| all (" in lines


def test_cv_progress_keeps_finished_runs_refuses_other_bytes_and_lists_what_is_left(tmp_path):
    import yaml

    from bench.cv_progress import keep, stages_to_do
    from conftest import REPO
    from seglib.errors import SegError
    project, into = tmp_path / "project", tmp_path / "kept"
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"], params["models"] = "a", {"a": {"arch": "unet"}, "b": {"arch": "unet"}}
    params["crossval"].update(folds=[0, 1, 2], train_subjects=[1, 2])
    files = {"params.yaml": yaml.safe_dump(params), "artifacts/folds.json": "{}",
             "metrics/test/cv/a-0-0.json": "{}", "plots/eval/cv/a-0-0.csv": "image\n",
             "metrics/cv/a-0-0.json": "{}", "logs/timing/cv/a-0-0.json": "{}",
             "plots/train/cv/a-0-0/metrics.json": "{}", "plots/train/cv/a-0-0/plots/metrics/val/dice.tsv": "step\n",
             "metrics/test/curve/n1/b-0-0.json": "{}", "plots/eval/curve/n1/b-0-0.csv": "image\n",
             "metrics/test/cv/a-0-ensemble.json": "{}", "plots/eval/cv/a-0-ensemble.csv": "image\n",
             "metrics/test/cv/b-0-0.json": "{}",  # evaluated halfway: no per-image rows yet
             "metrics/test/a.json": "{}", "plots/eval/a.csv": "image\n"}  # the hold-out run is not kept
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    copied = {f.as_posix() for f in keep(project, into)}
    assert copied == set(files) - {"metrics/test/cv/b-0-0.json", "metrics/test/a.json", "plots/eval/a.csv"}
    assert all((into / f).read_text() == files[f] for f in copied) and keep(project, into) == []
    # fold 0: a at size 1 and 2, b at size 2 and its full part are left, the smallest size and the full part
    # first; a run finished in the project (but not kept) counts as done, as does one only kept
    (project / "plots/eval/cv/b-0-0.csv").write_text("image\n")
    for name in ("metrics/test/curve/n1/b-0-0.json", "plots/eval/curve/n1/b-0-0.csv"):
        (project / name).unlink()
    todo = stages_to_do(project, into)
    assert todo[:3] == ["curve-evaluate@a-0-1-0", "curve-evaluate@a-0-2-0", "curve-evaluate@b-0-2-0"]
    assert todo[3:5] == ["curve-evaluate@a-1-1-0", "curve-evaluate@b-1-1-0"] and len(todo) == 3 + 2 * 6
    # a rerun's other bytes: refused before anything is copied (b-0-0 stays unkept)
    (project / "plots/eval/cv/a-0-0.csv").write_text("image\nother\n")
    with pytest.raises(SegError, match=r"kept.*plots/eval/cv/a-0-0.csv already kept with other bytes.*nothing copied"):
        keep(project, into)
    assert not (into / "plots/eval/cv/b-0-0.csv").exists()
