"""Probe a trained checkpoint of a pipeline project: would test-time flips or another
foreground threshold help, and how well does the model fit its own training slices?

    python -m bench.probe --project /tmp/bench_myo7 --model unet --every 3

For each split of the project's prepared arrays (artifacts/prepared/<split>.npz)
it prints pooled foreground Dice, precision and recall for plain prediction,
for the softmax averaged with the horizontally flipped image's (hflip) and
with both flips (hvflip), and, for two-class models, for foreground
thresholds other than 0.5; then whole-object errors (predicted foreground
components that barely touch the truth, true components barely found: a
wrong vertebra, not a wrong boundary) and the mean slice Dice per subject.
Scores are at the prepared size (preprocess.base_size), so they equal
metrics/test only for images stored at that size; --every N scores every Nth
slice (for the large training split). The README's real-data findings on
thresholds, flips and training-set fit come from this script.
"""
import argparse
import collections
import dataclasses
from pathlib import Path

import numpy as np
import torch

from seglib.inference import Predictor
from seglib.io import read_json, read_npz
from seglib.metrics import confusion, scores

THRESHOLDS = (0.3, 0.4, 0.6, 0.7)
OFF_TARGET = 0.1   # a component is a whole-object error when under this fraction of it overlaps the other mask


def components(masks):
    """8-connected component labels of boolean (N, H, W) masks (0 = background; labels unique over
    the batch), by max-label propagation: each pass spreads a component's largest label one pixel."""
    inside = torch.from_numpy(masks)[:, None].double()   # float64: exact labels beyond 2**24 pixels
    labels = torch.arange(1, masks.size + 1, dtype=torch.float64).reshape(inside.shape) * inside
    while True:
        spread = torch.nn.functional.max_pool2d(labels, 3, 1, 1) * inside
        if torch.equal(spread, labels):
            return labels[:, 0].long().numpy()
        labels = spread


def off_target(mask, other):
    """(count, pixels) of the components of (N, H, W) `mask` that overlap `other` in under OFF_TARGET of their pixels."""
    labels = components(mask)
    sizes = np.bincount(labels.ravel())
    shared = np.bincount(labels[other], minlength=len(sizes))
    off = (np.arange(len(sizes)) > 0) & (sizes > 0) & (shared < OFF_TARGET * sizes)
    return int(off.sum()), int(sizes[off].sum())


VARIANTS = {"plain": (), "hflip": ("h",), "hvflip": ("h", "v")}  # seglib.inference.FLIPS averaged with the plain pass


def variants_of(plain):
    """One Predictor per entry of VARIANTS, each `plain` with its flips."""
    return {key: dataclasses.replace(plain, flips=flips) for key, flips in VARIANTS.items()}


def probe_split(variants, arrays, units, every):
    """Confusion matrix per prediction variant; whole-object errors (counts and pixels of the
    foreground, any class > 0) and per-subject slice Dice of the plain prediction."""
    matrices = collections.defaultdict(int)
    subject_dice = collections.defaultdict(list)
    found, true = [], []
    images = arrays["images"][::every]
    sizes = [images.shape[1:]] * len(images)
    streams = {key: predictor.probabilities(images, sizes) for key, predictor in variants.items()}
    for name, truth in zip(arrays["names"][::every], arrays["masks"][::every]):
        probs = {key: next(stream) for key, stream in streams.items()}
        num_classes = probs["plain"].shape[0]
        predicted = {key: p.argmax(0) for key, p in probs.items()}
        if num_classes == 2:
            predicted.update({f"fg > {t}": (probs["plain"][1] > t).astype(np.int64) for t in THRESHOLDS})
        per_variant = {key: confusion(truth, pred, num_classes) for key, pred in predicted.items()}
        for key, matrix in per_variant.items():
            matrices[key] = matrices[key] + matrix
        found.append(predicted["plain"] > 0)
        true.append(truth > 0)
        dice = scores(per_variant["plain"])["fg_dice"]
        if not np.isnan(dice):
            subject_dice[units[str(name)]].append(dice)
    found, true = np.stack(found), np.stack(true)
    objects = {"tp": int((found & true).sum()), "fp": int((found & ~true).sum()), "fn": int((~found & true).sum())}
    for kind, (count, pixels) in (("extra", off_target(found, true)), ("missed", off_target(true, found))):
        objects.update({f"{kind} objects": count, f"{kind} pixels": pixels})
    return matrices, objects, subject_dice


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", required=True, help="a pipeline project after dvc repro (e.g. a --workdir of bench.real_data)")
    parser.add_argument("--model", required=True, help="a key of models: (its checkpoint is models/<model>/model.pt)")
    parser.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    parser.add_argument("--every", type=int, default=1, help="score every Nth slice")
    args = parser.parse_args(argv)
    root = Path(args.project)
    variants = variants_of(Predictor.load(root / "models" / args.model / "model.pt", torch.device("cpu")))
    units = read_json(root / "artifacts/split.json")["units"]
    print(f"{args.model} in {root}; every {args.every} slice(s); pooled pixels at the prepared size")
    for split in args.splits:
        arrays = read_npz(root / "artifacts/prepared" / f"{split}.npz")
        matrices, objects, subject_dice = probe_split(variants, arrays, units, args.every)
        for key, matrix in matrices.items():
            s = scores(matrix)
            print(f"{split:6s}{key:10s} fg Dice {s['fg_dice']:.4f}  precision {s['fg_precision']:.3f}  "
                  f"recall {s['fg_recall']:.3f}")
        tp, fp, fn = objects["tp"], objects["fp"], objects["fn"]
        print(f"{split:6s}whole-object errors: {objects['extra objects']} extra components "
              f"({objects['extra pixels']} of {fp} false-positive px), {objects['missed objects']} missed "
              f"({objects['missed pixels']} of {fn} missed px); foreground Dice {2 * tp / (2 * tp + fp + fn):.4f}, "
              f"{2 * tp / (2 * tp + fp - objects['extra pixels'] + fn):.4f} without the extra components")
        print(f"{split:6s}mean slice Dice per subject: "
              + ", ".join(f"{k} {np.mean(v):.3f}" for k, v in sorted(subject_dice.items())), flush=True)


if __name__ == "__main__":
    main()
