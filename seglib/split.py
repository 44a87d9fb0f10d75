"""Split units (subjects, merged where they share a scan) and a seeded train/val/test split by
unit, independent of file-system order."""
from collections import defaultdict

import numpy as np

from seglib.errors import SegError
from seglib.io import read_json

PARTS = ("train", "val", "test")


def split_units(subjects, digests, warnings):
    """image -> split unit: subjects that hold an identical image are merged into one unit.

    One scan stored under two subject ids (it happens in public datasets) would
    otherwise land in train and test, and the model would be scored on images
    it trained on. Each merge and each repeated slice is reported as a warning.
    """
    parent = {s: s for s in subjects.values()}

    def root(s):
        while parent[s] != s:
            s = parent[s]
        return s

    copies = defaultdict(list)
    for image, digest in sorted(digests.items()):
        if digest is not None:
            copies[digest].append(image)
    copies = [images for images in copies.values() if len(images) > 1]
    for images in copies:
        for other in images[1:]:
            a, b = sorted((root(subjects[images[0]]), root(subjects[other])))
            parent[b] = a
    members = defaultdict(set)
    for s in parent:
        members[root(s)].add(s)
    unit = {s: "+".join(sorted(members[root(s)])) for s in parent}
    copies_by_root = defaultdict(list)
    for images in copies:
        copies_by_root[root(subjects[images[0]])].append(images)
    for r, merged in sorted(copies_by_root.items()):
        example = " = ".join(merged[0])
        if len(members[r]) > 1:
            warnings.append(f"{' and '.join(sorted(members[r]))}: {len(merged)} identical "
                            f"image(s) (e.g. {example}), one scan under several ids? They are kept in one part "
                            "of the split, so no scan is both trained on and scored; remove the copies to count "
                            "the scan once")
        else:
            warnings.append(f"{r}: {len(merged)} image(s) stored more than once (e.g. {example}); "
                            "a repeated slice weighs twice in training and scoring")
    return {image: unit[s] for image, s in subjects.items()}



def split_by_subject(pairs, units, val_fraction, test_fraction, seed):
    """{part: sorted [(image, mask)]}; all slices of one split unit land in one part.

    A unit is a subject, or subjects that share copied images (split_units).

    Units are sorted before the seeded shuffle, so the result depends only
    on the file names, the fractions and the seed.
    """
    keys = sorted(set(units[image] for image, _ in pairs))
    n = len(keys)
    n_test = int(round(test_fraction * n)) if test_fraction > 0 else 0
    n_val = int(round(val_fraction * n)) if val_fraction > 0 else 0
    n_test, n_val = max(n_test, 1 if test_fraction > 0 else 0), max(n_val, 1 if val_fraction > 0 else 0)
    if n - n_test - n_val < 1:
        raise SegError(f"data: {n} subject(s) cannot fill train, val and test; add data, lower "
                       "val_fraction/test_fraction, or set group_regex: '' to split by slice")
    order = np.random.Generator(np.random.PCG64(seed)).permutation(n)
    shuffled = [keys[i] for i in order]
    part_of = {s: "test" for s in shuffled[:n_test]}
    part_of.update({s: "val" for s in shuffled[n_test:n_test + n_val]})
    split = {part: [] for part in PARTS}
    for image, mask in pairs:
        split[part_of.get(units[image], "train")].append([image, mask])
    return {part: sorted(items) for part, items in split.items()}


def class_coverage(parts, grays, gray_values):
    """Warnings for classes absent from a part's masks; an error when one is absent from all training masks.

    `grays` maps image -> gray values in its mask; `gray_values` are all classes, background first.
    A class no training mask holds cannot be learnt, and a part without it cannot score it.
    """
    warnings, missing = [], []
    for class_id, gray in enumerate(gray_values):
        if class_id == 0:
            continue  # background is everywhere a mask is not full
        for part in PARTS:
            holding = sum(gray in grays[image] for image, _ in parts[part])
            if holding:
                continue
            where = f"class {class_id} (gray value {gray}) appears in none of the {len(parts[part])} {part} masks"
            if part == "train":
                missing.append(where)
            else:
                warnings.append(f"{where}; its {part} scores are undefined (change data.seed or add data)")
    if missing:
        raise SegError("data: " + "; ".join(missing) + ": the model cannot learn it. Add training masks that "
                       "hold it, change data.seed, or drop the value from data.gray_values")
    return warnings


def split_dataset(report, data_cfg):
    """The seeded split of a checked dataset (seglib.check's report); class-coverage warnings join the report's."""
    parts = split_by_subject(report.pairs, report.units, data_cfg.val_fraction, data_cfg.test_fraction, data_cfg.seed)
    report.warnings += class_coverage(parts, report.grays, sorted(data_cfg.gray_values or report.gray_counts))
    return parts


def read_split(path, fold=None):
    """{train, val, test, units} of the hold-out split file, or of fold `fold` of a folds file."""
    split = read_json(path)
    if fold is None:
        return split
    if "folds" not in split or not 0 <= fold < len(split["folds"]):
        raise SegError(f"{path}: holds no fold {fold} (crossval.folds and the split stage's folds disagree); "
                       "run `dvc repro` to write the folds again")
    return {**split["folds"][fold], "units": split["units"]}
