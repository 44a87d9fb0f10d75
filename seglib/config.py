"""params.yaml -> small frozen dataclasses. The only module that knows its layout.

Each stage reads only the sections it lists under `params:` in dvc.yaml.
Types and ranges are checked here, unknown keys are rejected, and every
message names the key, the value and what to write instead.
"""
import dataclasses
import re
import typing
from pathlib import Path
from typing import Optional

import yaml

from seglib.errors import SegError

# YAML 1.2 (what DVC writes) reads 1e-3 as a float; PyYAML's 1.1 rules read it as a string.
_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    image_token: str = ""
    mask_token: str = ""
    group_regex: str = ""
    gray_values: Optional[tuple] = None
    max_classes: int = 16
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0

    def check(self, where):
        if bool(self.image_token) != bool(self.mask_token):
            raise SegError(f"{where}: image_token and mask_token must both be set or both be ''; "
                           f"got {self.image_token!r} and {self.mask_token!r}")
        if self.group_regex:
            try:
                re.compile(self.group_regex)
            except re.error as exc:
                raise SegError(f"{where}.group_regex: not a valid regular expression ({exc}), "
                               f"got {self.group_regex!r}") from None
        for key in ("val_fraction", "test_fraction"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise SegError(f"{where}.{key}: must be in [0, 1), got {getattr(self, key)}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise SegError(f"{where}: val_fraction + test_fraction must be below 1 to leave training data")
        if self.gray_values is not None and len(set(self.gray_values)) != len(self.gray_values):
            raise SegError(f"{where}.gray_values: repeated values in {list(self.gray_values)}")


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    base_size: tuple = (128, 128)
    ct_window: bool = False
    window_level: float = 40.0
    window_width: float = 400.0
    hu_offset: float = 0.0

    def check(self, where):
        if len(self.base_size) != 2 or min(self.base_size) < 16:
            raise SegError(f"{where}.base_size: expected [height, width], each at least 16, got {list(self.base_size)}")
        if self.window_width <= 0:
            raise SegError(f"{where}.window_width: must be positive, got {self.window_width}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    lrf: float = 0.01
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    hflip: float = 0.5
    vflip: float = 0.0
    intensity_jitter: float = 0.0
    scale_jitter: float = 0.0
    rotate_degrees: float = 0.0
    loss: str = "ce_dice"
    optimizer: str = "adamw"
    weight_decay: float = 1.0e-4
    bn_momentum: float = 0.1

    def check(self, where):
        choices = {"loss": ("ce", "ce_dice"), "optimizer": ("adam", "adamw")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise SegError(f"{where}.{key}: must be one of {list(allowed)}, got {getattr(self, key)!r}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device):
            raise SegError(f"{where}.device: use auto, cpu, cuda, cuda:N or mps; got {self.device!r}")
        if self.epochs < 1:
            raise SegError(f"{where}.epochs: must be at least 1, got {self.epochs}")
        if not 0.0 <= self.rotate_degrees <= 180.0:
            raise SegError(f"{where}.rotate_degrees: must be in [0, 180], got {self.rotate_degrees}")
        for key in ("hflip", "vflip", "lrf", "bn_momentum", "intensity_jitter", "scale_jitter"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise SegError(f"{where}.{key}: must be in [0, 1], got {getattr(self, key)}")
        if self.workers < 0:
            raise SegError(f"{where}.workers: must be 0 or more, got {self.workers}")


PRECISIONS = ("fp32", "bf16")
NORMS = ("batch", "instance")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """One entry of `models:`. `arch` defaults to the entry's name."""
    arch: str = ""
    lr: float = 1.0e-3
    batch_size: int = 8
    width: int = 16
    norm: str = "batch"             # UNet only: batch | instance
    depth: int = 4                  # UNet only: number of 2x poolings
    backbone: str = "mobilenet_v3_large"
    weights: Optional[str] = None
    input_scale: float = 1.0
    precision: str = "fp32"
    epochs: Optional[int] = None    # None: train.epochs

    def check(self, where):
        if self.epochs is not None and self.epochs < 1:
            raise SegError(f"{where}.epochs: must be at least 1 or null (= train.epochs), got {self.epochs}")
        if self.precision not in PRECISIONS:
            raise SegError(f"{where}.precision: must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if self.lr <= 0:
            raise SegError(f"{where}.lr: must be positive, got {self.lr}")
        if self.batch_size < 2:
            raise SegError(f"{where}.batch_size: must be at least 2 (batch norm needs two images), got {self.batch_size}")
        if not 0.25 <= self.input_scale <= 4.0:
            raise SegError(f"{where}.input_scale: must be in [0.25, 4], got {self.input_scale}")
        if self.width < 4:
            raise SegError(f"{where}.width: must be at least 4, got {self.width}")
        if not 1 <= self.depth <= 6:
            raise SegError(f"{where}.depth: must be 1 to 6 (2x poolings), got {self.depth}")
        if self.norm not in NORMS:
            raise SegError(f"{where}.norm: must be one of {list(NORMS)}, got {self.norm!r}")


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    pixel_spacing: Optional[tuple] = None
    overlays: int = 3

    def check(self, where):
        if self.pixel_spacing is not None and (len(self.pixel_spacing) != 2 or min(self.pixel_spacing) <= 0):
            raise SegError(f"{where}.pixel_spacing: expected [row_mm, col_mm] > 0 or null, got {self.pixel_spacing}")


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    bootstrap: int = 2000
    permutations: int = 10000
    seed: int = 0

    def check(self, where):
        if self.bootstrap < 100 or self.permutations < 100:
            raise SegError(f"{where}: bootstrap and permutations must be at least 100")


SECTIONS = {"data": DataConfig, "preprocess": PreprocessConfig, "train": TrainConfig,
            "evaluate": EvaluateConfig, "compare": CompareConfig}


def _coerce(value, annotation, where):
    args = typing.get_args(annotation)
    optional = typing.get_origin(annotation) is typing.Union and type(None) in args
    if optional:
        if value is None:
            return None
        annotation = next(a for a in args if a is not type(None))
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif annotation is tuple:
        if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return tuple(value)
    raise SegError(f"{where}: expected {getattr(annotation, '__name__', annotation)}"
                   f"{' or null' if optional else ''}, got {value!r}")


def _build(cls, raw, where):
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise SegError(f"{where}: expected a mapping of settings, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise SegError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(fields)}")
    values = {name: _coerce(raw[name], fields[name].type, f"{where}.{name}") for name in raw}
    config = cls(**values)
    config.check(where)
    return config


def load_params(path="params.yaml"):
    """The raw params mapping. Parse errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise SegError(f"{path}: not found; run from the repository root")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SegError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise SegError(f"{path}: expected a mapping at the top level")
    return raw


def section(params, name):
    """One checked section (`data`, `preprocess`, `train`, `evaluate`, `compare`)."""
    return _build(SECTIONS[name], params.get(name), name)


def models(params):
    """All entries of `models:` as {name: ModelConfig}, in the order written."""
    raw = params.get("models")
    if not isinstance(raw, dict) or not raw:
        raise SegError("models: expected a mapping from model name to its settings, e.g. models: {unet: {lr: 1.0e-3}}")
    return {name: model(params, name) for name in raw}


def model(params, name):
    """The settings of model `name`; a clear error when it is not listed."""
    raw = params.get("models") or {}
    if name not in raw:
        raise SegError(f"model: unknown model {name!r}; choose one of {sorted(raw)} (the keys of models: in params.yaml)")
    config = _build(ModelConfig, raw[name], f"models.{name}")
    return dataclasses.replace(config, arch=config.arch or name)


def headline_model(params):
    """The top-level `model`: which model's test scores are metrics/eval.json."""
    name = params.get("model")
    if not isinstance(name, str):
        raise SegError(f"model: expected the name of one entry of models:, got {name!r}")
    model(params, name)
    return name
