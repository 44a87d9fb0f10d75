"""Scoring a trained model on a split at each image's original size.

The model sees the prepared base-size image; its logits are resized
bilinearly to the original size before the argmax, and compared with the
original mask, so the scores are those a user of the masks would measure.
Memory stays bounded by one batch: predictions are scored and dropped, and
the few drawn in the figure are predicted again at the end.
"""
import dataclasses
import time
from pathlib import Path

import numpy as np

from seglib import postprocess
from seglib.errors import SegError
from seglib.graymap import to_class_ids
from seglib.io import read_mask
from seglib.metrics import confusion, image_dice, per_image, scores, summarise
from seglib.transforms import resize_image


@dataclasses.dataclass(frozen=True)
class ScoredSplit:
    """One split as evaluate reads it: prepared arrays, its (image, mask) items and where the masks are."""
    prepared: dict
    items: list
    mask_dir: Path
    subjects: dict        # image name -> subject key, carried into the per-image rows

    def truth(self, i, meta):
        mask = Path(self.mask_dir) / self.items[i][1]
        return to_class_ids(read_mask(mask, meta.preprocess.max_pixels)[0], meta.gray_values, mask)


@dataclasses.dataclass
class Evaluation:
    matrix: np.ndarray
    rows: list            # per image and foreground class
    images: int
    images_per_second: float

    def metrics(self):
        """Pixel scores from the one confusion matrix, its counts, and the per-image summary."""
        return {"images": self.images, **scores(self.matrix),
                "confusion": self.matrix.tolist(), "per_image": summarise(self.rows)}


def _rows(image, subject, truth, pred, spacing, num_classes):
    return [{"image": image, "subject": subject, **row} for row in per_image(truth, pred, num_classes, spacing)]


def evaluate_split(predictor, split, spacing):
    """Score `predictor` on the prepared arrays of `split` against the original masks, batch by batch:
    (raw, post-processed) Evaluations, the second with the predictor's rules applied (seglib.postprocess).
    `spacing(subject)` gives the (row, col) size of a subject's pixels."""
    num_classes, rules = predictor.meta.num_classes, predictor.postprocess
    spacings = {s: spacing(s) for s in sorted(set(split.subjects.values()))}  # a missing one fails before scoring
    matrices = [np.zeros((num_classes, num_classes), np.int64) for _ in range(2)]
    rows, seconds = ([], []), 0.0
    predictions = predictor.classes(split.prepared["images"], split.prepared["sizes"])
    for i, (image, _) in enumerate(split.items):
        start = time.perf_counter()
        pred = next(predictions)
        seconds += time.perf_counter() - start
        truth = split.truth(i, predictor.meta)
        if truth.shape != pred.shape:
            raise SegError(f"{Path(split.mask_dir) / split.items[i][1]}: {truth.shape[0]} x {truth.shape[1]} px, but its "
                           f"image was {pred.shape[0]} x {pred.shape[1]} when prepared; rerun dvc repro")
        fixed = postprocess.apply(pred, rules)
        subject = split.subjects[image]
        raw_rows = _rows(image, subject, truth, pred, spacings[subject], num_classes)
        post_rows = raw_rows if np.array_equal(fixed, pred) else \
            _rows(image, subject, truth, fixed, spacings[subject], num_classes)
        for matrix, out, labels, image_rows in zip(matrices, rows, (pred, fixed), (raw_rows, post_rows)):
            matrix += confusion(truth, labels, num_classes)
            out += image_rows
    speed = len(split.items) / seconds if seconds else float("nan")
    return tuple(Evaluation(m, r, len(split.items), speed) for m, r in zip(matrices, rows))


def worst_and_best(predictor, split, evaluation, count):
    """The `count` lowest- and highest-Dice images as (name, image01, truth, pred, dice, label) for plotting."""
    dice = image_dice(evaluation.rows)
    ranked = sorted(dice, key=lambda name: (dice[name], name))
    chosen = [(n, "worst") for n in ranked[:count]] + [(n, "best") for n in ranked[::-1][:count]]
    index = {image: i for i, (image, _) in enumerate(split.items)}
    rows = [index[name] for name, _ in chosen]
    predictions = predictor.classes(split.prepared["images"][rows], split.prepared["sizes"][rows])
    entries = []
    for (name, label), i, pred in zip(chosen, rows, predictions):
        image = resize_image(split.prepared["images"][i].astype(np.float32) / 255.0, pred.shape)
        entries.append((name, image, split.truth(i, predictor.meta), pred, dice[name], label))
    return entries
