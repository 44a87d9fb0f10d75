"""The one forward path: prepared images -> logits, probabilities and class ids, on a device.

Validation during training, evaluate, predict and bench.probe all run a
trained model here: the same normalisation, memory format and precision,
in batches, optionally averaged over flipped copies, with each image's
scores resized back to its own size before the argmax.
"""
import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seglib import config, postprocess
from seglib.errors import SegError
from seglib.models import load_checkpoint
from seglib.prepared_meta import PreparedMeta
from seglib.transforms import normalise

# test-time augmentation: the dims each extra pass flips (images are N, C, H, W)
FLIPS = {"h": -1, "v": -2}


def resolve_device(name, where="runtime.device"):
    """A torch.device for `name`; one message when the form is wrong or the device is absent."""
    config.check_device(name, where)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SegError(f"{where}: {name!r} asked for but no CUDA GPU is visible; use auto or cpu")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise SegError(f"{where}: {name!r} asked for but only {torch.cuda.device_count()} CUDA GPU(s) are visible")
    if name == "mps" and not torch.backends.mps.is_available():
        raise SegError(f"{where}: 'mps' asked for but no Apple GPU (MPS) is available here; use auto or cpu")
    return torch.device(name)


def use_runtime(runtime_cfg, where="runtime.device"):
    """Pin torch's CPU threads (0 keeps its default: the count changes results bit for bit), choose
    deterministic kernels or cuDNN's fastest (runtime.deterministic); return the device."""
    if runtime_cfg.threads:
        torch.set_num_threads(runtime_cfg.threads)
    device = resolve_device(runtime_cfg.device, where)
    if runtime_cfg.deterministic:
        # cuBLAS reproduces its sums only with a fixed workspace, set before its first call
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True
    return device


def check_precision(device, precision, where):
    """fp16 needs a CUDA GPU; bf16 on a GPU needs one that has it (Ampere or later). bf16 on a CPU
    that cannot use bf16 units gets a warning: it runs, many times slower than fp32."""
    if precision == "fp16" and device.type != "cuda":
        raise SegError(f"{where}.precision: fp16 (with a gradient scaler) is for CUDA GPUs without bf16; "
                       f"on {device.type} use fp32 or bf16")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SegError(f"{where}.precision: this GPU ({torch.cuda.get_device_name(device)}) has no bf16; use fp16")
    slow = cpu_bf16_slowness() if precision == "bf16" and device.type == "cpu" else None
    if slow:
        print(f"warning: {where}.precision: bf16 {slow}")


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU's feature flags (avx2, amx_bf16, ...) as a set, or None where they cannot be read (not Linux)."""
    path = Path(cpuinfo)
    if not path.is_file():
        return None
    return next((set(line.split(":", 1)[1].split()) for line in path.read_text().splitlines()
                 if line.startswith("flags")), None)


def cpu_bf16_slowness(cpuinfo="/proc/cpuinfo"):
    """Why bf16 will be slow on this CPU, or None where it can use AMX or AVX512-BF16 (or the CPU's
    flags cannot be read). Without those units oneDNN emulates bf16: measured 10x slower than fp32
    (docs/benchmarks.md)."""
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return None
    if "amx_bf16" not in flags and "avx512_bf16" not in flags:
        return ("on this CPU (no AMX or AVX512-BF16) is emulated, about 10x slower than fp32 "
                "(docs/benchmarks.md); use fp32")
    if os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2":
        return ("here runs about 10x slower than fp32: this CPU has bf16 units, but the ISA pins of "
                "docs/determinism.md keep oneDNN on AVX2; SEGLIB_NATIVE_CPU=1 uses them (about 3x faster "
                "than fp32 for UNet, results then differ between machines), or use fp32")
    return None


def autocast(device, precision):
    """bf16 or fp16 autocast (convolutions in half precision, reductions in float32), or plain fp32.

    On recent GPUs, and on CPUs with AMX once SEGLIB_NATIVE_CPU=1 lifts the ISA
    pins, bf16 trains UNet 2-3x faster (bench/precision.py); the weights stay float32.
    """
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=precision in ("bf16", "fp16"))


def to_device(images, device):
    # channels_last: oneDNN and cuDNN convolutions run faster in NHWC; non_blocking overlaps a copy
    # from pinned memory with the GPU's work (a plain copy elsewhere)
    return images.to(device, memory_format=torch.channels_last, non_blocking=True)


def forward(model, images, precision):
    """Logits of a normalised (N, 1, H, W) batch already on the model's device, in `precision`."""
    with autocast(images.device, precision):
        return model(images)


@dataclasses.dataclass
class Predictor:
    model: torch.nn.Module   # in eval mode, on `device`
    meta: PreparedMeta
    device: torch.device
    precision: str = "fp32"
    batch_size: int = 8
    flips: tuple = ()        # keys of FLIPS: each adds a pass on the flipped batch, its softmax flipped back
    rules: tuple = None      # seglib.postprocess rules per foreground class (None: none)

    @classmethod
    def load(cls, checkpoint, device, flips=()):
        """A checkpoint's model, run in its training precision and batch size, with its rules."""
        ckpt = load_checkpoint(checkpoint, device)
        # fp16 is a GPU's stand-in for bf16; elsewhere its weights (float32) run in fp32
        precision = "fp32" if ckpt.settings.precision == "fp16" and device.type != "cuda" else ckpt.settings.precision
        return cls(ckpt.model, ckpt.meta, device, precision, ckpt.settings.batch_size, tuple(flips), ckpt.rules)

    @property
    def postprocess(self):
        return self.rules or postprocess.none(self.meta.num_classes)

    @torch.no_grad()
    def _scores(self, images_uint8, softmax):
        """(N, C, h, w) at the prepared size: the mean softmax over the flips, or logits when
        there are no flips and `softmax` is false (their argmax after resizing is the plain prediction)."""
        x = to_device(normalise(torch.from_numpy(np.asarray(images_uint8)), self.meta.mean, self.meta.std)[:, None],
                      self.device)
        logits = forward(self.model, x, self.precision).float()
        if not (softmax or self.flips):
            return logits
        passes = [logits.softmax(1)] + [forward(self.model, x.flip(FLIPS[f]), self.precision).float()
                                        .softmax(1).flip(FLIPS[f]) for f in self.flips]
        return torch.stack(passes).mean(0)

    def _resized(self, images_uint8, sizes, softmax):
        """Per image, its (C, H, W) scores resized bilinearly to its own (H, W), batch by batch."""
        for start in range(0, len(images_uint8), self.batch_size):
            batch = self._scores(images_uint8[start:start + self.batch_size], softmax)
            for scores, size in zip(batch, sizes[start:start + self.batch_size]):
                yield F.interpolate(scores[None], size=tuple(int(s) for s in size), mode="bilinear",
                                    align_corners=False)[0]

    def probabilities(self, images_uint8, sizes):
        """Per image, float32 class probabilities (C, H, W) at its size in `sizes` (a generator, in order)."""
        for probs in self._resized(images_uint8, sizes, softmax=True):
            yield probs.cpu().numpy()

    def classes(self, images_uint8, sizes):
        """Per image, uint8 class ids (H, W) at its size in `sizes` (a generator, in order)."""
        for scores in self._resized(images_uint8, sizes, softmax=False):
            yield scores.argmax(0).cpu().numpy().astype(np.uint8)


@dataclasses.dataclass
class Ensemble:
    """Several predictors as one, as nnU-Net's default inference combines its folds: the mean of the
    members' probabilities, then the argmax. Members read the same prepared input (gray values and
    preprocessing); each normalises it with its own mean and std. Its rules: per class, the rule
    every member chose on validation, else none (seglib.postprocess.agreed)."""
    members: list

    @classmethod
    def load(cls, checkpoints, device, flips=()):
        members = [Predictor.load(c, device, flips) for c in checkpoints]
        first = members[0].meta
        for path, member in zip(checkpoints[1:], members[1:]):
            for what in ("gray_values", "preprocess"):
                if getattr(member.meta, what) != getattr(first, what):
                    raise SegError(f"{path}: prepared with {what} {getattr(member.meta, what)}, {checkpoints[0]} "
                                   f"with {getattr(first, what)}; an ensemble's members must read the same input")
        return cls(members)

    @property
    def meta(self):
        return self.members[0].meta

    @property
    def batch_size(self):
        return min(m.batch_size for m in self.members)

    @property
    def postprocess(self):
        return postprocess.agreed([m.postprocess for m in self.members])

    def probabilities(self, images_uint8, sizes):
        for probs in zip(*(m.probabilities(images_uint8, sizes) for m in self.members)):
            yield np.mean(probs, axis=0, dtype=np.float32)

    def classes(self, images_uint8, sizes):
        for probs in self.probabilities(images_uint8, sizes):
            yield probs.argmax(0).astype(np.uint8)


def load_predictor(checkpoints, device, flips=()):
    """One checkpoint's Predictor, or an Ensemble of several."""
    checkpoints = list(checkpoints)
    return Predictor.load(checkpoints[0], device, flips) if len(checkpoints) == 1 else \
        Ensemble.load(checkpoints, device, flips)
