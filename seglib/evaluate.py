"""Scoring a trained model on a split at each image's original size.

The model sees the prepared base-size image; its logits are resized
bilinearly to the original size before the argmax, and compared with the
original mask, so the scores are those a user of the masks would measure.
Memory stays bounded by one batch: predictions are scored and dropped, and
the few drawn in the figure are predicted again at the end.

A volume is scored as a volume: every plane predicted (empty ones too, so a
model that fires outside the spine pays for it), the planes stacked in the
volume's own grid and scored in 3-D with the header's spacing (one row per
subject and class); the slice-level scores are kept beside them. Memory is
then bounded by one volume.
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
from seglib.volume import group_labels, read_label_volume


@dataclasses.dataclass(frozen=True)
class ScoredSplit:
    """One split as evaluate reads it: prepared arrays, its (image, mask) items and where the masks are.
    For volumes the prepared rows are planes (`volumes` and `planes` say whose), the items whole volumes."""
    prepared: dict
    items: list
    mask_dir: Path
    subjects: dict        # image name -> subject key, carried into the per-image rows

    @property
    def of_volumes(self):
        return "volumes" in self.prepared

    def truth(self, i, meta):
        """Class ids of prepared row i at its original size (for a volume: its plane)."""
        if self.of_volumes:
            mask = dict(self.items)[str(self.prepared["volumes"][i])]
            return self.truth_volume(mask, meta)[0][int(self.prepared["planes"][i])]
        mask = Path(self.mask_dir) / self.items[i][1]
        return to_class_ids(read_mask(mask, meta.preprocess.max_pixels)[0], meta.gray_values, mask)

    def truth_volume(self, mask, meta):
        """(class ids of a mask volume in canonical orientation, its spacing in mm)."""
        path, cfg = Path(self.mask_dir) / mask, meta.volume
        volume = read_label_volume(path, cfg.slice_axis, cfg.max_voxels)[0]
        return to_class_ids(group_labels(volume.voxels, cfg.label_groups), meta.gray_values, path), volume.spacing


@dataclasses.dataclass
class Evaluation:
    matrix: np.ndarray
    rows: list            # per image (or volume) and foreground class
    images: int
    images_per_second: float
    slices: list = None   # volumes: per plane and foreground class

    def metrics(self):
        """Pixel scores from the one confusion matrix, its counts, and the per-image summary
        (volumes: per volume in 3-D, and per slice)."""
        out = {"images": self.images, **scores(self.matrix), "confusion": self.matrix.tolist(),
               "per_image": summarise(self.rows)}
        if self.slices is not None:
            out["per_slice"] = summarise(self.slices)
        return out


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


def evaluate_volumes(predictor, split):
    """Score `predictor` on the volumes of `split`, one volume at a time: (raw, post-processed) Evaluations
    whose rows are per volume in 3-D and whose `slices` are per plane. The post-processing rules, chosen on
    validation slices, apply plane by plane."""
    num_classes, rules = predictor.meta.num_classes, predictor.postprocess
    matrices = [np.zeros((num_classes, num_classes), np.int64) for _ in range(2)]
    rows, slices, seconds, planes = ([], []), ([], []), 0.0, 0
    for image, mask in split.items:
        index = np.flatnonzero(split.prepared["volumes"] == image)
        truth, spacing = split.truth_volume(mask, predictor.meta)
        start = time.perf_counter()
        pred = np.stack(list(predictor.classes(split.prepared["images"][index], split.prepared["sizes"][index])))
        seconds += time.perf_counter() - start
        planes += len(index)
        if pred.shape != truth.shape or not np.array_equal(split.prepared["planes"][index], np.arange(len(truth))):
            raise SegError(f"{Path(split.mask_dir) / mask}: {' x '.join(map(str, truth.shape))} voxels, but its image "
                           f"was prepared as {' x '.join(map(str, pred.shape))}; rerun dvc repro")
        fixed = np.stack([postprocess.apply(plane, rules) for plane in pred])
        subject = split.subjects[image]
        for matrix, out, per_plane, labels in zip(matrices, rows, slices, (pred, fixed)):
            matrix += confusion(truth, labels, num_classes)
            out += _rows(image, subject, truth, labels, spacing, num_classes)
            for k in range(len(truth)):
                per_plane += _rows(f"{image}#{k}", subject, truth[k], labels[k], spacing[1:], num_classes)
    speed = planes / seconds if seconds else float("nan")
    return tuple(Evaluation(m, r, len(split.items), speed, s) for m, r, s in zip(matrices, rows, slices))


def worst_and_best(predictor, split, evaluation, count):
    """The `count` lowest- and highest-Dice images (planes, for volumes) as (name, image01, truth, pred,
    dice, label) for plotting."""
    dice = image_dice(evaluation.rows if evaluation.slices is None else evaluation.slices)
    ranked = sorted(dice, key=lambda name: (dice[name], name))
    chosen = [(n, "worst") for n in ranked[:count]] + [(n, "best") for n in ranked[::-1][:count]]
    index = {str(name): i for i, name in enumerate(split.prepared["names"])}
    rows = [index[name] for name, _ in chosen]
    predictions = predictor.classes(split.prepared["images"][rows], split.prepared["sizes"][rows])
    entries = []
    for (name, label), i, pred in zip(chosen, rows, predictions):
        image = resize_image(split.prepared["images"][i].astype(np.float32) / 255.0, pred.shape)
        entries.append((name, image, split.truth(i, predictor.meta), pred, dice[name], label))
    return entries
