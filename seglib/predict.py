"""Predict masks for a folder of images of any size with a trained checkpoint, or an ensemble.

The checkpoint's post-processing rules (chosen on validation when it was
trained) are applied unless switched off; an ensemble applies the rules all
its members agree on.

Masks are written in the dataset's own gray values at each image's original
size. An unreadable image is skipped and reported; the batch goes on.

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
from seglib.io import UnreadableFile, list_images, read_image, save_figure, write_png
from seglib.plots import samples_figure
from seglib.runtime import resolve_device
from seglib.transforms import load_for_model, resize_image


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
        by_stem[path.stem].append(path.name)
    clashes = [names for names in by_stem.values() if len(names) > 1]
    if clashes:
        problems.append("inputs share a name stem, so their masks would share a file name: "
                        + "; ".join(", ".join(names) for names in clashes) + ". Rename or move all but one")
    if not overwrite:
        existing = [Path(folder) / f"{path.stem}.png" for folder in targets.values() for path in files
                    if (Path(folder) / f"{path.stem}.png").exists()]
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
    for batch in _batches(files, predictor, skipped):
        paths, raws, inputs = zip(*batch)
        masks = predictor.classes(np.stack(inputs), [raw.shape for raw in raws])
        for path, raw, model_input, ids in zip(paths, raws, inputs, masks):
            ids = postprocess.apply(ids, rules)
            write_png(Path(outputs["--output"]) / f"{path.stem}.png", to_gray(ids, predictor.meta.gray_values))
            if "--overlays" in outputs:
                shown = resize_image(model_input.astype(np.float32), raw.shape)
                figure = samples_figure([np.clip(shown, 0, 255)], [ids], [path.name], columns=1)
                save_figure(figure, Path(outputs["--overlays"]) / f"{path.stem}.png")
    return skipped


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
