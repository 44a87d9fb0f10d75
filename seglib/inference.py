"""The one forward path: prepared images -> logits, probabilities and class ids, on a device.

Validation during training, evaluate and predict all run a trained model
here: the same normalisation, memory format and precision, in batches, optionally averaged over flipped copies, with each image's
scores resized back to its own size before the argmax.
"""
import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from seglib import postprocess
from seglib.checkpoint import load_checkpoint
from seglib.errors import SegError
from seglib.prepared_meta import PreparedMeta
from seglib.runtime import autocast
from seglib.transforms import normalise

# test-time augmentation: the dims each extra pass flips (images are N, C, H, W)
FLIPS = {"h": -1, "v": -2}


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


def _slicing(meta):
    """How a volume becomes the member's input and truth; which training planes it saw does not matter."""
    return meta.volume and {"slice_axis": meta.volume.slice_axis, "label_groups": meta.volume.label_groups}


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
            for what, read in (("gray_values", lambda m: m.gray_values), ("preprocess", lambda m: m.preprocess),
                               ("volume slicing", _slicing)):
                if read(member.meta) != read(first):
                    raise SegError(f"{path}: prepared with {what} {read(member.meta)}, {checkpoints[0]} "
                                   f"with {read(first)}; an ensemble's members must read the same input")
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
