"""Turning prepared images into class ids with a trained model, on a device.

The one place that resolves a device name and runs a trained model forward
for scoring or prediction: evaluate and predict both call `Predictor`.
"""
import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from seglib import config
from seglib.errors import SegError
from seglib.models import load_checkpoint
from seglib.prepared_meta import PreparedMeta
from seglib.transforms import normalise


def resolve_device(name, where="train.device"):
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


def use_threads(count):
    """Pin torch's CPU threads (0 keeps its default): the count changes results bit for bit."""
    if count:
        torch.set_num_threads(count)


@dataclasses.dataclass
class Predictor:
    model: torch.nn.Module   # in eval mode, on `device`
    meta: PreparedMeta
    device: torch.device

    @classmethod
    def load(cls, checkpoint, device):
        model, meta = load_checkpoint(checkpoint, device)
        return cls(model, meta, device)

    @torch.no_grad()
    def classes(self, image_uint8, out_size):
        """Class ids (uint8) at `out_size` (H, W) for one prepared uint8 image.

        Logits are resized bilinearly to the original size before the argmax.
        """
        x = normalise(torch.from_numpy(image_uint8), self.meta.mean, self.meta.std)
        logits = self.model(x[None, None].to(self.device))
        logits = F.interpolate(logits, size=tuple(int(s) for s in out_size), mode="bilinear", align_corners=False)
        return logits.argmax(1)[0].cpu().numpy().astype(np.uint8)
