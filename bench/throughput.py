"""Training images per second: the pipeline's step against the seed blog's loop, side by side, with
the achieved FLOP rate as a fraction of the machine's peak.

    python -m bench.throughput --images DIR --masks DIR --size 224 --batch 8 --rounds 3

Both sides train the same model on the same slices at the same size and
batch, in alternating rounds. The blog's loop (../shared/seed/) decodes
each sample with PIL in __getitem__, converts it to RGB, resizes it, maps the
gray values with a Python loop, feeds float RGB NCHW tensors, calls
DeepLabV3 twice per step as the blog does, and runs an extra eval-mode
forward per batch for its train metrics. The pipeline's step
(seglib.train.training_step) reads prepared uint8 arrays from memory, feeds
one channels_last channel and computes the train metrics from the training
forward pass.

FLOPs per image are 3 x the forward's, counted by torch.utils.flop_counter
(seglib.models.model_cost, seglib.compare); the peak is cores x clock x FLOPs per cycle per core,
read from /proc/cpuinfo where it can be (AVX-512 with two FMA units: 64 fp32
FLOPs per cycle; AVX2 with FMA: 32; bf16 at twice fp32 where AVX512-BF16 is
there and not pinned away, and 2048 per cycle where AMX is: its tile unit's
1024 bf16 multiply-adds, Intel's figure for Sapphire Rapids) and printed as an assumption.
"""
import argparse
import dataclasses
import functools
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from seglib.check import mask_name_for
from seglib.config import DeepLabV3Config, PreprocessConfig, RuntimeConfig, TrainConfig, UNetConfig
from seglib.compare import TRAIN_FLOPS_PER_FORWARD
from seglib.models import UNet, build_model, model_cost
from seglib.prepare import intensity_stats, prepare_items
from seglib.prepared_meta import PreparedMeta
from seglib.runtime import cpu_flags, cpu_name, use_runtime
from seglib.train import (ConfusionMatrix, PreparedDataset, grad_scaler, run_epoch, segmentation_loss,
                          training_step)
from seglib.transforms import Augment

MODELS = {"unet": UNetConfig(), "deeplabv3": DeepLabV3Config()}


class BlogDataset(Dataset):
    """The seed blog's MyDataset: every sample decoded, converted and resized in __getitem__."""

    def __init__(self, pairs, size, grays):
        self.pairs, self.size, self.grays = pairs, size, grays

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        image_path, mask_path = self.pairs[i]
        image = np.array(Image.open(image_path).convert("RGB").resize((self.size, self.size), Image.BILINEAR))
        mask = np.array(Image.open(mask_path).convert("L").resize((self.size, self.size), Image.NEAREST))
        for gray in np.unique(mask):
            mask[mask == gray] = self.grays.index(int(gray))
        if np.random.random() > 0.5:
            image, mask = np.ascontiguousarray(np.flip(image, -1)), np.ascontiguousarray(np.flip(mask, -1))
        return torch.tensor(image).float().permute(2, 0, 1) / 255.0, torch.tensor(mask).long()


class BlogDeepLab(torch.nn.Module):
    """torchvision's DeepLabV3 on 3 channels, returning its dict, as the blog uses it."""

    def __init__(self, num_classes):
        super().__init__()
        from torchvision.models import segmentation
        self.net = segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                               num_classes=num_classes, aux_loss=False)

    def forward(self, x):
        return self.net(x)


def blog_model(name, num_classes):
    return UNet(3, num_classes) if name == "unet" else BlogDeepLab(num_classes)


def blog_epoch(model, name, loader, optimizer, num_classes):
    """The blog's train_one_epoch: forward (twice for DeepLabV3), loss, step, then an eval forward for metrics."""
    criterion = torch.nn.CrossEntropyLoss()
    matrix = ConfusionMatrix(num_classes, torch.device("cpu"))
    seen = 0
    for x, y in loader:
        model.train()
        o = model(x)
        if name == "deeplabv3":
            o = model(x)["out"]
        loss = criterion(o, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.eval()
            out = model(x)
            matrix.update(y, (out["out"] if name == "deeplabv3" else out).argmax(1))
        seen += len(x)
    return seen


def pipeline_loader(image_dir, mask_dir, items, size, batch):
    """The train stage's data path: arrays prepared once (prepare_items), PreparedDataset, DataLoader."""
    pre_cfg = PreprocessConfig(base_size=(size, size))
    grays = sorted({int(g) for _, m in items for g in np.unique(np.array(Image.open(Path(mask_dir) / m)))})
    arrays = prepare_items(image_dir, mask_dir, items, grays, pre_cfg)
    meta = PreparedMeta(tuple(grays), **intensity_stats(arrays["images"]), preprocess=pre_cfg)
    loader = DataLoader(PreparedDataset(arrays, meta), batch_size=batch, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(0))
    return loader, grays


def peak_flops(precision):
    """(FLOP/s, how it was read) for this machine's cores at their clock."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = cpu_flags() or set()
    mhz = [float(line.split(":")[1]) for line in text.splitlines() if line.startswith("cpu MHz")]
    cores = torch.get_num_threads()
    per_cycle = 64 if "avx512f" in flags else 32 if "fma" in flags else 8
    if os.environ.get("ATEN_CPU_CAPABILITY") == "avx2" and per_cycle == 64:
        per_cycle = 32  # the pins of seglib/__init__.py keep the libraries on AVX2
    unpinned = os.environ.get("ATEN_CPU_CAPABILITY") != "avx2"
    if precision == "bf16" and unpinned and "amx_bf16" in flags:
        per_cycle = 2048
    elif precision == "bf16" and unpinned and "avx512_bf16" in flags:
        per_cycle *= 2  # without AMX or AVX512-BF16 in use, bf16 runs through fp32 units at best
    clock = (max(mhz) if mhz else 2000.0) * 1e6
    how = (f"{cores} threads x {clock / 1e9:.2f} GHz ({'cpuinfo' if mhz else 'assumed'}) x {per_cycle} "
           f"{precision} FLOPs/cycle ({'AMX' if per_cycle == 2048 else 'AVX-512' if 'avx512f' in flags else 'AVX2+FMA' if 'fma' in flags else 'no FMA'}"
           f"{', capped to AVX2 by the pins' if os.environ.get('ATEN_CPU_CAPABILITY') == 'avx2' else ''})")
    return cores * clock * per_cycle, how


def pairs_of(images_dir, masks_dir, count, tokens):
    """(image, mask) names of the first `count` images, masks named by the token swap."""
    images = sorted(p.name for p in Path(images_dir).iterdir() if not p.name.startswith("."))[:count]
    return [(name, mask_name_for(name, *tokens) + ".png") for name in images]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True)
    parser.add_argument("--masks", required=True)
    parser.add_argument("--tokens", nargs=2, default=["Slice", "Labels_slice"], metavar=("IMAGE", "MASK"),
                        help="data.image_token and data.mask_token ('' '' for identical names)")
    parser.add_argument("--count", type=int, default=64, help="slices per round")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    args = parser.parse_args(argv)
    use_runtime(RuntimeConfig(device="cpu"))
    items = pairs_of(args.images, args.masks, args.count, args.tokens)
    loader, grays = pipeline_loader(args.images, args.masks, items, args.size, args.batch)
    blog_pairs = [(Path(args.images) / i, Path(args.masks) / m) for i, m in items]
    print(f"{cpu_name()}, {torch.get_num_threads()} threads; {len(items)} slices at {args.size} px, batch "
          f"{args.batch}, {args.rounds} alternating rounds after a warm-up (medians)")
    for name in args.models:
        for precision in args.precisions:
            torch.manual_seed(0)
            cfg = dataclasses.replace(MODELS[name], precision=precision)
            ours = build_model(cfg, len(grays), TrainConfig().bn_momentum).to(memory_format=torch.channels_last)
            step = training_step(ours, functools.partial(segmentation_loss, kind="ce_dice"),
                                 torch.optim.AdamW(ours.parameters(), lr=1e-4), Augment(TrainConfig(), 1), precision,
                                 grad_scaler(torch.device("cpu"), precision))
            theirs = blog_model(name, len(grays))
            blog_optimizer = torch.optim.AdamW(theirs.parameters(), lr=1e-4)
            blog_loader = DataLoader(BlogDataset(blog_pairs, args.size, grays), batch_size=args.batch,
                                     shuffle=True, drop_last=True)
            rates = {"pipeline": [], "blog": []}
            for _ in range(args.rounds + 1):  # the first round warms both up and is not counted
                start = time.perf_counter()
                ours.train()
                run_epoch(loader, step, ConfusionMatrix(len(grays), torch.device("cpu")), "pipeline")
                rates["pipeline"].append(len(loader) * args.batch / (time.perf_counter() - start))
                start = time.perf_counter()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                    seen = blog_epoch(theirs, name, blog_loader, blog_optimizer, len(grays))
                rates["blog"].append(seen / (time.perf_counter() - start))
            ours_rate, blog_rate = (statistics.median(rates[k][1:]) for k in ("pipeline", "blog"))
            flops = TRAIN_FLOPS_PER_FORWARD * model_cost(ours, (args.size, args.size))["gflops"] * 1e9
            peak, how = peak_flops(precision)
            print(f"{name:10s}{precision:5s} pipeline {ours_rate:6.2f} img/s  blog {blog_rate:6.2f} img/s  "
                  f"ratio {ours_rate / blog_rate:4.2f}x | {flops / 1e9:6.2f} GFLOP/img (3 x fwd) -> "
                  f"{ours_rate * flops / 1e9:6.1f} GFLOP/s = {ours_rate * flops / peak:5.1%} of {peak / 1e9:.0f} "
                  f"GFLOP/s peak; {how}", flush=True)


if __name__ == "__main__":
    main()
