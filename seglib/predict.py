"""Predict masks for a folder of images of any size with a trained checkpoint, or an ensemble.

The checkpoint's post-processing rules (chosen on validation when it was
trained) are applied unless switched off; an ensemble applies the rules all
its members agree on.

Masks are written in the dataset's own gray values at each image's original
size. A volume gets a label volume of the same format (.mhd -> .mha and
.nhdr -> .nrrd, single files) in its own grid and header, so image and
prediction line up in ITK-SNAP or 3D Slicer. An unreadable image is skipped
and reported; the batch goes on.

A user's files are never touched: every output path is checked before the
first one is written. The output folders may not be or hold the input, two
inputs may not share a stem (their masks would share a name), and no
existing file is replaced unless `overwrite` is set.
"""
import dataclasses
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from seglib import postprocess
from seglib.errors import SegError, format_problems
from seglib.graymap import to_gray
from seglib.inference import load_predictor
from seglib.config import VolumeConfig
from seglib.io import UnreadableFile, file_stem, is_volume, list_images, read_image, save_figure, write_png
from seglib.plots import samples_figure
from seglib.runtime import resolve_device
from seglib.transforms import load_for_model, quantise, resize_image, to_unit_range
from seglib.volume import read_image_volume, write_label_volume

SINGLE_FILE = {".mhd": ".mha", ".nhdr": ".nrrd"}  # a header and a data file written as one file


def output_name(path):
    """The mask's file name for input `path`: <stem>.png, or a volume of the input's format."""
    if not is_volume(path):
        return f"{file_stem(path)}.png"
    suffix = Path(path).name[len(file_stem(path)):].lower()
    return file_stem(path) + SINGLE_FILE.get(suffix, suffix)


def _inside(path, folder):
    return path == folder or path.is_relative_to(folder)


def _unwritable(folder):
    """Why masks cannot be written under `folder`, or None: a file in the way, or the nearest existing
    folder not writable (a read-only mount, no permission)."""
    for path in (folder, *folder.parents):
        if path.exists():
            if not path.is_dir():
                return f"{path} is a file, not a folder"
            return None if os.access(path, os.W_OK) else f"{path} is not writable (read-only or no permission)"
    return None


def _planned(files, targets):
    """(folder, file name) of every output: masks under --output, PNG overlays under --overlays."""
    return [(folder, output_name(path) if option == "--output" else f"{file_stem(path)}.png")
            for option, folder in targets.items() for path in files]


def check_outputs(files, input_dir, targets, overwrite):
    """Refuse, before anything is written, any plan that could replace or mix with a user's files.

    `targets` maps an option name (--output, --overlays) to its folder.
    """
    input_dir = Path(input_dir).resolve()
    problems = []
    for option, folder in targets.items():
        folder = Path(folder).resolve()
        if _inside(folder, input_dir):
            problems.append(f"{option} {folder}: is the input folder or inside it; choose a folder outside {input_dir}")
        if _unwritable(folder):
            problems.append(f"{option} {folder}: {_unwritable(folder)}; choose a folder you can write")
        held = [f for f in files if _inside(f.resolve(), folder)]
        if held and not _inside(folder, input_dir):
            problems.append(f"{option} {folder}: holds input images (e.g. {held[0]}); choose another folder")
    if len({Path(f).resolve() for f in targets.values()}) < len(targets):
        problems.append(f"{' and '.join(targets)}: the same folder; masks and overlays share file names")
    by_stem = defaultdict(list)
    for path in files:
        by_stem[file_stem(path)].append(path.name)
    clashes = [names for names in by_stem.values() if len(names) > 1]
    if clashes:
        problems.append("inputs share a name stem, so their masks would share a file name: "
                        + "; ".join(", ".join(names) for names in clashes) + ". Rename or move all but one")
    if not overwrite:
        existing = [Path(folder) / name for folder, name in _planned(files, targets) if (Path(folder) / name).exists()]
        if existing:
            shown = ", ".join(str(p) for p in existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
            problems.append(f"{len(existing)} output file(s) already exist ({shown}); "
                            "choose an empty folder, or pass --overwrite to replace them")
    if problems:
        raise SegError(format_problems(problems, "predict") + "\nnothing was written")


@dataclasses.dataclass(frozen=True)
class PredictOptions:
    """How masks are predicted: one checkpoint or an ensemble of several (their mean probabilities),
    test-time flips (keys of seglib.inference.FLIPS), and whether the checkpoints' post-processing
    rules are applied."""
    checkpoints: tuple
    device: str = "auto"
    flips: tuple = ()
    postprocess: bool = True


def predict_folder(options, input_dir, outputs, overwrite=False):
    """Write one mask PNG per readable image; return the list of (file, reason) skipped.

    `outputs` maps --output (masks) and optionally --overlays to folders.
    """
    if not Path(input_dir).is_dir():
        found = "a file" if Path(input_dir).exists() else "nothing"
        raise SegError(f"--input {input_dir}: expected a folder of images, found {found} there; "
                       "give the folder that holds them")
    files = list_images(input_dir)
    if not files:
        raise SegError(f"{input_dir}: no images found (.png .jpg .jpeg .tif .tiff .bmp; hidden files are skipped)")
    check_outputs(files, input_dir, outputs, overwrite)
    predictor = load_predictor(options.checkpoints, resolve_device(options.device, "--device"), options.flips)
    rules = predictor.postprocess if options.postprocess else postprocess.none(predictor.meta.num_classes)
    skipped = []
    for batch in _batches([f for f in files if not is_volume(f)], predictor, skipped):
        paths, raws, inputs = zip(*batch)
        masks = predictor.classes(np.stack(inputs), [raw.shape for raw in raws])
        for path, raw, model_input, ids in zip(paths, raws, inputs, masks):
            ids = postprocess.apply(ids, rules)
            write_png(Path(outputs["--output"]) / output_name(path), to_gray(ids, predictor.meta.gray_values))
            if "--overlays" in outputs:
                shown = resize_image(model_input.astype(np.float32), raw.shape)
                _overlay(shown, ids, path.name, Path(outputs["--overlays"]) / f"{file_stem(path)}.png")
    for path in tqdm([f for f in files if is_volume(f)], desc="predict volumes", dynamic_ncols=True, disable=None):
        try:
            predict_volume(predictor, rules, path, outputs)
        except (UnreadableFile, SegError) as exc:
            skipped.append((str(path), str(exc)))
    return skipped


def _overlay(image, ids, title, target):
    save_figure(samples_figure([np.clip(image, 0, 255)], [ids], [title], columns=1), target)


def predict_volume(predictor, rules, path, outputs):
    """Predict every plane of one volume and write the label volume in its own grid; the overlay shows the
    plane with the most foreground predicted."""
    meta = predictor.meta
    cfg = meta.volume or VolumeConfig()  # a model trained on 2-D sagittal slices reads volumes sagittally
    volume, depth = read_image_volume(path, cfg.slice_axis, cfg.max_voxels)
    unit = to_unit_range(volume.voxels, depth, meta.preprocess, path)
    inputs = np.stack([quantise(plane, meta.preprocess.base_size) for plane in unit])
    ids = np.stack([postprocess.apply(plane, rules)
                    for plane in predictor.classes(inputs, [unit.shape[1:]] * len(unit))])
    write_label_volume(Path(outputs["--output"]) / output_name(path), to_gray(ids, meta.gray_values), volume)
    if "--overlays" in outputs:
        k = int(np.argmax((ids > 0).reshape(len(ids), -1).sum(1)))
        _overlay(unit[k] * 255.0, ids[k], f"{path.name}#{k}", Path(outputs["--overlays"]) / f"{file_stem(path)}.png")


def _batches(files, predictor, skipped):
    """Lists of (path, raw image, model input) of up to the predictor's batch size; unreadable files
    go to `skipped` as (file, reason)."""
    batch, pre_cfg = [], predictor.meta.preprocess
    for path in tqdm(files, desc="predict", dynamic_ncols=True, disable=None):
        try:
            raw, depth = read_image(path, pre_cfg.max_pixels)
            batch.append((path, raw, load_for_model(raw, depth, pre_cfg, path)))
        except (UnreadableFile, SegError) as exc:
            skipped.append((str(path), str(exc)))
        if len(batch) == predictor.batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
