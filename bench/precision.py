"""Images per second of a training step for each model by precision (and, with --compile, under
torch.compile), measured side by side in one run, on a CPU or a GPU.

UNet appears twice, with batch norm and with instance norm (models.unet.norm),
so the cost of instance norm is read off the same run.

    python -m bench.precision --size 224 --batch 8 --steps 5                     # CPU
    python -m bench.precision --device cuda --sizes 224 512 --steps 200 \\
        --precisions fp32 bf16 --compile --budget-s 200                          # GPU (bench/gpu_check.sh)

Each step is the training loop's own step (seglib.train.training_step: channels_last
batch, autocast forward, CE + Dice loss, backward, AdamW step, gradient scaler
for fp16) on random data; the first steps of each case are a warm-up and not
timed (for a compiled model they include the compile, printed separately).
Each line ends with the speed-up over the first precision, the figure to read
on a noisy machine. Compiled cases stop once --budget-s seconds have passed.
"""
import argparse
import functools
import time

import torch

from seglib.config import DeepLabV3Config, TrainConfig, UNetConfig
from seglib.models import build_model
from seglib.runtime import check_precision, cpu_name
from seglib.train import grad_scaler, segmentation_loss, training_step

CASES = {"unet": UNetConfig(width=16),
         "unet-instance": UNetConfig(width=16, norm="instance"),
         "deeplabv3": DeepLabV3Config(backbone="mobilenet_v3_large")}
WARM_UP = 3


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_steps(model_cfg, precision, shape, steps, device, compiled=False):
    """(seconds per timed step, seconds of the warm-up steps) for a (batch, size) `shape`."""
    torch.manual_seed(0)
    batch, size = shape
    cfg = TrainConfig()
    model = build_model(model_cfg, 2, cfg.bn_momentum).to(device, memory_format=torch.channels_last).train()
    net = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step = training_step(net, functools.partial(segmentation_loss, kind=cfg.loss), optimizer,
                         lambda images, masks: (images, masks), precision, grad_scaler(device, precision))
    images, masks = torch.randn(batch, 1, size, size), torch.randint(0, 2, (batch, size, size))
    start = time.perf_counter()
    for _ in range(WARM_UP):
        step(images, masks)
    _sync(device)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step(images, masks)
    _sync(device)
    return (time.perf_counter() - start) / steps, warm


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--sizes", type=int, nargs="+", help="several sizes (overrides --size)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--compile", action="store_true", help="also each case under torch.compile")
    parser.add_argument("--budget-s", type=float, default=float("inf"), help="no compiled case starts after this")
    args = parser.parse_args()
    device = torch.device(args.device)
    for precision in args.precisions:
        check_precision(device, precision, "--precisions")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{cpu_name()}, {torch.get_num_threads()} threads"
    print(f"batch {args.batch}, {args.steps} timed steps after {WARM_UP} warm-up, {device} ({where}), "
          f"torch {torch.__version__}", flush=True)
    began = time.perf_counter()
    for size in args.sizes or [args.size]:
        for name in args.models:
            rates = {}
            for precision in args.precisions:
                for compiled in (False, True) if args.compile else (False,):
                    if compiled and time.perf_counter() - began > args.budget_s:
                        print(f"{name:14s} {size:4d} px {precision:5s} compiled: skipped (past --budget-s)")
                        continue
                    seconds, warm = timed_steps(CASES[name], precision, (args.batch, size), args.steps, device,
                                                compiled)
                    label = f"{precision}{' compiled' if compiled else ''}"
                    rates[label] = args.batch / seconds
                    first = next(iter(rates.values()))
                    extra = f", warm-up incl. compile {warm:.1f} s" if compiled else ""
                    print(f"{name:14s} {size:4d} px {label:14s} {seconds * 1000:8.1f} ms/step "
                          f"{rates[label]:8.1f} img/s  {rates[label] / first:.2f}x{extra}", flush=True)


if __name__ == "__main__":
    main()
