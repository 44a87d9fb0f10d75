"""Cross-validation folds: split units dealt to k parts, each fold's train, val and test roles, and
the nested subsets of a fold's training part that a learning curve trains on."""
from collections import defaultdict

import numpy as np

from seglib.errors import SegError
from seglib.split import PARTS, class_coverage


def assign_parts(units, grays, background, k, seed):
    """unit -> part number 0..k-1: seeded, independent of file order, parts differing by at most one
    unit, and the units that hold each rare class spread over the parts.

    Units are ordered by the rarest foreground class they hold (the class held by
    the fewest units first; units without foreground last), shuffled (seeded)
    within that order, then dealt to the parts in turn.
    """
    keys = sorted(set(units.values()))
    held = {u: set() for u in keys}
    for image, unit in units.items():
        held[unit].update(grays.get(image, ()))
    holders = defaultdict(int)
    for values in held.values():
        for v in values - {background}:
            holders[v] += 1
    rank = np.random.Generator(np.random.PCG64(seed)).permutation(len(keys))

    def rarest(i):
        values = held[keys[i]] - {background}
        return min(((holders[v], v) for v in values), default=(len(keys) + 1, 0))

    order = sorted(range(len(keys)), key=lambda i: (rarest(i), rank[i]))
    return {keys[i]: position % k for position, i in enumerate(order)}


def cross_validation_folds(pairs, units, parts_of, k):
    """Per fold i: test = part i, val = part i+1 (mod k), train = the rest; lists of [image, mask] sorted."""
    folds = []
    for i in range(k):
        role = {i: "test", (i + 1) % k: "val"}
        fold = {part: [] for part in PARTS}
        for image, mask in pairs:
            fold[role.get(parts_of[units[image]], "train")].append([image, mask])
        folds.append({part: sorted(items) for part, items in fold.items()})
    return folds


def training_units(fold, units):
    """The split units of a fold's training part (a fold as read_split gives it), sorted."""
    return sorted({units[image] for image, _ in fold["train"]})


def training_subset(fold, units, size, seed):
    """The first `size` of the fold's training units in one seeded order, so each smaller subset lies
    inside every larger one and file order plays no part; copies share a unit, so they stay together."""
    keys = training_units(fold, units)
    if size > len(keys):
        raise SegError(f"crossval.train_subjects: {size} is more than the {len(keys)} training subjects of this "
                       "fold; list sizes up to the smallest fold's training part")
    order = np.random.Generator(np.random.PCG64(seed)).permutation(len(keys))
    return sorted(keys[i] for i in order[:size])


def check_curve_sizes(folds, units, sizes):
    """Every learning-curve size fits the smallest fold's training part."""
    counts = [len(training_units(fold, units)) for fold in folds]
    if sizes and max(sizes) > min(counts):
        fold = counts.index(min(counts))
        raise SegError(f"crossval.train_subjects: {max(sizes)} is more than fold {fold}'s {min(counts)} training "
                       f"subjects (split units), the smallest training part; list sizes up to {min(counts)}")


def cross_validation(report, data_cfg, k):
    """{"k", "parts" (unit -> part), "folds" (per fold: train/val/test like split_dataset's)} of a
    checked dataset, for k folds (0: none); class-coverage warnings of each fold join the report's."""
    if k == 0:
        return {"k": 0, "parts": {}, "folds": []}
    n = len(set(report.units.values()))
    if k > n:
        raise SegError(f"crossval.folds: {k} folds need at least {k} split units (subjects), the data has {n}; "
                       "use fewer folds")
    gray_values = sorted(data_cfg.gray_values or report.gray_counts)
    parts = assign_parts(report.units, report.grays, gray_values[0], k, data_cfg.seed)
    folds = cross_validation_folds(report.pairs, report.units, parts, k)
    for i, fold in enumerate(folds):
        report.warnings += [f"fold {i}: {w}" for w in class_coverage(fold, report.grays, gray_values)]
    return {"k": k, "parts": parts, "folds": folds}
