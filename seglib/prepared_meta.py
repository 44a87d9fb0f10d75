"""What the prepared arrays are: the contract preprocess writes and train, evaluate and predict read.

One dataclass, written once as artifacts/prepared/meta.json and embedded in
every checkpoint. Reading it back checks it against its schema, so a damaged
or hand-edited file fails with a message naming the key, not a KeyError.
"""
import dataclasses
import math
from typing import Optional

from seglib import config
from seglib.config import MAX_CLASSES
from seglib.errors import SegError
from seglib.graymap import build_graymap


@dataclasses.dataclass(frozen=True)
class PreparedMeta:
    gray_values: tuple                 # sorted; class id = index
    mean: float                        # of the training images in [0, 1]
    std: float
    preprocess: config.PreprocessConfig
    volume: Optional[config.VolumeConfig] = None   # how volumes were sliced; None for 2-D images

    @property
    def num_classes(self):
        return len(self.gray_values)

    @property
    def base_size(self):
        return tuple(self.preprocess.base_size)

    def to_dict(self):
        out = {**build_graymap(self.gray_values), "mean": self.mean, "std": self.std,
               "preprocess": dataclasses.asdict(self.preprocess)}
        if self.volume is not None:
            out["volume"] = dataclasses.asdict(self.volume)
        return out


REQUIRED = ("gray_values", "num_classes", "mean", "std", "preprocess")
# derived from gray_values; the model's name in checkpoints; base_size: a copy of preprocess's in format-1 checkpoints
OPTIONAL = ("class_of_gray", "name", "base_size", "volume")


def _number(raw, key, where, low, high):
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise SegError(f"{where}.{key}: expected a number in [{low}, {high}], got {value!r}")
    return float(value)


def read_meta(raw, where):
    """A PreparedMeta from meta.json's (or a checkpoint's) mapping; every field checked."""
    if not isinstance(raw, dict):
        raise SegError(f"{where}: expected a mapping of prepared-data settings, got {type(raw).__name__}")
    missing = [k for k in REQUIRED if k not in raw]
    unknown = sorted(set(raw) - set(REQUIRED) - set(OPTIONAL))
    if missing or unknown:
        raise SegError(f"{where}: missing key(s) {missing}, unknown key(s) {unknown}; "
                       "it was not written by this pipeline's preprocess stage, or was edited")
    grays = raw["gray_values"]
    if (not isinstance(grays, list) or not 2 <= len(grays) <= MAX_CLASSES
            or any(isinstance(g, bool) or not isinstance(g, int) or not 0 <= g <= 65535 for g in grays)
            or grays != sorted(set(grays))):
        raise SegError(f"{where}.gray_values: expected 2 to {MAX_CLASSES} increasing whole gray values "
                       f"from 0 to 65535, got {grays!r}")
    if raw["num_classes"] != len(grays):
        raise SegError(f"{where}.num_classes: {raw['num_classes']!r} disagrees with the {len(grays)} gray values")
    if "class_of_gray" in raw and raw["class_of_gray"] != build_graymap(grays)["class_of_gray"]:
        raise SegError(f"{where}.class_of_gray: disagrees with gray_values {grays}")
    preprocess = config.build_section(config.PreprocessConfig, raw["preprocess"], f"{where}.preprocess")
    if "base_size" in raw and raw["base_size"] != list(preprocess.base_size):
        raise SegError(f"{where}.base_size: {raw['base_size']!r} disagrees with preprocess.base_size "
                       f"{list(preprocess.base_size)}")
    volume = config.build_section(config.VolumeConfig, raw["volume"], f"{where}.volume") if "volume" in raw else None
    return PreparedMeta(tuple(grays), _number(raw, "mean", where, 0.0, 1.0),
                        _number(raw, "std", where, 1e-6, 1.0), preprocess, volume)
