"""Scoring a trained model on a split at each image's original size.

The model sees the prepared base-size image; its logits are resized
bilinearly to the original size before the argmax, and compared with the
original mask, so the scores are those a user of the masks would measure.
"""
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seglib.graymap import to_class_ids
from seglib.io import read_mask
from seglib.metrics import confusion, image_dice, per_image, scores, summarise
from seglib.transforms import normalise, resize_image


@torch.no_grad()
def predict_classes(model, image_uint8, stats, out_size, device):
    """Class ids at `out_size` (H, W) for one prepared uint8 image."""
    x = normalise(torch.from_numpy(image_uint8), stats["mean"], stats["std"])
    logits = model(x[None, None].to(device))
    logits = F.interpolate(logits, size=tuple(int(s) for s in out_size), mode="bilinear", align_corners=False)
    return logits.argmax(1)[0].cpu().numpy().astype(np.uint8)


@dataclasses.dataclass
class Evaluation:
    matrix: np.ndarray
    rows: list            # per image and foreground class
    predictions: dict     # image name -> class ids at original size
    truths: dict          # image name -> class ids at original size
    images_per_second: float

    def metrics(self):
        """Pixel scores from the one confusion matrix, its counts, and the per-image summary."""
        return {"images": len(self.predictions), **scores(self.matrix),
                "confusion": self.matrix.tolist(), "per_image": summarise(self.rows)}


def evaluate_split(model, prepared, items, mask_dir, gray_values, stats, spacing, device, subjects):
    """Score `model` on the prepared arrays of one split against the original masks in `mask_dir`.

    `subjects` maps image name -> subject key, carried into the per-image rows.
    """
    num_classes = len(gray_values)
    matrix = np.zeros((num_classes, num_classes), np.int64)
    rows, predictions, truths, seconds = [], {}, {}, 0.0
    for i, (image, mask) in enumerate(items):
        truth = to_class_ids(read_mask(Path(mask_dir) / mask), gray_values, Path(mask_dir) / mask)
        start = time.perf_counter()
        pred = predict_classes(model, prepared["images"][i], stats, truth.shape, device)
        seconds += time.perf_counter() - start
        matrix += confusion(truth, pred, num_classes)
        rows += [{"image": image, "subject": subjects[image], **row}
                 for row in per_image(truth, pred, num_classes, spacing)]
        predictions[image], truths[image] = pred, truth
    return Evaluation(matrix, rows, predictions, truths, len(items) / seconds if seconds else float("nan"))


def worst_and_best(evaluation, prepared, count):
    """The `count` lowest- and highest-Dice images as (name, image01, truth, pred, dice, label) for plotting."""
    dice = image_dice(evaluation.rows)
    ranked = sorted(dice, key=lambda name: (dice[name], name))
    chosen = [(n, "worst") for n in ranked[:count]] + [(n, "best") for n in ranked[::-1][:count]]
    index = {str(name): i for i, name in enumerate(prepared["names"])}
    entries = []
    for name, label in chosen:
        truth = evaluation.truths[name]
        image = resize_image(prepared["images"][index[name]].astype(np.float32) / 255.0, truth.shape)
        entries.append((name, image, truth, evaluation.predictions[name], dice[name], label))
    return entries
