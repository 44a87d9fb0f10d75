"""The model registry, UNet, DeepLabV3 adapted to return logits, and checkpoints.

Every model maps a (N, 1, H, W) float tensor to (N, C, H, W) logits; nothing
outside this module knows that DeepLabV3 returns a dict or wants 3 channels.
"""
import dataclasses
import io
import pickle
import warnings
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import segmentation
from torchvision.models.segmentation.deeplabv3 import ASPPConv

from seglib import config, postprocess
from seglib.errors import SegError
from seglib.io import write_bytes
from seglib.prepared_meta import read_meta

CHECKPOINT_FORMAT = 3  # 3: the post-processing rules; 2: settings hold only their arch's fields (1: every arch's)
BACKBONES = {
    "mobilenet_v3_large": segmentation.deeplabv3_mobilenet_v3_large,
    "resnet50": segmentation.deeplabv3_resnet50,
    "resnet101": segmentation.deeplabv3_resnet101,
}


# Instance norm (nnU-Net's choice) normalises each image's features on its own:
# no batch statistics, so train and eval mode compute the same thing.
NORM_LAYERS = {"batch": nn.BatchNorm2d, "instance": lambda c: nn.InstanceNorm2d(c, affine=True)}


class DoubleConv(nn.Sequential):
    """(conv 3x3 -> norm -> ReLU) x 2"""

    def __init__(self, c_in, c_out, norm):
        layer = NORM_LAYERS[norm]
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), layer(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), layer(c_out), nn.ReLU(inplace=True))


class Up(nn.Module):
    """Bilinear upsample x2 -> concatenate the skip -> DoubleConv"""

    def __init__(self, c_in, c_skip, c_out, norm):
        super().__init__()
        self.conv = DoubleConv(c_in + c_skip, c_out, norm)

    def forward(self, x, skip):
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """`depth` 2x poolings; channels width, 2w, ... doubling down to width * 2**depth at the bottom. Any input size works."""

    def __init__(self, in_channels, num_classes, width=16, norm="batch", depth=4):
        super().__init__()
        w = [width * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([DoubleConv(in_channels, w[0], norm)] +
                                  [DoubleConv(w[i], w[i + 1], norm) for i in range(depth)])
        self.up = nn.ModuleList([Up(w[i + 1], w[i], w[i], norm) for i in reversed(range(depth))])
        self.head = nn.Conv2d(w[0], num_classes, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            x = block(x, skips.pop())
        return self.head(x)


class AtrousConv2d(nn.Conv2d):
    """An ASPP convolution (3 x 3, padding = dilation) that runs only its centre tap on a feature map
    no taller and no wider than its dilation: there every other tap reads padding zeros, so the
    sum is the same up to float rounding, at a ninth of the work. ASPP's rates 12, 24 and 36 all
    exceed the 8 x 8 map of a 128 px slice; at 224 px (14 x 14) 24 and 36 do (docs/benchmarks.md)."""

    def forward(self, x):
        if x.shape[-2] <= self.dilation[0] and x.shape[-1] <= self.dilation[1]:
            return F.conv2d(x, self.weight[:, :, 1:2, 1:2], self.bias)
        return super().forward(x)


def use_centre_taps(net):
    """torchvision's DeepLabV3 `net` with its ASPP convolutions as AtrousConv2d: the same weights and
    checkpoints; only forward differs."""
    for module in net.modules():
        if isinstance(module, ASPPConv):
            module[0].__class__ = AtrousConv2d
    return net


class DeepLabV3(nn.Module):
    """torchvision's DeepLabV3, fed gray images as 3 equal channels, returning the 'out' logits."""

    def __init__(self, num_classes, backbone):
        super().__init__()
        # weights=None and weights_backbone=None: nothing is downloaded, ever
        self.net = use_centre_taps(
            BACKBONES[backbone](weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False))

    def forward(self, x):
        return self.net(x.expand(-1, 3, -1, -1))["out"]


class ScaledInput(nn.Module):
    """Run `net` on the input resized by `scale` and resize its logits back.

    For DeepLabV3, whose output stride of 16 leaves a 14 x 14 map at 224 x 224:
    scale 2 doubles the feature map's resolution at four times the compute.
    """

    def __init__(self, net, scale):
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, x):
        size = x.shape[-2:]
        logits = self.net(F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def min_input_side(cfg):
    """Smallest input side (px, after input_scale) a model trains on: UNet's deepest level must keep
    2 x 2 pixels (instance norm needs more than one); DeepLabV3 has no such limit."""
    return 2 ** (cfg.depth + 1) if isinstance(cfg, config.UNetConfig) else 1


# arch -> builder from its settings class (config.ARCHS); a test keeps the two equal
REGISTRY = {
    "unet": lambda cfg, num_classes: UNet(1, num_classes, cfg.width, cfg.norm, cfg.depth),
    "deeplabv3": lambda cfg, num_classes: DeepLabV3(num_classes, cfg.backbone),
}


def build_model(cfg, num_classes, bn_momentum=None):
    """A fresh model for `cfg.arch`. `bn_momentum` overrides every BatchNorm's momentum.

    torchvision's MobileNetV3 sets momentum 0.01: from scratch on a few hundred
    slices the running statistics then lag the weights for many epochs and the
    model predicts nothing in eval mode. 0.1 tracks them (docs/real-data.md).
    """
    model = REGISTRY[cfg.arch](cfg, num_classes)
    if cfg.input_scale != 1.0:
        model = ScaledInput(model, cfg.input_scale)
    if bn_momentum is not None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = bn_momentum
    if cfg.weights:
        load_local_weights(model, cfg.weights)
    return model


def load_tensors(path, what):
    """torch.load with weights_only=True, every failure turned into one message naming the file.

    A file holding pickled Python objects is refused by torch before any of
    its code runs; the message says so and never suggests weights_only=False.
    """
    path = Path(path)
    if not path.is_file():
        raise SegError(f"{path}: {what} not found")
    if path.stat().st_size == 0:
        raise SegError(f"{path}: the {what} file is empty (an interrupted copy?); replace it")
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives; older formats are plain pickles
        raise SegError(f"{path}: not a PyTorch {what} file (torch.save writes a zip archive); it was not loaded")
    try:
        with warnings.catch_warnings():  # torch's warnings about a foreign file's pickle protocol add nothing here
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise SegError(f"{path}: the {what} holds Python objects, not only tensors and plain values, so it was "
                       "not written by this pipeline or has been tampered with; it was not loaded (loading it "
                       "could run code). Use a file this pipeline wrote") from None
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise SegError(f"{path}: not a PyTorch {what} file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                       ) from None


def _require_state_dict(state, where):
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SegError(f"{where}: expected a state dict (names -> tensors)")
    return state


def load_local_weights(model, path):
    """Initialise from a local state-dict file (e.g. torchvision's DeepLabV3 or backbone weights).

    Only tensors whose names and shapes match are taken (a 21-class COCO head is
    skipped); the file is read with weights_only=True, never unpickled freely.
    """
    state = _require_state_dict(load_tensors(path, "weights"), f"{path}: weights")
    own = model.state_dict()
    prefixes = ("", "net.", "net.backbone.", "net.net.", "net.net.backbone.")
    taken = {}
    for key, value in state.items():
        for prefix in prefixes:
            name = prefix + key
            if name in own and own[name].shape == value.shape:
                taken[name] = value
                break
    if not taken:
        raise SegError(f"weights: no tensor in {path} matches the model's layers; is it a weights file for this model?")
    model.load_state_dict(taken, strict=False)


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


CHECKPOINT_KEYS = ("format", "settings", "num_classes", "meta", "state_dict", "postprocess")


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    model: nn.Module      # in eval mode
    settings: object      # the model's config class (seglib.config)
    meta: object          # PreparedMeta
    rules: tuple          # seglib.postprocess.ClassRule per foreground class, chosen on validation


def save_checkpoint(path, model, cfg, meta, name, rules=None):
    """Everything predict needs, in tensors and plain Python types only (loadable with weights_only=True);
    `rules` (chosen by seglib.postprocess; default none) travel with the weights.

    Saved through a buffer: torch.save names the archive's root folder after
    the file it writes, and the atomic writer's temporary name is random, so
    identical weights would otherwise give different bytes.
    """
    settings = dataclasses.asdict(cfg)
    settings["weights"] = None  # the trained weights are in this file
    buffer = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "settings": settings, "num_classes": meta.num_classes,
                "meta": {**meta.to_dict(), "name": name}, "state_dict": model.state_dict(),
                "postprocess": postprocess.to_list(rules or postprocess.none(meta.num_classes))}, buffer)
    write_bytes(path, buffer.getvalue())


def _settings(ckpt, path):
    """The model's settings class from a checkpoint; format 1's fields of other archs are dropped."""
    settings = ckpt["settings"]
    if ckpt["format"] == 1 and isinstance(settings, dict) and settings.get("arch") in config.ARCHS:
        own = {f.name for f in dataclasses.fields(config.ARCHS[settings["arch"]])}
        settings = {k: v for k, v in settings.items() if k in own}
    cfg = config.model_config(settings, f"{path}: settings")
    if cfg.weights is not None:
        raise SegError(f"{path}: settings.weights must be null in a trained checkpoint (its weights are inside)")
    return cfg


def load_checkpoint(path, device="cpu"):
    """A Checkpoint; settings, meta and rules are checked before anything is built. Formats 1 and 2
    (before post-processing) load with no rule."""
    if not Path(path).exists():
        raise SegError(f"{path}: checkpoint not found. DVC removes a stage's outputs before it runs, so a failed "
                       f"train stage leaves none: `dvc checkout {Path(path).parent}` restores the last one "
                       "recorded in dvc.lock, `dvc repro` trains it again")
    ckpt = load_tensors(path, "checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") not in (1, 2, CHECKPOINT_FORMAT) \
            or sorted(ckpt) != sorted(CHECKPOINT_KEYS[:-1] if ckpt["format"] < 3 else CHECKPOINT_KEYS):
        raise SegError(f"{path}: not a checkpoint written by this pipeline (format {CHECKPOINT_FORMAT}); "
                       "use models/<name>/model.pt from the train stage")
    cfg = _settings(ckpt, path)
    meta = read_meta(ckpt["meta"], f"{path}: meta")
    if ckpt["num_classes"] != meta.num_classes:
        raise SegError(f"{path}: num_classes {ckpt['num_classes']!r} disagrees with meta's {meta.num_classes} gray values")
    state = _require_state_dict(ckpt["state_dict"], f"{path}: state_dict")
    rules = (postprocess.from_list(ckpt["postprocess"], meta.num_classes, f"{path}: postprocess")
             if ckpt["format"] >= 3 else postprocess.none(meta.num_classes))
    model = build_model(cfg, meta.num_classes)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise SegError(f"{path}: weights do not fit a {cfg.arch} with {meta.num_classes} classes ({first}); "
                       "the file was changed or written by another model") from None
    return Checkpoint(model.to(device).eval(), cfg, meta, rules)
