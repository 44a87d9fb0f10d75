"""Convert every sample once into training-ready arrays at base_size.

Training then never decodes a PNG per step: each split is one .npz holding
uint8 images (windowed, resized bilinearly) and uint8 class-id masks
(resized nearest), plus each sample's name and original size.
"""
from pathlib import Path

import numpy as np

from seglib.errors import SegError, format_problems
from seglib.graymap import to_class_ids
from seglib.io import UnreadableFile, read_image, read_mask
from seglib.transforms import load_for_model, resize_mask


def scan_gray_values(mask_dir, items, max_pixels):
    """Sorted set of gray values over the masks of `items`."""
    values = set()
    for _, mask in items:
        values.update(np.unique(_read(read_mask, Path(mask_dir) / mask, max_pixels)[0]).tolist())
    return sorted(values)


def _read(reader, path, max_pixels):
    try:
        return reader(path, max_pixels)
    except UnreadableFile as exc:
        raise SegError(f"{path}: {exc}") from None


def prepare_items(image_dir, mask_dir, items, gray_values, pre_cfg):
    """Arrays for one split; every unreadable or wrong file is reported at once."""
    size = tuple(pre_cfg.base_size)
    images, masks, sizes, errors = [], [], [], []
    for image, mask in items:
        image_path, mask_path = Path(image_dir) / image, Path(mask_dir) / mask
        try:
            raw, depth = _read(read_image, image_path, pre_cfg.max_pixels)
            image = load_for_model(raw, depth, pre_cfg, image_path)
            ids = to_class_ids(_read(read_mask, mask_path, pre_cfg.max_pixels)[0], gray_values, mask_path)
        except SegError as exc:
            errors.append(str(exc))
            continue
        images.append(image)
        masks.append(resize_mask(ids, size))
        sizes.append(raw.shape)
    if errors:
        raise SegError(format_problems(errors))
    shape = (0,) + size
    return {
        "images": np.stack(images) if images else np.zeros(shape, np.uint8),
        "masks": np.stack(masks) if masks else np.zeros(shape, np.uint8),
        "names": np.array([image for image, _ in items]),
        "sizes": np.array(sizes, dtype=np.int64).reshape(-1, 2),
    }


def intensity_stats(images):
    """Mean and std of the training images in [0, 1], for input normalisation."""
    unit = images.astype(np.float64) / 255.0
    return {"mean": float(unit.mean()), "std": float(max(unit.std(), 1e-3))}
