"""Where a model's test errors come from, per subject: whole extra or missed objects, or boundaries.

    python -m bench.error_kinds --checkpoint models/cv/unet-0/seed0/model.pt --prepared artifacts/cv/fold0/prepared \\
        --masks data/masks --split artifacts/folds.json --fold 0 [--postprocess]

Per foreground class each wrong pixel is one of four kinds: a false positive in
a predicted component that touches no true pixel of its class ("extra object",
such as a vertebra outside the labelled L1-L5), any other false positive
("over": the boundary drawn too wide), a false negative in a true component
the prediction does not touch at all ("missed object"), any other false
negative ("under"). Prints each subject's Dice (its slices' confusion counts
pooled), the share of each kind in its wrong pixels and the Dice it would have
without its extra objects (a hindsight bound on what removing components can
give), then the same for all subjects. 8-connected components, original size.
"""
import argparse
from pathlib import Path

import numpy as np

from seglib import config, postprocess
from seglib.evaluate import ScoredSplit
from seglib.inference import load_predictor, use_runtime
from seglib.io import read_npz
from seglib.split import read_split

KINDS = ("extra", "over", "missed", "under")


def error_kinds(truth, pred, num_classes):
    """(C - 1, 5) counts per foreground class: true positives, then the wrong pixels of each of KINDS."""
    counts = np.zeros((num_classes - 1, 1 + len(KINDS)), np.int64)
    for c in range(1, num_classes):
        t, p = truth == c, pred == c
        predicted, _ = postprocess.components(p)
        detached = p & ~np.isin(predicted, np.unique(predicted[p & t]))  # components touching no true pixel
        true, _ = postprocess.components(t)
        missed = t & ~np.isin(true, np.unique(true[t & p]))
        fp, fn = int((p & ~t).sum()), int((t & ~p).sum())
        counts[c - 1] = ((t & p).sum(), detached.sum(), fp - detached.sum(), missed.sum(), fn - missed.sum())
    return counts


def dice(counts, drop=()):
    """Mean foreground Dice of summed counts, with the wrong pixels of the kinds in `drop` set right."""
    tp = counts[:, 0]
    wrong = sum(counts[:, 1 + i] for i, kind in enumerate(KINDS) if kind not in drop)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = 2 * tp / (2 * tp + wrong)
    return float(np.nanmean(per_class)) if not np.isnan(per_class).all() else float("nan")


def _line(name, images, counts):
    wrong = counts[:, 1:].sum()
    shares = [counts[:, 1 + i].sum() / wrong if wrong else 0.0 for i in range(len(KINDS))]
    return (f"{name:<12}{images:>7}{dice(counts):>8.4f}" + "".join(f"{s:>9.1%}" for s in shares)
            + f"{dice(counts, ('extra',)):>15.4f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name in ("--checkpoint", "--prepared", "--masks", "--split"):
        parser.add_argument(name, required=True)
    parser.add_argument("--fold", type=int, help="--split is the folds file; score fold K's test part")
    parser.add_argument("--postprocess", action="store_true", help="apply the checkpoint's rule first")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    predictor = load_predictor([args.checkpoint], use_runtime(config.section(params, "runtime")))
    split = read_split(args.split, args.fold)
    test = ScoredSplit(read_npz(Path(args.prepared) / "test.npz"), split["test"], Path(args.masks),
                       {image: split["units"][image] for image, _ in split["test"]})
    num_classes, per_subject = predictor.meta.num_classes, {}
    predictions = predictor.classes(test.prepared["images"], test.prepared["sizes"])
    for i, (image, _) in enumerate(test.items):
        pred = next(predictions)
        if args.postprocess:
            pred = postprocess.apply(pred, predictor.postprocess)
        images, counts = per_subject.get(test.subjects[image], (0, 0))
        per_subject[test.subjects[image]] = (images + 1, counts + error_kinds(test.truth(i, predictor.meta), pred,
                                                                              num_classes))
    print(f"{args.checkpoint}{' (post-processed)' if args.postprocess else ''}: share of each subject's wrong "
          "pixels by kind, hardest first")
    print(f"{'subject':<12}{'images':>7}{'Dice':>8}" + "".join(f"{k:>9}" for k in KINDS) + f"{'Dice w/o extra':>15}")
    for subject, (images, counts) in sorted(per_subject.items(), key=lambda kv: dice(kv[1][1])):
        print(_line(subject, images, counts))
    print(_line("all", sum(n for n, _ in per_subject.values()), sum(c for _, c in per_subject.values())))


if __name__ == "__main__":
    main()
