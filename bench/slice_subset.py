"""How much a slice subset flatters a model scored on volumes: every cross-validation run of a volume
project scored again on its test volumes, over every plane (the 3D scores evaluate reports) and over
the planes a slice dataset would keep (every n-th plane among those whose foreground area is at least a
fraction of the subject's largest, the rule ../shared/datasets/myosegmentum-sagittal was cut by; counted
here in the canonical right-to-left order, so the every-n-th phase may differ from a given slice set's).

    python -m bench.slice_subset --project /tmp/cv_volumes [--every 5 --min-area 0.25]

Replays each cv-evaluate stage's inputs (checkpoint, prepared test arrays, masks, fold) as dvc.yaml
writes them, so it reads what the project ran; runs whose checkpoint is missing are skipped. Prints,
per model, the Dice pooled over all test voxels of every fold against the Dice pooled over the subset's
pixels, the mean per-subject Dice both ways (over every seed's run of a subject), and the mean Dice of
every scored plane (truth or prediction present) and of the subset's planes (what a slice dataset
reports as its mean slice Dice).
"""
import argparse
from pathlib import Path

import numpy as np
import yaml

from bench.stages_in_order import commands
from seglib.evaluate import ScoredSplit
from seglib.inference import load_predictor
from seglib.io import read_npz
from seglib.metrics import confusion
from seglib.runtime import cpu_name
from seglib.split import read_split


def subset_planes(truth, every, min_area):
    """Planes kept by a slice dataset: from the first plane whose foreground area reaches `min_area` of the
    largest, every `every`-th plane that reaches it."""
    area = (truth > 0).reshape(len(truth), -1).sum(1)
    qualified = np.flatnonzero(area >= min_area * area.max()) if area.max() else np.array([], int)
    return [k for k in qualified if (k - qualified[0]) % every == 0]


def _dice(matrix):
    tp = np.diag(matrix)[1:].sum()
    return 2 * tp / (2 * tp + (matrix.sum(0) - np.diag(matrix))[1:].sum() + (matrix.sum(1) - np.diag(matrix))[1:].sum())


def _option(argv, name):
    return argv[argv.index(name) + 1]


def score_run(project, argv, every, min_area):
    """(all-plane confusion, subset confusion, [(3D Dice, subset Dice) per test subject], (Dice of each scored
    plane outside the subset, of each subset plane)) of one cv-evaluate run."""
    predictor = load_predictor([project / _option(argv, "--checkpoint")], "cpu")
    split = read_split(project / _option(argv, "--split"), int(_option(argv, "--fold")))
    test = ScoredSplit(read_npz(project / _option(argv, "--prepared") / "test.npz"), split["test"],
                       project / _option(argv, "--masks"), {i: split["units"][i] for i, _ in split["test"]})
    classes = predictor.meta.num_classes
    totals, subjects, planes = [np.zeros((classes, classes), np.int64) for _ in range(2)], [], ([], [])
    for image, mask in test.items:
        rows = np.flatnonzero(test.prepared["volumes"] == image)
        truth = test.truth_volume(mask, predictor.meta)[0]
        pred = np.stack(list(predictor.classes(test.prepared["images"][rows], test.prepared["sizes"][rows])))
        kept = subset_planes(truth, every, min_area)
        whole, part = confusion(truth, pred, classes), confusion(truth[kept], pred[kept], classes)
        totals[0] += whole
        totals[1] += part
        subjects.append((_dice(whole), _dice(part)))
        for k in range(len(truth)):
            if truth[k].any() or pred[k].any():  # scored planes, as evaluate's per_slice counts them
                planes[int(k in kept)].append(_dice(confusion(truth[k], pred[k], classes)))
    return totals[0], totals[1], subjects, planes


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--min-area", type=float, default=0.25)
    args = parser.parse_args()
    pipeline, params = (yaml.safe_load((args.project / n).read_text()) for n in ("dvc.yaml", "params.yaml"))
    print(f"{cpu_name()}; subset: every {args.every}th plane with at least {args.min_area:.0%} of the largest area")
    print(f"{'model':<12}{'runs':>5}{'subjects':>9}{'pooled 3D':>11}{'pooled subset':>15}"
          f"{'mean subj 3D':>14}{'mean subj subset':>18}{'mean slice all':>16}{'mean slice subset':>19}")
    for model in params["models"]:
        runs = [argv for name, argv in commands(pipeline, params) if name.startswith(f"cv-evaluate@{model}-")
                and (args.project / _option(argv, "--checkpoint")).is_file()]
        if not runs:
            continue
        whole, part, subjects, outside, inside = 0, 0, [], [], []
        for argv in runs:
            w, p, s, (o, i) = score_run(args.project, argv, args.every, args.min_area)
            whole, part, subjects, outside, inside = whole + w, part + p, subjects + s, outside + o, inside + i
        per = np.array(subjects)
        print(f"{model:<12}{len(runs):>5}{len(subjects):>9}{_dice(whole):>11.4f}{_dice(part):>15.4f}"
              f"{per[:, 0].mean():>14.4f}{per[:, 1].mean():>18.4f}{np.mean(outside + inside):>16.4f}"
              f"{np.mean(inside):>19.4f}")


if __name__ == "__main__":
    main()
