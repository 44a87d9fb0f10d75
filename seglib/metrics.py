"""Segmentation metrics from one confusion matrix, and per-image scores.

Rules, written once here (tests/test_metrics.py checks them on hand-worked vectors):
- M[g, p] counts pixels of truth class g predicted as p. For class c:
  TP = M[c, c], FN = row_c - TP, FP = column_c - TP.
- IoU = TP/(TP+FP+FN), Dice = 2TP/(2TP+FP+FN), precision = TP/(TP+FP),
  recall = TP/(TP+FN). F1 is Dice (2PR/(P+R) reduces to it) and is reported
  from Dice so a class with no prediction still scores 0, not undefined.
- Undefined is neither 0 nor 1: a zero denominator gives NaN (null in JSON),
  and means skip NaN. "mean_*" averages all classes (the original blog's
  numbers, background included); "fg_*" averages foreground classes (1..C-1),
  the honest headline when background dominates.
- Per image and foreground class: truth and prediction both empty -> no score;
  truth present, prediction empty -> Dice 0 and a "miss"; truth empty,
  prediction present -> Dice 0 and a "false positive". Boundary distances
  exist only when both are present; misses are counted, never dropped.
- Boundary = foreground pixels with a 4-neighbour outside the object (6 in
  3-D; the image edge counts as outside). HD95 = max of the two directed
  95th percentiles of boundary-to-boundary distances; ASSD = mean of all
  those distances in both directions. Pixels, or mm with a pixel spacing.
- A volume is scored the same way in 3-D (per_image on the whole volume):
  one row per subject and class, distances between the 3-D surfaces.
"""
import numpy as np

NAMES = ("iou", "dice", "precision", "recall", "f1")   # per class, and averaged as mean_* and fg_*
EPOCH_METRICS = ("loss", "accuracy") + NAMES           # the epoch log's train_* and val_* columns


def confusion(truth, pred, num_classes):
    """C x C counts for integer arrays of any (equal) shape."""
    index = truth.astype(np.int64).ravel() * num_classes + pred.astype(np.int64).ravel()
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _ratio(num, den):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def _nanmean(values):
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else float("nan")


def scores(matrix):
    """Accuracy, per-class IoU/Dice/precision/recall/F1, and their means (all and foreground)."""
    m = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(m)
    fp, fn = m.sum(0) - tp, m.sum(1) - tp
    per_class = {
        "iou": _ratio(tp, tp + fp + fn),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
    }
    per_class["f1"] = per_class["dice"]
    total = m.sum()
    out = {"accuracy": float(np.trace(m) / total) if total else float("nan")}
    for name in NAMES:
        out[name] = per_class[name].tolist()
        out[f"mean_{name}"] = _nanmean(per_class[name])
        out[f"fg_{name}"] = _nanmean(per_class[name][1:])
    return out


def boundary(mask):
    """Boolean map of the object's boundary pixels or voxels (face neighbours: 4 in 2-D, 6 in 3-D;
    the image edge counts as outside)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = np.ones_like(mask)
    for axis in range(mask.ndim):
        for shift in (0, 2):
            index = tuple(slice(shift, shift + n) if a == axis else slice(1, 1 + n)
                          for a, n in enumerate(mask.shape))
            interior &= padded[index]
    return mask & ~interior


def surface_distances(truth, pred, spacing=(1.0, 1.0)):
    """(HD95, ASSD) between two non-empty boolean masks of any dimension, `spacing` per axis.

    Exact Euclidean distances from each boundary point to the nearest boundary point of the other mask
    (scipy's distance transform, computed over the box holding both masks: every boundary point lies in it).
    """
    from scipy.ndimage import distance_transform_edt
    box = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(truth | pred))
    edge_t, edge_p = boundary(truth)[box], boundary(pred)[box]
    d_tp = distance_transform_edt(~edge_p, sampling=spacing)[edge_t]
    d_pt = distance_transform_edt(~edge_t, sampling=spacing)[edge_p]
    hd95 = max(np.percentile(d_tp, 95), np.percentile(d_pt, 95))
    assd = np.concatenate([d_tp, d_pt]).mean()
    return float(hd95), float(assd)


def per_image(truth, pred, num_classes, spacing=(1.0, 1.0)):
    """One row per foreground class of one image (or volume): status, dice, iou, hd95, assd (NaN where
    undefined)."""
    rows = []
    for c in range(1, num_classes):
        t, p = truth == c, pred == c
        row = {"class_id": c, "status": "scored", "dice": np.nan, "iou": np.nan, "hd95": np.nan, "assd": np.nan}
        if not t.any() and not p.any():
            row["status"] = "both_empty"
        elif not p.any() or not t.any():
            row.update(status="miss" if t.any() else "false_positive", dice=0.0, iou=0.0)
        else:
            inter = float((t & p).sum())
            union = float((t | p).sum())
            row.update(dice=2 * inter / (t.sum() + p.sum()), iou=inter / union)
            row["hd95"], row["assd"] = surface_distances(t, p, spacing)
        rows.append(row)
    return rows


def summarise(rows):
    """Mean, median and tail of per-image scores, with the miss and false-positive counts."""
    out = {"images_scored": sum(r["status"] in ("scored", "miss", "false_positive") for r in rows),
           "misses": sum(r["status"] == "miss" for r in rows),
           "false_positives": sum(r["status"] == "false_positive" for r in rows),
           "both_empty": sum(r["status"] == "both_empty" for r in rows)}
    for name, tail in (("dice", 5), ("iou", 5), ("hd95", 95), ("assd", 95)):
        values = np.array([r[name] for r in rows], dtype=np.float64)
        values = values[~np.isnan(values)]
        empty = values.size == 0
        out[name] = {"mean": np.nan if empty else values.mean(),
                     "median": np.nan if empty else np.median(values),
                     f"p{tail}": np.nan if empty else np.percentile(values, tail),
                     "n": int(values.size)}
    return out


def image_dice(rows):
    """Per image, the mean Dice over its scored foreground classes (misses count as 0)."""
    per = {}
    for row in rows:
        if row["status"] != "both_empty":
            per.setdefault(row["image"], []).append(row["dice"])
    return {image: float(np.mean(values)) for image, values in per.items()}


def subject_means(image_scores, subject_of):
    """Per subject, the mean of its images' scores (image -> score, image -> subject), sorted by subject."""
    grouped = {}
    for image, value in image_scores.items():
        grouped.setdefault(str(subject_of[image]), []).append(value)
    return {s: float(np.mean(grouped[s])) for s in sorted(grouped)}
