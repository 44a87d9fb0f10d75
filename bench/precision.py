"""Seconds per training step for each model, fp32 vs bf16 autocast, measured side by side in one run.

UNet appears twice, with batch norm and with instance norm (models.unet.norm),
so the cost of instance norm is read off the same run.

    python -m bench.precision --size 224 --batch 8 --steps 5

Each step is the training loop's own step (seglib.train.training_step: channels_last
batch, autocast forward, CE + Dice loss, backward, AdamW step) on random data; the
first step of each case is a warm-up and not timed. Each line ends with the
ratio fp32 time / bf16 time, the figure to read on a noisy machine.
"""
import argparse
import functools
import time

import torch

from seglib.config import DeepLabV3Config, TrainConfig, UNetConfig
from seglib.models import build_model
from seglib.train import grad_scaler, segmentation_loss, training_step

CASES = {"unet": UNetConfig(width=16),
         "unet-instance": UNetConfig(width=16, norm="instance"),
         "deeplabv3": DeepLabV3Config(backbone="mobilenet_v3_large")}


def seconds_per_step(model_cfg, precision, size, batch, steps, device):
    torch.manual_seed(0)
    cfg = TrainConfig()
    model = build_model(model_cfg, 2, cfg.bn_momentum).to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step = training_step(model, functools.partial(segmentation_loss, kind=cfg.loss), optimizer,
                         lambda images, masks: (images, masks), precision, grad_scaler(device, precision))
    images, masks = torch.randn(batch, 1, size, size), torch.randint(0, 2, (batch, size, size))
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        step(images, masks)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sum(times[1:]) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"{args.size} x {args.size}, batch {args.batch}, {args.steps} timed steps, {device}, "
          f"{torch.get_num_threads()} threads")
    for name, model_cfg in CASES.items():
        fp32, bf16 = (seconds_per_step(model_cfg, p, args.size, args.batch, args.steps, device)
                      for p in ("fp32", "bf16"))
        print(f"{name:14s} fp32 {fp32:.3f} s/step  bf16 {bf16:.3f} s/step  speed-up {fp32 / bf16:.2f}x", flush=True)


if __name__ == "__main__":
    main()
