"""Probe a trained checkpoint of a pipeline project: would test-time flips or another
foreground threshold help, and how well does the model fit its own training slices?

    python -m bench.probe --project /tmp/bench_myo7 --model unet --every 3

For each split of the project's prepared arrays (artifacts/prepared/<split>.npz)
it prints pooled foreground Dice, precision and recall for plain prediction,
for the softmax averaged with the horizontally flipped image's (hflip) and
with both flips (hvflip), and, for two-class models, for foreground
thresholds other than 0.5; then the mean slice Dice per subject. Scores are
at the prepared size (preprocess.base_size), so they equal metrics/test only
for images stored at that size; --every N scores every Nth slice (for the
large training split). The README's real-data findings on thresholds, flips
and training-set fit come from this script.
"""
import argparse
import collections
import json
from pathlib import Path

import numpy as np
import torch

from seglib.metrics import confusion, scores
from seglib.models import load_checkpoint
from seglib.transforms import normalise

THRESHOLDS = (0.3, 0.4, 0.6, 0.7)


@torch.no_grad()
def probabilities(model, image, stats):
    """Softmax (C, H, W) of the plain image and of its flips, each flipped back."""
    x = normalise(torch.from_numpy(image), stats["mean"], stats["std"])[None, None]
    plain = model(x).softmax(1)[0]
    hflip = model(x.flip(3)).softmax(1)[0].flip(2)
    vflip = model(x.flip(2)).softmax(1)[0].flip(1)
    return {"plain": plain, "hflip": (plain + hflip) / 2, "hvflip": (plain + hflip + vflip) / 3}


def probe_split(model, stats, arrays, units, every):
    """Confusion matrix per prediction variant, and per-subject slice Dice of the plain prediction."""
    num_classes = None
    matrices = collections.defaultdict(int)
    subject_dice = collections.defaultdict(list)
    for name, image, truth in list(zip(arrays["names"], arrays["images"], arrays["masks"]))[::every]:
        probs = probabilities(model, image, stats)
        num_classes = probs["plain"].shape[0]
        variants = {k: p.argmax(0).numpy() for k, p in probs.items()}
        if num_classes == 2:
            variants.update({f"fg > {t}": (probs["plain"][1] > t).numpy().astype(np.int64) for t in THRESHOLDS})
        for key, pred in variants.items():
            matrices[key] = matrices[key] + confusion(truth, pred, num_classes)
        dice = scores(confusion(truth, variants["plain"], num_classes))["fg_dice"]
        if not np.isnan(dice):
            subject_dice[units[str(name)]].append(dice)
    return matrices, subject_dice


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", required=True, help="a pipeline project after dvc repro (e.g. a --workdir of bench.real_data)")
    parser.add_argument("--model", required=True, help="a key of models: (its checkpoint is models/<model>/model.pt)")
    parser.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    parser.add_argument("--every", type=int, default=1, help="score every Nth slice")
    args = parser.parse_args(argv)
    root = Path(args.project)
    torch.manual_seed(0)
    model, meta = load_checkpoint(root / "models" / args.model / "model.pt")
    stats = {"mean": meta["mean"], "std": meta["std"]}
    units = json.loads((root / "artifacts/split.json").read_text())["units"]
    print(f"{args.model} in {root}; every {args.every} slice(s); pooled pixels at the prepared size")
    for split in args.splits:
        arrays = np.load(root / "artifacts/prepared" / f"{split}.npz")
        matrices, subject_dice = probe_split(model, stats, arrays, units, args.every)
        for key, matrix in matrices.items():
            s = scores(matrix)
            print(f"{split:6s}{key:10s} fg Dice {s['fg_dice']:.4f}  precision {s['fg_precision']:.3f}  "
                  f"recall {s['fg_recall']:.3f}")
        print(f"{split:6s}mean slice Dice per subject: "
              + ", ".join(f"{k} {np.mean(v):.3f}" for k, v in sorted(subject_dice.items())), flush=True)


if __name__ == "__main__":
    main()
