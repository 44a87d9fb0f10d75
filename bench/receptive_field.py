"""How far does each model see? Prints the receptive field of one output pixel, and the span of the spine it must count.

    python -m bench.receptive_field [--size 448] [--depths 4 5]
        [--levels ../shared/datasets/myosegmentum-sagittal/levels]
        [--checkpoints models/unet/model.pt ... --image a_slice.png]

Naming a vertebra (L1 or L2?) needs the context that fixes the count, such as
the sacrum below L5: a model whose output pixel on L1 cannot see that far has
only the vertebra's look and place in the image to go on. This measures, for
UNet at each depth and for DeepLabV3, the gradient of one output pixel at the
image centre with respect to the input (eval mode, the models' own random
initialisation, one image of noise): the theoretical field is the rows where
that gradient is non-zero, the effective field the central rows holding 95 %
of its absolute sum (Luo et al. 2016: the effective field is a fraction of the
theoretical one). At initialisation a UNet's top skip connection carries most
of that gradient, so --checkpoints measures trained models too, on a real
slice (--image, prepared as predict prepares it), at its centre pixel. With
--levels it also prints the vertical span from the top of the highest
labelled vertebra to the bottom of the lowest, in the masks' own pixels (the
sagittal slices are trained at that size, 224 px here), over the slices that
show the first and the last gray value.
"""
import argparse
from pathlib import Path

import numpy as np
import torch

from seglib.config import DeepLabV3Config, UNetConfig
from seglib.errors import run_cli
from seglib.io import list_images, read_image, read_mask
from seglib.models import build_model, load_checkpoint
from seglib.transforms import load_for_model, normalise


def field_rows(model, x):
    """(theoretical rows, effective rows) of the receptive field of the centre output pixel of
    input `x` (1, 1, size, size)."""
    model.eval()
    size = x.shape[-1]
    x = x.clone().requires_grad_(True)
    out = model(x)
    out[0, :, size // 2, size // 2].sum().backward()
    g = x.grad[0, 0].abs().sum(1).double()  # per input row
    rows = torch.nonzero(g > 0)[:, 0]
    theoretical = int(rows.max() - rows.min() + 1)
    centre, total, radius = size // 2, float(g.sum()), 0
    while float(g[max(centre - radius, 0):centre + radius + 1].sum()) < 0.95 * total:
        radius += 1
    return theoretical, 2 * radius + 1


def spine_spans(levels):
    """Vertical extent in pixels, first labelled level's top to last level's bottom, per slice showing both."""
    spans, size = [], None
    for path in list_images(levels):
        mask = read_mask(path)[0]
        values = [v for v in np.unique(mask) if v]
        if len(values) < 2:
            continue
        size = mask.shape
        first, last = np.nonzero((mask == values[0]).any(1))[0], np.nonzero((mask == values[-1]).any(1))[0]
        spans.append(max(first.max(), last.max()) - min(first.min(), last.min()) + 1)
    return np.array(spans), size


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=448, help="input side; larger than any field measured")
    parser.add_argument("--depths", type=int, nargs="+", default=[4, 5])
    parser.add_argument("--levels", help="a folder of per-vertebra masks (one gray value per level)")
    parser.add_argument("--checkpoints", nargs="*", default=[], help="trained models to measure on --image")
    parser.add_argument("--image", help="the slice --checkpoints are measured on")
    args = parser.parse_args(argv)
    if args.checkpoints and not args.image:
        parser.error("--checkpoints needs --image")
    torch.manual_seed(0)
    noise = torch.randn(1, 1, args.size, args.size, generator=torch.Generator().manual_seed(0))
    print(f"rows of the centre output pixel's receptive field; untrained models on {args.size} x {args.size} noise")
    print("| model | theoretical | effective (95 % of the gradient) |\n|---|---|---|")
    for depth in args.depths:
        rows = field_rows(build_model(UNetConfig(depth=depth), 2), noise)
        print(f"| UNet, width 16, depth {depth} | {rows[0]} | {rows[1]} |")
    for scale in (1.0, 2.0):
        rows = field_rows(build_model(DeepLabV3Config(input_scale=scale), 2), noise)
        print(f"| DeepLabV3-MobileNetV3, input_scale {scale} | {rows[0]} | {rows[1]} |")
    for path in args.checkpoints:
        ckpt = load_checkpoint(path)
        raw, depth = read_image(args.image)
        x = normalise(torch.from_numpy(load_for_model(raw, depth, ckpt.meta.preprocess, args.image)),
                      ckpt.meta.mean, ckpt.meta.std)[None, None]
        rows = field_rows(ckpt.model, x)
        print(f"| {path} (trained), on {Path(args.image).name} at {x.shape[-2]} x {x.shape[-1]} | {rows[0]} | {rows[1]} |")
    if args.levels:
        spans, size = spine_spans(args.levels)
        print(f"\n{args.levels}: first level's top to last level's bottom, {len(spans)} slices of "
              f"{size[0]} x {size[1]}: median {np.median(spans):.0f} px, 5th-95th percentile "
              f"{np.percentile(spans, 5):.0f}-{np.percentile(spans, 95):.0f} px")


if __name__ == "__main__":
    run_cli(main)
