"""Intensity windowing, resizing and normalisation, the same for training, evaluation and prediction."""
import numpy as np
import torch
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
    unit = resize_image(to_unit_range(raw, bit_depth, pre_cfg, where), pre_cfg.base_size)
    return np.floor(np.clip(unit, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def normalise(images_uint8, mean, std):
    """Prepared uint8 intensities (a tensor) -> float, standardised with the training split's mean and std."""
    return (images_uint8.float() / 255.0 - mean) / std
