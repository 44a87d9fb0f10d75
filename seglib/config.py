"""params.yaml -> small frozen dataclasses. The only module that knows its layout.

Each stage reads only the sections it lists under `params:` in dvc.yaml.
Types and ranges are checked here, unknown keys are rejected, and every
message names the key, the value and what to write instead.
"""
import dataclasses
import difflib
import math
import re
import typing
from pathlib import Path, PurePosixPath
from typing import Optional

import yaml

from seglib.errors import SegError
from seglib.io import DEFAULT_MAX_PIXELS
from seglib.volume import LAYOUTS

# YAML 1.2 (what DVC writes) reads 1e-3 as a float; PyYAML's 1.1 rules read it as a string.
_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


MAX_SEED = 2 ** 32 - 1
MAX_CLASSES = 255  # class ids are stored as uint8


def _check_seed(seed, where):
    if not 0 <= seed <= MAX_SEED:
        raise SegError(f"{where}.seed: must be an integer from 0 to {MAX_SEED}, got {seed}")


def check_device(name, where):
    """The device string's form; whether that device exists is the runtime's question (seglib.models)."""
    if not isinstance(name, str) or not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", name):
        raise SegError(f"{where}: use auto, cpu, cuda, cuda:N or mps; got {name!r}")


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
        # the best epoch is chosen on validation and the models are scored on test: neither may be empty
        for key in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, key) < 1.0:
                raise SegError(f"{where}.{key}: must be above 0 and below 1, got {getattr(self, key)}")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise SegError(f"{where}: val_fraction + test_fraction must be below 1 to leave training data")
        if self.gray_values is not None and len(set(self.gray_values)) != len(self.gray_values):
            raise SegError(f"{where}.gray_values: repeated values in {list(self.gray_values)}")
        if self.gray_values is not None and (len(self.gray_values) < 2 or any(
                v != int(v) or not 0 <= v <= 65535 for v in self.gray_values)):
            raise SegError(f"{where}.gray_values: expected at least two whole gray values from 0 to 65535 "
                           f"(background first), got {list(self.gray_values)}")
        if not 2 <= self.max_classes <= MAX_CLASSES:
            raise SegError(f"{where}.max_classes: must be 2 to {MAX_CLASSES}, got {self.max_classes}")
        _check_seed(self.seed, where)


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    base_size: tuple = (128, 128)
    ct_window: bool = False
    window_level: float = 40.0
    window_width: float = 400.0
    hu_offset: float = 0.0
    max_pixels: int = DEFAULT_MAX_PIXELS

    def check(self, where):
        if (len(self.base_size) != 2 or any(v != int(v) for v in self.base_size)
                or min(self.base_size) < 16 or max(self.base_size) > 4096):
            raise SegError(f"{where}.base_size: expected [height, width], whole numbers from 16 to 4096, "
                           f"got {list(self.base_size)}")
        if self.max_pixels < 256:
            raise SegError(f"{where}.max_pixels: must be at least 256 (16 x 16), got {self.max_pixels}")
        if self.window_width <= 0:
            raise SegError(f"{where}.window_width: must be positive, got {self.window_width}")


PLANE_CHOICES = ("all", "foreground")


@dataclasses.dataclass(frozen=True)
class VolumeConfig:
    """How 3D volumes become 2D slices (seglib.volume); unused for 2D images."""
    slice_axis: str = "sagittal"
    train_planes: str = "all"
    margin: int = 2
    step: int = 1
    label_groups: dict = dataclasses.field(default_factory=dict)   # class name -> labels it merges
    max_voxels: int = 512 ** 3

    def check(self, where):
        if self.slice_axis not in LAYOUTS:
            raise SegError(f"{where}.slice_axis: must be one of {list(LAYOUTS)}, got {self.slice_axis!r}")
        if self.train_planes not in PLANE_CHOICES:
            raise SegError(f"{where}.train_planes: must be one of {list(PLANE_CHOICES)}, got {self.train_planes!r}")
        if not 0 <= self.margin <= 1000 or not 1 <= self.step <= 1000:
            raise SegError(f"{where}: margin must be 0 to 1000 and step 1 to 1000, got {self.margin} and {self.step}")
        if self.max_voxels < 4096:
            raise SegError(f"{where}.max_voxels: must be at least 4096 (16 x 16 x 16), got {self.max_voxels}")
        seen = {}
        for name, labels in self.label_groups.items():
            if not labels or any(v != int(v) or v < 1 for v in labels):
                raise SegError(f"{where}.label_groups.{name}: expected a list of whole labels from 1, got {list(labels)}")
            for label in labels:
                if label in seen:
                    raise SegError(f"{where}.label_groups: label {int(label)} is in both {seen[label]} and {name}")
                seen[label] = name
        if len(self.label_groups) >= MAX_CLASSES:
            raise SegError(f"{where}.label_groups: at most {MAX_CLASSES - 1} groups, got {len(self.label_groups)}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    lrf: float = 0.01
    seed: int = 0
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
        if not 1 <= self.epochs <= MAX_EPOCHS:
            raise SegError(f"{where}.epochs: must be 1 to {MAX_EPOCHS}, got {self.epochs}")
        if not 0.0 <= self.rotate_degrees <= 180.0:
            raise SegError(f"{where}.rotate_degrees: must be in [0, 180], got {self.rotate_degrees}")
        for key in ("hflip", "vflip", "lrf", "bn_momentum", "intensity_jitter", "scale_jitter"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise SegError(f"{where}.{key}: must be in [0, 1], got {getattr(self, key)}")
        if not 0 <= self.workers <= 64:
            raise SegError(f"{where}.workers: must be 0 to 64, got {self.workers}")
        if not 0.0 <= self.weight_decay <= 1.0:
            raise SegError(f"{where}.weight_decay: must be in [0, 1], got {self.weight_decay}")
        _check_seed(self.seed, where)


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """Where train and evaluate run. Both change results bit for bit (docs/determinism.md)."""
    device: str = "auto"
    threads: int = 2            # CPU threads of this machine, shared by its training processes; 0 = all cores
    processes: int = 1          # training processes on this machine; above 1 = DistributedDataParallel
    deterministic: bool = True  # false: cuDNN picks its fastest kernels (cudnn.benchmark); results vary

    def check(self, where):
        check_device(self.device, f"{where}.device")
        if not 0 <= self.threads <= 1024:
            raise SegError(f"{where}.threads: must be 0 (all cores) to 1024, got {self.threads}")
        if not 1 <= self.processes <= 64:
            raise SegError(f"{where}.processes: must be 1 to 64 (one per GPU, or a few on a CPU), got {self.processes}")


MAX_EPOCHS = 10000
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
WEIGHTS_DIR = "weights"  # starting weights live here; train stages depend on the folder
PRECISIONS = ("fp32", "bf16", "fp16")  # fp16: CUDA only, with a gradient scaler
NORMS = ("batch", "instance")
BACKBONES = ("mobilenet_v3_large", "resnet50", "resnet101")
MAX_WIDTH = 128  # UNet's first level; the classic UNet uses 64


def _check_weights_path(path, where):
    parts = PurePosixPath(path).parts if path is not None else None
    if parts is not None and (parts[0] != WEIGHTS_DIR or len(parts) < 2 or ".." in parts):
        raise SegError(f"{where}: must be a file under {WEIGHTS_DIR}/ in the project, got {path!r}; "
                       f"copy it there (the train stages depend on {WEIGHTS_DIR}/, so a changed file retrains)")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What every entry of `models:` holds: how it trains. Each architecture's class adds its own fields."""
    arch: str = "unet"
    lr: float = 1.0e-3
    batch_size: int = 8
    epochs: Optional[int] = None    # None: train.epochs
    input_scale: float = 1.0
    precision: str = "fp32"
    weights: Optional[str] = None   # a local state-dict file under weights/ to start from

    def encoder_file(self):
        """The ImageNet encoder file training starts from: None but for the archs that have an encoder."""
        return None

    def check(self, where):
        if ARCHS.get(self.arch) is not type(self):
            raise SegError(f"{where}.arch: {self.arch!r} is not the arch of {type(self).__name__}")
        _check_weights_path(self.weights, f"{where}.weights")
        if self.epochs is not None and not 1 <= self.epochs <= MAX_EPOCHS:
            raise SegError(f"{where}.epochs: must be 1 to {MAX_EPOCHS} or null (= train.epochs), got {self.epochs}")
        if self.precision not in PRECISIONS:
            raise SegError(f"{where}.precision: must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if not 0 < self.lr <= 1:
            raise SegError(f"{where}.lr: must be above 0 and at most 1, got {self.lr}")
        if not 2 <= self.batch_size <= 4096:
            raise SegError(f"{where}.batch_size: must be 2 to 4096 (batch norm needs two images), got {self.batch_size}")
        if not 0.25 <= self.input_scale <= 4.0:
            raise SegError(f"{where}.input_scale: must be in [0.25, 4], got {self.input_scale}")


@dataclasses.dataclass(frozen=True)
class UNetConfig(ModelConfig):
    width: int = 16                 # channels of the first level
    norm: str = "batch"             # batch | instance
    depth: int = 4                  # number of 2x poolings

    def check(self, where):
        super().check(where)
        if not 4 <= self.width <= MAX_WIDTH:
            raise SegError(f"{where}.width: must be 4 to {MAX_WIDTH}, got {self.width}")
        if not 1 <= self.depth <= 6:
            raise SegError(f"{where}.depth: must be 1 to 6 (2x poolings), got {self.depth}")
        if self.norm not in NORMS:
            raise SegError(f"{where}.norm: must be one of {list(NORMS)}, got {self.norm!r}")


@dataclasses.dataclass(frozen=True)
class DeepLabV3Config(ModelConfig):
    arch: str = "deeplabv3"
    backbone: str = "mobilenet_v3_large"
    encoder_weights: Optional[str] = None   # torchvision's ImageNet file of the backbone, under weights/

    def encoder_file(self):
        return self.encoder_weights

    def check(self, where):
        super().check(where)
        if self.backbone not in BACKBONES:
            raise SegError(f"{where}.backbone: must be one of {list(BACKBONES)}, got {self.backbone!r}")
        _check_weights_path(self.encoder_weights, f"{where}.encoder_weights")


# segmentation-models-pytorch's architectures (pinned version). DPT is left out: its ViT encoders
# take one fixed input size, which no padding of a slice can promise.
LIBRARY_ARCHITECTURES = ("Unet", "UnetPlusPlus", "FPN", "DeepLabV3", "DeepLabV3Plus", "PSPNet", "PAN",
                         "Linknet", "MAnet", "UPerNet", "Segformer")
OUTPUT_STRIDES = (8, 16)        # DeepLabV3 and DeepLabV3Plus: dilation instead of the last stride(s)


def library_encoders():
    """The encoder names segmentation-models-pytorch builds: its own, and any timm model as 'tu-<name>'.
    Imported here only when a library model is configured (the import takes seconds)."""
    from segmentation_models_pytorch.encoders import get_encoder_names
    return get_encoder_names()


def _check_encoder(name, where):
    if name in library_encoders():
        return
    if name.startswith("tu-"):
        import timm
        if name[3:] in timm.list_models():
            return
    close = _did_you_mean(name, library_encoders())
    raise SegError(f"{where}: unknown encoder {name!r}{close}; segmentation-models-pytorch has "
                   f"{', '.join(library_encoders())}, and any timm model as 'tu-<name>' (timm.list_models())")


@dataclasses.dataclass(frozen=True)
class LibraryConfig(ModelConfig):
    """A model of segmentation-models-pytorch: an architecture with any of its encoders, from scratch
    or from a local encoder file; nothing is ever downloaded."""
    arch: str = "smp"
    architecture: str = "Unet"              # one of LIBRARY_ARCHITECTURES
    encoder: str = "resnet34"
    output_stride: Optional[int] = None     # DeepLabV3 / DeepLabV3Plus: 8 or 16; null = the library's default
    encoder_weights: Optional[str] = None   # the encoder's state dict (timm / smp layout), under weights/

    def encoder_file(self):
        return self.encoder_weights

    def check(self, where):
        super().check(where)
        if self.architecture not in LIBRARY_ARCHITECTURES:
            raise SegError(f"{where}.architecture: unknown architecture {self.architecture!r}"
                           f"{_did_you_mean(self.architecture, LIBRARY_ARCHITECTURES)}; "
                           f"segmentation-models-pytorch builds {list(LIBRARY_ARCHITECTURES)}")
        if self.output_stride is not None and (self.architecture not in ("DeepLabV3", "DeepLabV3Plus")
                                               or self.output_stride not in OUTPUT_STRIDES):
            raise SegError(f"{where}.output_stride: {self.output_stride} is for DeepLabV3 and DeepLabV3Plus only, "
                           f"as one of {list(OUTPUT_STRIDES)}; null keeps the library's default")
        _check_encoder(self.encoder, f"{where}.encoder")
        _check_weights_path(self.encoder_weights, f"{where}.encoder_weights")


# arch -> its settings; seglib.models.REGISTRY builds each, and a test keeps the two equal
ARCHS = {"unet": UNetConfig, "deeplabv3": DeepLabV3Config, "smp": LibraryConfig}


def model_config(raw, where):
    """The settings class of raw['arch'], built from `raw` (checked like a params section)."""
    arch = raw.get("arch") if isinstance(raw, dict) else None
    if arch not in ARCHS:
        raise SegError(f"{where}.arch: unknown architecture {arch!r}; choose one of {list(ARCHS)} "
                       "(an entry's name is its arch unless arch: says otherwise)")
    return build_section(ARCHS[arch], raw, where)


def _spacing_problem(value):
    return value is not None and (len(value) != 2 or min(value) <= 0)


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    pixel_spacing: Optional[tuple] = None   # [row_mm, col_mm] of every image
    subject_spacing: dict = dataclasses.field(default_factory=dict)  # subject -> [row_mm, col_mm], where they differ
    overlays: int = 3

    def check(self, where):
        if _spacing_problem(self.pixel_spacing):
            raise SegError(f"{where}.pixel_spacing: expected [row_mm, col_mm] > 0 or null, got {self.pixel_spacing}")
        for subject, spacing in self.subject_spacing.items():
            if _spacing_problem(spacing):
                raise SegError(f"{where}.subject_spacing.{subject}: expected [row_mm, col_mm] > 0, got {list(spacing)}")
        if not 0 <= self.overlays <= 50:
            raise SegError(f"{where}.overlays: must be 0 to 50, got {self.overlays}")

    @property
    def in_mm(self):
        return self.pixel_spacing is not None or bool(self.subject_spacing)

    def spacing(self, unit):
        """(row, col) of one split unit's pixels: its subject_spacing entry, else pixel_spacing, else 1 pixel.
        A unit of copies ('Case18+Case19') takes its subjects' entry."""
        listed = {self.subject_spacing[s] for s in unit.split("+") if s in self.subject_spacing}
        if len(listed) > 1:
            raise SegError(f"evaluate.subject_spacing: {unit} are copies of one scan but their entries differ "
                           f"({sorted(listed)}); give them one spacing")
        if listed:
            return listed.pop()
        if self.subject_spacing and self.pixel_spacing is None:
            raise SegError(f"evaluate.subject_spacing: no entry for subject {unit!r} and evaluate.pixel_spacing "
                           "is null, so its distances would be in pixels beside the others' mm; add it, or set "
                           "pixel_spacing for the subjects not listed")
        return self.pixel_spacing or (1.0, 1.0)


@dataclasses.dataclass(frozen=True)
class CrossValConfig:
    """k-fold cross-validation by split unit, beside the hold-out split: fold i tests on part i,
    chooses its best epoch on part i+1 (mod k) and trains on the rest."""
    folds: tuple = ()      # () = hold-out only; (0, 1, ..., k-1) = k folds (a list, so DVC's matrix can expand it)
    seeds: tuple = (0,)    # training seeds; each (model, fold, seed) trains once
    # more seeds on a few folds only: the spread between seeds at a fraction of seeds x folds runs
    extra_seeds: tuple = ()
    extra_seed_folds: tuple = ()
    # the learning curve: every fold also trains on these many of its training units (nested, seeded
    # subsets; validation and test parts unchanged); the full training part is the cross-validation itself
    train_subjects: tuple = ()
    # steps: each size takes as many optimisation steps per epoch as the full training part (its images
    # drawn repeatedly), so a curve compares amounts of data, not of training; epochs: one pass over its own
    curve_budget: str = "steps"

    def seeds_of(self, fold):
        """Every training seed of one fold."""
        return tuple(self.seeds) + (tuple(self.extra_seeds) if fold in self.extra_seed_folds else ())

    def _check_seeds(self, key, where):
        seeds = getattr(self, key)
        if any(not isinstance(s, int) for s in seeds):
            raise SegError(f"{where}.{key}: expected a list of whole-number training seeds, got {list(seeds)}")
        if len(set(seeds)) != len(seeds):
            raise SegError(f"{where}.{key}: {list(seeds)} repeats a seed; each seed would train the same model twice")
        if not all(0 <= seed <= MAX_SEED for seed in seeds):
            raise SegError(f"{where}.{key}: each seed must be from 0 to {MAX_SEED}, got {list(seeds)}")

    def check(self, where):
        k = len(self.folds)
        if self.folds and (any(not isinstance(f, int) for f in self.folds) or list(self.folds) != list(range(k))):
            raise SegError(f"{where}.folds: expected [] (hold-out only) or the fold numbers 0 to k-1 in order, "
                           f"e.g. [0, 1, 2, 3, 4] for 5 folds; got {list(self.folds)}")
        if k in (1, 2):
            raise SegError(f"{where}.folds: {k} fold(s) cannot give each fold its own test, validation and "
                           "training parts; use at least 3 ([0, 1, 2]) or [] for hold-out only")
        if not self.seeds:
            raise SegError(f"{where}.seeds: expected a list of whole-number training seeds, got []")
        self._check_seeds("seeds", where)
        self._check_seeds("extra_seeds", where)
        if set(self.extra_seeds) & set(self.seeds):
            raise SegError(f"{where}.extra_seeds: {sorted(set(self.extra_seeds) & set(self.seeds))} already in "
                           f"{where}.seeds, which every fold trains; list only other seeds")
        if bool(self.extra_seeds) != bool(self.extra_seed_folds):
            raise SegError(f"{where}.extra_seeds and {where}.extra_seed_folds: give both (seeds [1, 2] on folds "
                           f"[0]) or neither; got {list(self.extra_seeds)} and {list(self.extra_seed_folds)}")
        if any(f not in self.folds for f in self.extra_seed_folds) or \
                len(set(self.extra_seed_folds)) != len(self.extra_seed_folds):
            raise SegError(f"{where}.extra_seed_folds: each must be one of {where}.folds {list(self.folds)}, "
                           f"once; got {list(self.extra_seed_folds)}")
        self._check_curve(where)

    def _check_curve(self, where):
        sizes = list(self.train_subjects)
        if any(not isinstance(n, int) or n < 1 for n in sizes) or sizes != sorted(set(sizes)):
            raise SegError(f"{where}.train_subjects: expected whole numbers of training subjects from 1 up, "
                           f"increasing and each once, e.g. [4, 8, 16] (the full training part is the "
                           f"cross-validation itself); got {sizes}")
        if sizes and not self.folds:
            raise SegError(f"{where}.train_subjects: a learning curve subsets each fold's training part; "
                           f"set {where}.folds too (e.g. [0, 1, 2, 3, 4]) or train_subjects: []")
        if self.curve_budget not in CURVE_BUDGETS:
            raise SegError(f"{where}.curve_budget: must be one of {list(CURVE_BUDGETS)}, got {self.curve_budget!r}")


CURVE_BUDGETS = ("steps", "epochs")


@dataclasses.dataclass(frozen=True)
class CompareConfig:
    bootstrap: int = 2000
    permutations: int = 10000
    seed: int = 0

    def check(self, where):
        for key in ("bootstrap", "permutations"):
            if not 100 <= getattr(self, key) <= 1_000_000:
                raise SegError(f"{where}.{key}: must be 100 to 1000000, got {getattr(self, key)}")
        _check_seed(self.seed, where)


SECTIONS = {"data": DataConfig, "preprocess": PreprocessConfig, "volume": VolumeConfig, "train": TrainConfig,
            "runtime": RuntimeConfig, "evaluate": EvaluateConfig, "crossval": CrossValConfig,
            "compare": CompareConfig}


def _did_you_mean(key, known):
    close = difflib.get_close_matches(str(key), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


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
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            value = float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise SegError(f"{where}: expected a finite number, got {value!r}")
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif annotation is tuple:
        if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                    and math.isfinite(v) for v in value):
            return tuple(value)
    elif annotation is dict:  # name -> list of numbers (evaluate.subject_spacing)
        if value is None:
            return {}
        if isinstance(value, dict):
            return {str(k): _coerce(v, tuple, f"{where}.{k}") for k, v in value.items()}
    expected = "a list of numbers" if annotation is tuple else getattr(annotation, '__name__', annotation)
    raise SegError(f"{where}: expected {expected}"
                   f"{' or null' if optional else ''}, got {value!r}")


def build_section(cls, raw, where):
    """`cls` from a mapping: unknown keys rejected, each value coerced and range-checked."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise SegError(f"{where}: expected a mapping of settings, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields), key=str)
    if unknown:
        hint = _did_you_mean(unknown[0], fields) or _misplaced(unknown[0], cls)
        raise SegError(f"{where}: unknown key(s) {unknown}{hint}; "
                       f"known keys: {sorted(fields)}")
    values = {name: _coerce(raw[name], fields[name].type, f"{where}.{name}") for name in raw}
    config = cls(**values)
    config.check(where)
    return config


TOP_LEVEL = ("model", "data", "preprocess", "volume", "train", "runtime", "models", "evaluate", "crossval", "compare")


def _misplaced(key, here=None):
    """' (it is a setting of train:; ...)' when `key` belongs to a section other than `here`, else ''."""
    def holds(cls):
        return cls is not here and key in {f.name for f in dataclasses.fields(cls)}
    owners = [f"{name}:" for name, cls in SECTIONS.items() if holds(cls)]
    archs = [arch for arch, cls in ARCHS.items() if holds(cls)]
    if archs:
        owners.append(f"models.<name>: of arch {' or '.join(archs)}")
    return f" (it is a setting of {' or '.join(owners)}; move it there)" if owners else ""


def validate(params):
    """Check every section of params.yaml at once: the first stage that runs fails in seconds.

    Each stage still builds the sections it reads; this only refuses a file
    that some later stage would refuse, hours of training later.
    """
    for key in params:
        if key not in TOP_LEVEL:
            hint = _misplaced(key) or _did_you_mean(key, TOP_LEVEL)
            raise SegError(f"{key}: unknown top-level key in params.yaml{hint}; known keys: {list(TOP_LEVEL)}")
    for name in SECTIONS:
        section(params, name)
    models(params)
    headline_model(params)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key written twice in one mapping (PyYAML keeps the last, DVC
    refuses the file: the two would read different settings)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice in one mapping",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_params(path="params.yaml"):
    """The params mapping, checked whole (`validate`). Parse errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise SegError(f"{path}: not found; run from the repository root")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        raise SegError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise SegError(f"{path}: expected a mapping at the top level")
    validate(raw)
    return raw


def section(params, name):
    """One checked section (`data`, `preprocess`, `train`, `runtime`, `evaluate`, `compare`)."""
    return build_section(SECTIONS[name], params.get(name), name)


def models(params):
    """All entries of `models:` as {name: ModelConfig}, in the order written."""
    raw = params.get("models")
    if not isinstance(raw, dict) or not raw:
        raise SegError("models: expected a mapping from model name to its settings, e.g. models: {unet: {lr: 1.0e-3}}")
    for name in raw:
        if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
            raise SegError(f"models: {name!r} cannot be a model name: it becomes part of file paths and stage "
                           "commands, so use letters, digits, '_', '-' and '.' (starting with a letter or digit)")
    return {name: model(params, name) for name in raw}


def model(params, name):
    """The settings of model `name` (its arch defaults to the name); a clear error when it is not listed."""
    raw = params.get("models") or {}
    if name not in raw:
        raise SegError(f"model: unknown model {name!r}; choose one of {sorted(raw)} (the keys of models: in params.yaml)")
    entry = {} if raw[name] is None else raw[name]
    if isinstance(entry, dict) and "arch" not in entry:
        entry = {"arch": name, **entry}
    return model_config(entry, f"models.{name}")


def headline_model(params):
    """The top-level `model`: which model's test scores are metrics/eval.json."""
    name = params.get("model")
    if not isinstance(name, str):
        raise SegError(f"model: expected the name of one entry of models:, got {name!r}")
    model(params, name)
    return name
