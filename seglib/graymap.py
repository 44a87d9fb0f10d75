"""Gray values in the masks <-> class ids (the original project's grayList.txt).

Class id = index of the gray value in the sorted list of gray values, so the
lowest gray value (usually 0, background) is class 0.
"""
import numpy as np

from seglib.errors import SegError


def build_graymap(gray_values):
    values = sorted(int(v) for v in gray_values)
    if len(values) < 2:
        raise SegError(f"masks: only gray value(s) {values} found; a segmentation needs background "
                       "and at least one foreground class")
    return {"gray_values": values, "class_of_gray": {str(g): i for i, g in enumerate(values)},
            "num_classes": len(values)}


def to_class_ids(mask, gray_values, where):
    """Map a gray-valued mask to class ids; an unknown gray value is an error naming `where`."""
    lut = np.asarray(gray_values)
    ids = np.searchsorted(lut, mask)
    ids = np.clip(ids, 0, len(lut) - 1)
    bad = lut[ids] != mask
    if bad.any():
        unknown = sorted(set(np.unique(mask[bad]).tolist()))
        raise SegError(f"{where}: gray values {unknown} are not in the gray map {list(gray_values)}; "
                       "fix the mask, or rerun preprocess-gray-map so the map includes them")
    return ids.astype(np.uint8)


def to_gray(class_ids, gray_values):
    """Class ids back to the dataset's own gray values (uint8, or uint16 above 255)."""
    lut = np.asarray(gray_values, dtype=np.uint16 if max(gray_values) > 255 else np.uint8)
    return lut[class_ids]
