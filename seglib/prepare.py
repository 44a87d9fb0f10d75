"""Convert every sample once into training-ready arrays at base_size.

Training then never decodes a PNG per step: each split is one .npz holding
uint8 images (windowed, resized bilinearly) and uint8 class-id masks
(resized nearest), plus each sample's name and original size. A volume
becomes one sample per plane (seglib.volume), named `<volume>#<plane>`, and
its .npz says which volume and plane each sample came from.
"""
import dataclasses
from pathlib import Path

import numpy as np

from seglib.errors import SegError, format_problems
from seglib.graymap import to_class_ids
from seglib.io import UnreadableFile, is_volume, read_image, read_mask
from seglib.transforms import load_for_model, quantise, resize_mask, to_unit_range
from seglib.volume import group_labels, read_label_volume, read_pair, training_planes


def scan_gray_values(mask_dir, items, max_pixels, volume_cfg):
    """Sorted set of gray values (labels, for volumes: after volume.label_groups) over the masks of `items`."""
    values = set()
    for _, mask in items:
        path = Path(mask_dir) / mask
        if is_volume(path):
            labels = _read(read_label_volume, path, (volume_cfg.slice_axis, volume_cfg.max_voxels))[0].voxels
            values.update(np.unique(group_labels(labels, volume_cfg.label_groups)).tolist())
        else:
            values.update(np.unique(_read(read_mask, path, (max_pixels,))[0]).tolist())
    return sorted(values)


def _read(reader, path, limits):
    try:
        return reader(path, *limits)
    except UnreadableFile as exc:
        raise SegError(f"{path}: {exc}") from None


def prepare_items(image_dir, mask_dir, items, gray_values, pre_cfg):
    """Arrays for one split; every unreadable or wrong file is reported at once."""
    size = tuple(pre_cfg.base_size)
    # filled in place: preparation holds the arrays themselves and one image at a time, no list to stack
    images, masks = (np.zeros((len(items),) + size, np.uint8) for _ in range(2))
    sizes, errors = np.zeros((len(items), 2), np.int64), []
    for i, (image, mask) in enumerate(items):
        image_path, mask_path = Path(image_dir) / image, Path(mask_dir) / mask
        try:
            raw, depth = _read(read_image, image_path, (pre_cfg.max_pixels,))
            images[i] = load_for_model(raw, depth, pre_cfg, image_path)
            ids = to_class_ids(_read(read_mask, mask_path, (pre_cfg.max_pixels,))[0], gray_values, mask_path)
        except SegError as exc:
            errors.append(str(exc))
            continue
        masks[i] = resize_mask(ids, size)
        sizes[i] = raw.shape
    if errors:
        raise SegError(format_problems(errors))
    return {"images": images, "masks": masks, "names": np.array([image for image, _ in items]), "sizes": sizes}


def prepare_volumes(image_dir, mask_dir, items, gray_values, pre_cfg, volume_cfg):
    """Arrays for one split of volumes: the planes volume_cfg selects (seglib.volume.training_planes) of
    each, one volume in memory at a time; `volumes` and `planes` say where each sample came from."""
    size, parts, errors = tuple(pre_cfg.base_size), [], []
    for image, mask in items:
        try:
            volume, depth, labels, _ = read_pair(Path(image_dir) / image, Path(mask_dir) / mask, volume_cfg)
            unit = to_unit_range(volume.voxels, depth, pre_cfg, Path(image_dir) / image)  # one window per volume
            ids = to_class_ids(labels.voxels, gray_values, Path(mask_dir) / mask)
        except (UnreadableFile, SegError) as exc:
            errors.append(str(exc))
            continue
        planes = training_planes(ids, volume_cfg)
        parts.append({"images": np.stack([quantise(unit[k], size) for k in planes]),
                      "masks": np.stack([resize_mask(ids[k], size) for k in planes]),
                      "names": np.array([f"{image}#{k}" for k in planes]),
                      "sizes": np.tile(np.array(unit.shape[1:], np.int64), (len(planes), 1)),
                      "volumes": np.array([image] * len(planes)), "planes": planes.astype(np.int64)})
    if errors:
        raise SegError(format_problems(errors))
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def prepare_split(image_dir, mask_dir, items, gray_values, pre_cfg, volume_cfg):
    """prepare_items for 2-D images, prepare_volumes for volumes: every plane of a validation or test
    volume (a model that fires in an empty plane is scored on it), the training planes volume_cfg selects
    of a training one (`volume_cfg` is then the training planes' setting)."""
    if items and is_volume(items[0][0]):
        return prepare_volumes(image_dir, mask_dir, items, gray_values, pre_cfg, volume_cfg)
    return prepare_items(image_dir, mask_dir, items, gray_values, pre_cfg)


def every_plane(volume_cfg):
    """The volume settings with every plane selected: validation and test volumes are scored whole."""
    return dataclasses.replace(volume_cfg, train_planes="all", step=1)


def intensity_stats(images):
    """Mean and std of the training images in [0, 1], for input normalisation.

    From the exact histogram of the uint8 values, counted about 4 M pixels at a
    time: no float copy of the arrays, and the same figures in any order.
    """
    counts = np.zeros(256, np.int64)
    chunk = max(1, (1 << 22) // max(1, images[0].size)) if len(images) else 1
    for start in range(0, len(images), chunk):
        counts += np.bincount(images[start:start + chunk].ravel(), minlength=256)
    if counts.sum() == 0:
        raise SegError("preprocess: no training images to take the intensity mean and std of")
    values, weights = np.arange(256) / 255.0, counts / counts.sum()
    mean = float(values @ weights)
    std = float(np.sqrt(((values - mean) ** 2) @ weights))
    return {"mean": mean, "std": max(std, 1e-3)}
