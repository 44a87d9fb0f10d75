"""Pairing images with masks and checking a dataset before anything trains on it.

Every problem is collected first and reported at once, one line per file,
so a user with 400 slices learns about all 7 broken masks in one run.
Errors stop the run; warnings are printed and kept in the report.
"""
import dataclasses
import hashlib
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from seglib.errors import SegError, format_problems
from seglib.config import VolumeConfig
from seglib.io import UnreadableFile, file_stem, hidden_images, is_volume, list_images, read_image, read_mask
from seglib.split import split_units
from seglib.volume import read_pair

RESAMPLED_LEVELS = 6  # more distinct gray values than this in one mask suggests interpolation


@dataclasses.dataclass
class DatasetReport:
    pairs: list            # [(image name, mask name)], sorted by image name
    subjects: dict         # image name -> subject key (data.group_regex)
    units: dict            # image name -> split unit: its subject, or subjects joined by '+' that share an image
    gray_counts: dict      # gray value -> pixel count over all masks
    grays: dict            # image name -> sorted gray values present in its mask
    empty_masks: list      # image names whose mask is all background (lowest gray value)
    warnings: list

    def summary(self):
        total = sum(self.gray_counts.values()) or 1
        return {
            "images": len(self.pairs),
            "subjects": len(set(self.subjects.values())),
            "split_units": len(set(self.units.values())),
            "gray_values": sorted(self.gray_counts),
            "pixel_fraction": {str(g): c / total for g, c in sorted(self.gray_counts.items())},
            "empty_masks": len(self.empty_masks),
            "warnings": self.warnings,
        }


def check_subject_keys(keys, where, image_dir, group_regex):
    """Settings keyed by subject (evaluate.subject_spacing) must name subjects that exist: the subject ids
    data.group_regex gives the file names of `image_dir` (an unknown key would silently be ignored)."""
    if not keys or not Path(image_dir).is_dir():
        return  # nothing keyed, or no data yet: the split stage names a missing folder
    subjects = {subject_of(p.name, group_regex) for p in list_images(image_dir)} - {None}
    unknown = sorted(set(keys) - subjects)
    if unknown:
        known = sorted(subjects)
        shown = ", ".join(known[:10]) + (f" and {len(known) - 10} more" if len(known) > 10 else "")
        raise SegError(f"{where}: {', '.join(unknown)} match(es) no subject of {image_dir} (data.group_regex "
                       f"{group_regex!r} gives: {shown}); use those ids")


def mask_name_for(image_name, image_token, mask_token):
    """The mask stem for an image: its stem with `image_token` swapped for `mask_token`."""
    stem = file_stem(image_name)
    return stem.replace(image_token, mask_token) if image_token else stem


def pair_files(image_dir, mask_dir, image_token, mask_token, errors):
    """[(image name, mask name)] for every image; unpaired files are appended to `errors`."""
    for folder, what in ((image_dir, "image"), (mask_dir, "mask")):
        if not Path(folder).is_dir():
            raise SegError(f"{folder}: {what} folder not found; put the {what}s in {folder}/ "
                           "(see 'Bring your own data' in the README)")
    masks_by_stem = {}
    for path in list_images(mask_dir):
        masks_by_stem.setdefault(file_stem(path), []).append(path.name)
    images = list_images(image_dir)
    if image_token and images and not any(image_token in file_stem(p) for p in images):
        raise SegError(f"data.image_token: '{image_token}' appears in none of the {len(images)} image names "
                       f"(e.g. {images[0].name}); set image_token and mask_token to the tokens your names use, "
                       "or both to '' when masks have the same names as their images")
    pairs, used = [], set()
    for path in images:
        if image_token and image_token not in file_stem(path):
            errors.append(f"{path}: name does not contain data.image_token {image_token!r}; "
                          "rename it or change image_token/mask_token in params.yaml")
            continue
        stem = mask_name_for(path.name, image_token, mask_token)
        found = masks_by_stem.get(stem, [])
        if not found:
            errors.append(f"{path}: no mask named {stem}.* in {mask_dir}/; add it or remove the image"
                          + ("" if image_token else " (if masks use another naming, set data.image_token/mask_token)"))
        elif len(found) > 1:
            errors.append(f"{path}: several masks match ({', '.join(found)}); keep one")
        else:
            pairs.append((path.name, found[0]))
            used.add(stem)
    images_by_mask = defaultdict(list)
    for image, mask in pairs:
        images_by_mask[mask].append(image)
    shared = {mask: names for mask, names in images_by_mask.items() if len(names) > 1}
    for mask, names in sorted(shared.items()):
        errors.append(f"{Path(mask_dir) / mask}: is the mask of several images ({', '.join(names)}); "
                      "keep one image per mask (the same slice saved twice?)")
    pairs = [(image, mask) for image, mask in pairs if mask not in shared]
    for stem in sorted(set(masks_by_stem) - used):
        for name in masks_by_stem[stem]:
            errors.append(f"{Path(mask_dir) / name}: mask without an image; add the image or remove the mask")
    return pairs


def subject_of(name, group_regex):
    """The subject key of a file: the regex's first group (or whole match); the name itself when no regex."""
    if not group_regex:
        return name
    match = re.search(group_regex, name)
    if match is None:
        return None
    return match.group(1) if match.groups() else match.group(0)


def pixel_digest(pixels):
    """A digest of an image's decoded pixels, or None for a blank (constant) image.

    Decoded pixels, not file bytes: the same slice saved twice by different
    tools is still the same slice. Blank slices are alike by nature, not copies.
    """
    if pixels.size == 0 or pixels.min() == pixels.max():
        return None
    return hashlib.blake2b(np.ascontiguousarray(pixels).tobytes() + str(pixels.shape).encode(),
                           digest_size=16).hexdigest()


def _read_pair(image_path, mask_path, limits, errors):
    """(image pixels, mask values, mask kind) of a pair of 2-D images or of volumes (canonical
    orientation, label groups applied), or None with the problem appended to `errors`."""
    max_pixels, volume_cfg = limits
    if is_volume(image_path):
        try:
            image, _, mask, kind = read_pair(image_path, mask_path, volume_cfg)
        except UnreadableFile as exc:
            errors.append(str(exc))
            return None
        return image.voxels, mask.voxels, kind
    try:
        pixels = read_image(image_path, max_pixels)[0]  # a full decode: headers alone miss truncated files
    except UnreadableFile as exc:
        errors.append(f"{image_path}: {exc}; replace or remove the file")
        return None
    try:
        values, kind = read_mask(mask_path, max_pixels)
    except UnreadableFile as exc:
        errors.append(f"{mask_path}: {exc}")
        return None
    return pixels, values, kind


def _check_pair(image_path, mask_path, gray_values, limits, problems):
    """(gray-value counts of the mask, its kind, pixel digest of the image), or None when the pair is broken.

    `limits` is (preprocess.max_pixels, the volume settings); `problems` the (errors, warnings) pair of
    lists the findings go to.
    """
    errors, warnings = problems
    image = image_path.name
    read = _read_pair(image_path, mask_path, limits, errors)
    if read is None:
        return None
    pixels, values, kind = read
    shape = pixels.shape
    if values.shape != shape:
        errors.append(f"{mask_path}: size {values.shape[1]}x{values.shape[0]} differs from its image "
                      f"{image} ({shape[1]}x{shape[0]}); masks must match their image pixel for pixel")
        return None
    grays, counts = np.unique(values, return_counts=True)
    if gray_values is not None:
        unknown = sorted(set(grays.tolist()) - set(gray_values))
        if unknown:
            errors.append(f"{mask_path}: gray values {unknown} are not in data.gray_values {list(gray_values)}; "
                          "fix the mask or add the values to data.gray_values")
            return None
    if len(grays) > RESAMPLED_LEVELS and not is_volume(image):  # label volumes are whole numbers, checked
        warnings.append(f"{mask_path}: {len(grays)} gray levels; a mask resized with bilinear "
                        "interpolation looks like this: resize masks with nearest neighbour")
    return dict(zip(grays.tolist(), counts.tolist())), kind, pixel_digest(pixels)


def _outside_links(folder, roots):
    """Files in `folder` that are symbolic links to a place outside `roots`."""
    return [p for p in sorted(Path(folder).iterdir()) if p.is_symlink()
            and not any(p.resolve().is_relative_to(r) for r in roots)]


def _folder_warnings(image_dir, mask_dir):
    """Hidden files that are skipped, and links that DVC would replace with copies."""
    warnings, roots = [], [Path(image_dir).resolve(), Path(mask_dir).resolve()]
    for folder in (image_dir, mask_dir):
        hidden = hidden_images(folder)
        if hidden:
            warnings.append(f"{folder}: skipped {len(hidden)} hidden file(s) with a leading dot "
                            f"(e.g. {hidden[0].name}: macOS AppleDouble or editor files); they are not slices")
        nested = sorted(p.name for p in Path(folder).iterdir() if p.is_dir() and list_images(p))
        if nested:
            warnings.append(f"{folder}: {len(nested)} subfolder(s) holding images are not read (e.g. {nested[0]}/): "
                            "put every slice directly in the folder")
        for link in _outside_links(folder, roots):
            warnings.append(f"{link}: a symbolic link to {link.resolve()}, outside the dataset; it is read "
                            "through the link, but DVC stores the file itself and `dvc checkout` puts back a "
                            "copy: copy the file into the dataset instead")
    return warnings


def _mixed_kinds(kinds, mask_dir):
    """Errors for masks whose bit depth differs from most masks (a 16-bit 65535 would become a class)."""
    by_kind = defaultdict(list)
    for mask, kind in sorted(kinds.items()):
        by_kind[kind].append(mask)
    if len(by_kind) < 2:
        return []
    usual = max(by_kind, key=lambda k: (len(by_kind[k]), k))
    return [f"{Path(mask_dir) / mask}: a {kind} mask among {len(by_kind[usual])} {usual} masks; save every "
            f"mask at one bit depth with the same gray values (this one's values would become extra classes)"
            for kind, masks in sorted(by_kind.items()) if kind != usual for mask in masks]


def check_dataset(image_dir, mask_dir, data_cfg, max_pixels, volume_cfg=VolumeConfig()):
    """Pair, decode and check every file. Raises one SegError listing every problem."""
    errors = []
    pairs = pair_files(image_dir, mask_dir, data_cfg.image_token, data_cfg.mask_token, errors)
    volumes = sum(is_volume(image) for image, _ in pairs)
    if 0 < volumes < len(pairs):
        example = next(image for image, _ in pairs if not is_volume(image))
        raise SegError(f"{image_dir}: holds {volumes} volume(s) and {len(pairs) - volumes} 2-D image(s) (e.g. "
                       f"{example}); a dataset is one or the other: keep the volumes, or slice them yourself")
    warnings = _folder_warnings(image_dir, mask_dir)
    if not pairs and not errors:
        raise SegError(f"{image_dir}: no images found (looked for .png .jpg .jpeg .tif .tiff .bmp, and volumes "
                       ".nii .nii.gz .mha .mhd .nrrd .nhdr); put the slices or volumes there")
    subjects, digests, gray_counts, grays, kinds, empty, kept = {}, {}, Counter(), {}, {}, [], []
    if pairs and all(subject_of(image, data_cfg.group_regex) is None for image, _ in pairs):
        raise SegError(f"data.group_regex: '{data_cfg.group_regex}' matches none of the {len(pairs)} image names "
                       f"(e.g. {pairs[0][0]}); write a regex whose first group is the subject id, or set it to ''")
    for image, mask in pairs:
        group = subject_of(image, data_cfg.group_regex)
        if group is None:
            errors.append(f"{Path(image_dir) / image}: data.group_regex '{data_cfg.group_regex}' does not match "
                          "this name; fix the regex (it must match every image name) or set it to ''")
            continue
        checked = _check_pair(Path(image_dir) / image, Path(mask_dir) / mask, data_cfg.gray_values,
                              (max_pixels, volume_cfg), (errors, warnings))
        if checked is None:
            continue
        counts, kinds[mask], digests[image] = checked
        subjects[image], grays[image] = group, sorted(counts)
        gray_counts.update(counts)
        kept.append((image, mask))
        if len(counts) == 1:
            empty.append(image)
    errors += _mixed_kinds(kinds, mask_dir)
    background = min(gray_counts, default=0)
    full = [image for image in empty if grays[image][0] != background]
    if full:
        warnings.append(f"{len(full)} mask(s) are one foreground class throughout (e.g. "
                        f"{dict(kept)[full[0]]}): an inverted mask, or an image that is all spine? check them")
        empty = [image for image in empty if image not in full]
    report = DatasetReport(kept, subjects, split_units(subjects, digests, warnings), dict(gray_counts), grays,
                           empty, warnings)
    levels = len(gray_counts) if data_cfg.gray_values is None else 0
    if levels > data_cfg.max_classes:
        worst = sorted(kept, key=lambda pair: (-len(grays[pair[0]]), pair[1]))[:5]
        named = ", ".join(f"{mask} ({len(grays[image])} values)" for image, mask in worst)
        errors.append(f"{mask_dir}: masks hold {levels} distinct gray values, more than data.max_classes "
                      f"({data_cfg.max_classes}); masks must hold one gray value per class "
                      f"(resampled or JPEG masks do not), or raise max_classes. Most values: {named}")
    if errors:
        raise SegError(format_problems(errors))
    if empty and len(empty) == len(kept):
        raise SegError(f"{mask_dir}: every mask is empty (a single gray value); nothing to learn")
    return report
