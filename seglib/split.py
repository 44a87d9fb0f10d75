"""A seeded train/val/test split by subject, independent of file-system order."""
import numpy as np

from seglib.errors import SegError

PARTS = ("train", "val", "test")


def split_by_subject(pairs, units, val_fraction, test_fraction, seed):
    """{part: sorted [(image, mask)]}; all slices of one split unit land in one part.

    A unit is a subject, or subjects that share copied images (seglib.check.split_units).

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
