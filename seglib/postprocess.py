"""Post-processing chosen on validation, as nnU-Net does: per foreground class, a rule that removes
connected components of the prediction, kept only where it raises that class's validation Dice.

Candidates for class c (8-connected components of the pixels predicted c;
removed pixels become background, class 0):
- "largest": keep the largest component;
- "max_count": keep the K largest, K = the most components of c in any training mask;
- "min_size": drop components smaller than the smallest component of c in the
  training masks, as a fraction of the image's pixels (so it holds at any size).
Removing pixels of class c changes no other foreground class's counts, so the
best rule of each class, chosen alone, is the best set for the mean foreground
Dice. A tie keeps the gentler rule (none, min_size, max_count, largest), so a
rule that does not raise validation Dice is never chosen.
"""
import dataclasses

import numpy as np
from scipy import ndimage

from seglib.errors import SegError

KINDS = ("none", "min_size", "max_count", "largest")  # gentlest first: ties keep the earlier
EIGHT = np.ones((3, 3), bool)


@dataclasses.dataclass(frozen=True)
class ClassRule:
    kind: str = "none"
    value: float = 0.0    # max_count: K; min_size: the smallest kept area as a fraction of the image

    def describe(self):
        return {"none": "none", "largest": "largest component", "max_count": f"{int(self.value)} largest components",
                "min_size": f"components of at least {self.value:.3g} of the image"}[self.kind]


def components(mask):
    """(labels, areas) of a boolean mask's 8-connected components; labels 1..n, areas[i] of label i + 1."""
    labels, count = ndimage.label(mask, structure=EIGHT)
    return labels, np.bincount(labels.ravel(), minlength=count + 1)[1:]


def _kept(areas, rule, pixels):
    """Boolean per component: does `rule` keep it?"""
    if rule.kind == "none" or len(areas) == 0:
        return np.ones(len(areas), bool)
    if rule.kind == "min_size":
        return areas >= rule.value * pixels
    keep = 1 if rule.kind == "largest" else int(rule.value)
    order = np.lexsort((np.arange(len(areas)), -areas))  # largest first, the first label on ties
    kept = np.zeros(len(areas), bool)
    kept[order[:keep]] = True
    return kept


def apply(pred, rules):
    """`pred` (H, W class ids) with each class's removed components set to background; rules[c - 1] is class c's."""
    out = pred.copy()
    for c, rule in enumerate(rules, start=1):
        if rule.kind == "none":
            continue
        labels, areas = components(pred == c)
        kept = np.concatenate([[True], _kept(areas, rule, pred.size)])
        out[(labels > 0) & ~kept[labels]] = 0
    return out


def candidates(train_masks, num_classes):
    """Per foreground class, the rules to try, learned from the training masks (N, H, W)."""
    most = np.zeros(num_classes, np.int64)
    smallest = np.full(num_classes, np.inf)
    for mask in train_masks:
        for c in np.unique(mask):
            if c == 0:
                continue
            areas = components(mask == c)[1]
            most[c] = max(most[c], len(areas))
            smallest[c] = min(smallest[c], areas.min() / mask.size)
    out = []
    for c in range(1, num_classes):
        rules = [ClassRule()]
        if most[c]:
            rules += [ClassRule("min_size", float(smallest[c])), ClassRule("largest")]
        if most[c] > 1:
            rules.append(ClassRule("max_count", float(most[c])))
        out.append(sorted(rules, key=lambda r: KINDS.index(r.kind)))
    return out


def choose(preds, truths, train_masks, num_classes):
    """(rules, report): per class the candidate with the highest pooled validation Dice over the
    (prediction, truth) pairs; the report holds every candidate's Dice and the mean foreground
    Dice before and after (NaN, as None, where a class is neither present nor predicted)."""
    options = candidates(train_masks, num_classes)
    # per class and candidate: true positives and predicted pixels kept, over all validation images
    tp = [np.zeros(len(o)) for o in options]
    predicted = [np.zeros(len(o)) for o in options]
    truth_pixels = np.zeros(num_classes - 1)
    for pred, truth in zip(preds, truths):
        if pred.shape != truth.shape:
            raise SegError(f"postprocess: prediction {pred.shape} and mask {truth.shape} differ in size")
        for c in range(1, num_classes):
            truth_pixels[c - 1] += (truth == c).sum()
            labels, areas = components(pred == c)
            hits = np.bincount(labels[truth == c], minlength=len(areas) + 1)[1:]
            for j, rule in enumerate(options[c - 1]):
                kept = _kept(areas, rule, pred.size)
                tp[c - 1][j] += hits[kept].sum()
                predicted[c - 1][j] += areas[kept].sum()
    rules, classes, raw, chosen = [], [], [], []
    for c in range(1, num_classes):
        den = predicted[c - 1] + truth_pixels[c - 1]
        dice = np.where(den > 0, 2 * tp[c - 1] / np.maximum(den, 1), np.nan)
        best = 0 if np.isnan(dice).all() else int(np.nanargmax(dice))  # first maximum: the gentlest
        rules.append(options[c - 1][best])
        raw.append(dice[0])
        chosen.append(dice[best])
        classes.append({"class_id": c, "rule": options[c - 1][best].describe(),
                        "val_dice": {r.describe(): _number(d) for r, d in zip(options[c - 1], dice)}})
    report = {"val_fg_dice": {"raw": _mean(raw), "postprocessed": _mean(chosen)}, "classes": classes}
    return tuple(rules), report


def _number(value):
    return None if np.isnan(value) else float(value)


def _mean(values):
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else None


def agreed(rule_sets):
    """An ensemble's rules: per class the rule all members chose, else none."""
    return tuple(rules[0] if all(r == rules[0] for r in rules) else ClassRule() for rules in zip(*rule_sets))


def to_list(rules):
    return [dataclasses.asdict(r) for r in rules]


def from_list(raw, num_classes, where):
    """Rules from a checkpoint's list; one message naming the key when the form is wrong."""
    if not isinstance(raw, list) or len(raw) != num_classes - 1:
        raise SegError(f"{where}: expected a list of {num_classes - 1} rules (one per foreground class), got {raw!r}")
    rules = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or sorted(item) != ["kind", "value"] or item["kind"] not in KINDS \
                or isinstance(item["value"], bool) or not isinstance(item["value"], (int, float)) \
                or not 0 <= item["value"] < float("inf"):
            raise SegError(f"{where}[{i}]: expected {{kind: one of {list(KINDS)}, value: a number >= 0}}, got {item!r}")
        rules.append(ClassRule(item["kind"], float(item["value"])))
    return tuple(rules)


def none(num_classes):
    return tuple(ClassRule() for _ in range(num_classes - 1))
