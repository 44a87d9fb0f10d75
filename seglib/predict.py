"""Predict masks for a folder of images of any size with a trained checkpoint.

Masks are written in the dataset's own gray values at each image's original
size. An unreadable image is skipped and reported; the batch goes on.
"""
from pathlib import Path

import numpy as np
from tqdm import tqdm

from seglib.config import PreprocessConfig
from seglib.errors import SegError
from seglib.evaluate import predict_classes
from seglib.graymap import to_gray
from seglib.io import UnreadableFile, list_images, read_image, save_figure, write_png
from seglib.models import load_checkpoint, resolve_device
from seglib.plots import samples_figure
from seglib.transforms import load_for_model, resize_image


def predict_folder(checkpoint, input_dir, output_dir, overlay_dir=None, device="auto"):
    """Write one mask PNG per readable image; return the list of (file, reason) skipped."""
    if not Path(input_dir).is_dir():
        raise SegError(f"{input_dir}: input folder not found")
    device = resolve_device(device)
    model, meta = load_checkpoint(checkpoint, device)
    pre_cfg = PreprocessConfig(**{**meta["preprocess"], "base_size": tuple(meta["base_size"])})
    stats = {"mean": meta["mean"], "std": meta["std"]}
    skipped = []
    files = list_images(input_dir)
    if not files:
        raise SegError(f"{input_dir}: no images found (.png .jpg .jpeg .tif .tiff .bmp)")
    for path in tqdm(files, desc="predict", dynamic_ncols=True):
        try:
            raw, depth = read_image(path)
            model_input = load_for_model(raw, depth, pre_cfg, pre_cfg.base_size, path)
        except (UnreadableFile, SegError) as exc:
            skipped.append((str(path), str(exc)))
            continue
        ids = predict_classes(model, model_input, stats, raw.shape, device)
        write_png(Path(output_dir) / f"{path.stem}.png", to_gray(ids, meta["gray_values"]))
        if overlay_dir:
            shown = resize_image(model_input.astype(np.float32), raw.shape)
            figure = samples_figure([np.clip(shown, 0, 255)], [ids], [path.name], columns=1)
            save_figure(figure, Path(overlay_dir) / f"{path.stem}.png")
    return skipped
