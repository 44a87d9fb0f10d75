"""Intensity windowing, resizing and normalisation, the same for training, evaluation and prediction;
and the random augmentation of training batches."""
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from seglib.errors import SegError


def to_unit_range(raw, bit_depth, pre_cfg, where):
    """Raw pixel values -> float32 in [0, 1].

    8-bit images are divided by 255. 16-bit images use the CT window when
    `ct_window` is set (values are HU + hu_offset), else a per-image 0.5-99.5
    percentile stretch, as MRI intensities carry no absolute unit.
    """
    if pre_cfg.ct_window:
        if bit_depth == 8:
            raise SegError(f"{where}: preprocess.ct_window is true but the image is 8-bit, so it holds no "
                           "Hounsfield units; set ct_window: false for 8-bit data")
        low = pre_cfg.window_level - pre_cfg.window_width / 2
        out = (raw - pre_cfg.hu_offset - low) / pre_cfg.window_width
    elif bit_depth == 8:
        out = raw / 255.0
    else:
        low, high = np.percentile(raw, [0.5, 99.5])
        out = (raw - low) / max(high - low, 1e-6)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def resize_image(image, size):
    """Bilinear resize of a float image to size = (height, width)."""
    if image.shape == tuple(size):
        return image
    return np.asarray(Image.fromarray(image.astype(np.float32)).resize((size[1], size[0]), Image.BILINEAR))


def resize_mask(ids, size):
    """Nearest-neighbour resize of a class-id mask, so no new labels appear at edges."""
    if ids.shape == tuple(size):
        return ids
    return np.asarray(Image.fromarray(ids).resize((size[1], size[0]), Image.NEAREST))


def load_for_model(raw, bit_depth, pre_cfg, where):
    """A raw image -> the uint8 array the models see (windowed, resized to pre_cfg.base_size)."""
    return quantise(to_unit_range(raw, bit_depth, pre_cfg, where), pre_cfg.base_size)


def quantise(unit, size):
    """An image in [0, 1] -> the uint8 array at `size` = (height, width) the models see."""
    return np.floor(np.clip(resize_image(unit, size), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def normalise(images_uint8, mean, std):
    """Prepared uint8 intensities (a tensor) -> float, standardised with the training split's mean and std."""
    return (images_uint8.float() / 255.0 - mean) / std


def flip_batch(images, masks, hflip, vflip, generator):
    """Flip each sample horizontally / vertically with its own probability (image and mask together)."""
    for p, dim in ((hflip, -1), (vflip, -2)):
        if p > 0:
            chosen = torch.rand(len(images), generator=generator) < p
            images[chosen] = images[chosen].flip(dim)
            masks[chosen] = masks[chosen].flip(dim)
    return images, masks


def jitter_batch(images, masks, cfg, generator):
    """Random per-image contrast/brightness, scale and rotation (image bilinear, mask nearest).

    Slices of new subjects differ in contrast, size and tilt; flips alone teach
    none of that. All amounts are 0 (off) by default.
    """
    n = len(images)
    if cfg.intensity_jitter > 0:
        u = torch.rand(2, n, 1, 1, 1, generator=generator) * 2 - 1
        images = images * (1 + cfg.intensity_jitter * u[0]) + cfg.intensity_jitter * u[1]
    if cfg.scale_jitter > 0 or cfg.rotate_degrees > 0:
        u = torch.rand(2, n, generator=generator) * 2 - 1
        scale = 1 + cfg.scale_jitter * u[0]
        angle = torch.deg2rad(cfg.rotate_degrees * u[1])
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack([torch.stack([cos, -sin, torch.zeros(n)], 1), torch.stack([sin, cos, torch.zeros(n)], 1)], 1)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
        masks = F.grid_sample(masks[:, None].float(), grid, mode="nearest", align_corners=False)[:, 0].long()
    return images, masks


class Augment:
    """The training batches' augmentation, built from the train settings: flips, then jitter.

    One seeded generator draws every random choice, so a run repeats exactly.
    """

    def __init__(self, train_cfg, seed):
        self.cfg, self.generator = train_cfg, torch.Generator().manual_seed(seed)

    def __call__(self, images, masks):
        images, masks = flip_batch(images, masks, self.cfg.hflip, self.cfg.vflip, self.generator)
        return jitter_batch(images, masks, self.cfg, self.generator)
