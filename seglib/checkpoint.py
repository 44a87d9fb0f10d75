"""Files of weights: checkpoints (the trained model with everything predict needs) and starting
weights, read with weights_only=True and checked before anything is built."""
import dataclasses
import io
import pickle
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from seglib import config, postprocess
from seglib.errors import SegError
from seglib.io import write_bytes
from seglib.models import build_model, encoder_of
from seglib.prepared_meta import read_meta

CHECKPOINT_FORMAT = 3  # 3: the post-processing rules; 2: settings hold only their arch's fields (1: every arch's)


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


def require_state_dict(state, where):
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SegError(f"{where}: expected a state dict (names -> tensors)")
    return state


def load_local_weights(model, path):
    """Initialise from a local state-dict file (e.g. torchvision's DeepLabV3 or backbone weights).

    Only tensors whose names and shapes match are taken (a 21-class COCO head is
    skipped); the file is read with weights_only=True, never unpickled freely.
    """
    state = require_state_dict(load_tensors(path, "weights"), f"{path}: weights")
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


# what an ImageNet file holds beyond its backbone: the classifier (torchvision's fc / classifier,
# timm's head); dropped, as every library does when it builds an encoder from such a file
HEAD_PREFIXES = ("fc.", "classifier.", "head.", "last_linear.")
# how a published file names the encoder's tensors: as they are (torchvision ResNets, smp encoders),
# under features. (torchvision's MobileNetV3, whose features DeepLabV3 takes as its backbone), or without
# smp's model. (timm's own files for a tu-<name> encoder)
KEY_LAYOUTS = (("", ""), ("features.", ""), ("", "model."))


def _renamed(state, layout):
    strip, add = layout
    return {add + key[len(strip):]: value for key, value in state.items()
            if key.startswith(strip) and not key.startswith(HEAD_PREFIXES)}


def _fit_first_conv(value, own):
    """A 3-channel first convolution for a 1-channel encoder: the RGB kernels summed, as smp adapts it."""
    if value.dim() == 4 and own.dim() == 4 and value.shape[1] == 3 and own.shape[1] == 1 \
            and value.shape[0] == own.shape[0] and value.shape[2:] == own.shape[2:]:
        return value.sum(1, keepdim=True)
    return value


def load_encoder_weights(model, path):
    """Initialise `model`'s encoder (seglib.models.encoder_of) from a local ImageNet file in its library's
    published layout, strictly: every encoder tensor must be in the file with its shape, and the file may
    hold nothing else but its classifier; one message names the file and the first mismatch."""
    encoder = encoder_of(model)
    if encoder is None:
        raise SegError(f"{path}: encoder_weights are for models with an encoder (deeplabv3, smp), not this one")
    state = require_state_dict(load_tensors(path, "encoder weights"), f"{path}: encoder weights")
    own = encoder.state_dict()
    # batch norms' counters are absent from older published files and change nothing at training time
    needed = {k for k in own if not k.endswith("num_batches_tracked")}
    renamed = max((_renamed(state, layout) for layout in KEY_LAYOUTS), key=lambda r: len(needed & set(r)))
    missing, unexpected = sorted(needed - set(renamed)), sorted(set(renamed) - set(own))
    if missing or unexpected:
        raise SegError(f"{path}: not the encoder of this model ({type(encoder).__name__}, {len(needed)} tensors): "
                       f"{len(missing)} missing{f' (first {missing[0]!r})' if missing else ''}, {len(unexpected)} "
                       f"unexpected{f' (first {unexpected[0]!r})' if unexpected else ''}; use the file published for "
                       "this encoder (README: pretrained encoders)")
    for key, value in renamed.items():
        value = renamed[key] = _fit_first_conv(value, own[key])
        if value.shape != own[key].shape:
            raise SegError(f"{path}: tensor {key!r} has shape {list(value.shape)}, the encoder's is "
                           f"{list(own[key].shape)}; the file is for another variant of this encoder")
    encoder.load_state_dict(renamed, strict=False)  # strict on names above; counters kept where absent


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
    if "encoder_weights" in settings:
        settings["encoder_weights"] = None
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
    if cfg.weights is not None or cfg.encoder_file() is not None:
        raise SegError(f"{path}: settings.weights and encoder_weights must be null in a trained checkpoint "
                       "(its weights are inside)")
    return cfg


def load_checkpoint(path, device="cpu"):
    """A Checkpoint; settings, meta and rules are checked before anything is built. Formats 1 and 2
    (before post-processing) load with no rule."""
    if Path(path).is_dir():
        raise SegError(f"{path}: a folder, not a checkpoint file; give the file, e.g. {Path(path) / 'model.pt'}")
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
    state = require_state_dict(ckpt["state_dict"], f"{path}: state_dict")
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
