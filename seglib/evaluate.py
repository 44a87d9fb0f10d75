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


def evaluate_split(predictor, split, spacing):
    """Score `predictor` on the prepared arrays of `split` against the original masks, batch by batch."""
    num_classes = predictor.meta.num_classes
    matrix = np.zeros((num_classes, num_classes), np.int64)
    rows, seconds = [], 0.0
    predictions = predictor.classes(split.prepared["images"], split.prepared["sizes"])
    for i, (image, _) in enumerate(split.items):
        start = time.perf_counter()
        pred = next(predictions)
        seconds += time.perf_counter() - start
        truth = split.truth(i, predictor.meta)
        if truth.shape != pred.shape:
            raise SegError(f"{Path(split.mask_dir) / split.items[i][1]}: {truth.shape[0]} x {truth.shape[1]} px, but its "
                           f"image was {pred.shape[0]} x {pred.shape[1]} when prepared; rerun dvc repro")
        matrix += confusion(truth, pred, num_classes)
        rows += [{"image": image, "subject": split.subjects[image], **row}
                 for row in per_image(truth, pred, num_classes, spacing)]
    return Evaluation(matrix, rows, len(split.items), len(split.items) / seconds if seconds else float("nan"))


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
