"""Where a training step's time goes (torch.profiler), and what torch.compile costs and gains.

    python -m bench.profile_step --size 224 --batch 8 --steps 4 [--compile]

For each model: the pipeline's training step (seglib.train.training_step:
channels_last, CE + Dice, AdamW) on random data, profiled over --steps steps
after a warm-up; prints the operators with the largest share of self CPU
time. With --compile, the same step with the model wrapped in
torch.compile: the first step's seconds (the compile) and the median
steady-state step against eager, alternating eager and compiled steps. With
--contiguous, the same step with the model's weights in plain NCHW
(contiguous) memory against the pipeline's channels_last, alternating (the
input goes through the pipeline's to_device either way).
"""
import argparse
import functools
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

from bench.determinism import cpu_name
from seglib.config import DeepLabV3Config, RuntimeConfig, TrainConfig, UNetConfig
from seglib.inference import use_runtime
from seglib.models import build_model
from seglib.train import grad_scaler, segmentation_loss, training_step

MODELS = {"unet": UNetConfig(), "deeplabv3": DeepLabV3Config()}
TOP = 8


def make_step(cfg, compiled, layout=torch.channels_last):
    torch.manual_seed(0)
    model = build_model(cfg, 2, TrainConfig().bn_momentum).to(memory_format=layout).train()
    net = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    return training_step(net, functools.partial(segmentation_loss, kind="ce_dice"), optimizer,
                         lambda x, y: (x, y), cfg.precision, grad_scaler(torch.device("cpu"), cfg.precision))


def timed(step, images, masks):
    start = time.perf_counter()
    step(images, masks)
    return time.perf_counter() - start


def alternated(first, second, images, masks, steps):
    """Median seconds per step of two steps timed in turn, `steps` times each."""
    times = ([], [])
    for _ in range(steps):
        for step, out in zip((first, second), times):
            out.append(timed(step, images, masks))
    return tuple(statistics.median(t) for t in times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--contiguous", action="store_true", help="also time NCHW weights against channels_last")
    args = parser.parse_args(argv)
    use_runtime(RuntimeConfig(device="cpu"))
    images = torch.randn(args.batch, 1, args.size, args.size, generator=torch.Generator().manual_seed(0))
    masks = (images[:, 0] > 0.5).long()
    print(f"{cpu_name()}, {torch.get_num_threads()} threads; {args.size} px, batch {args.batch}, fp32")
    for name in args.models:
        step = make_step(MODELS[name], compiled=False)
        step(images, masks)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                step(images, masks)
        events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
        total = sum(e.self_cpu_time_total for e in events)
        top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:TOP]
        print(f"{name}: {total / 1e6 / args.steps:.2f} s of self CPU time per step; largest shares:")
        for e in top:
            print(f"    {e.self_cpu_time_total / total:6.1%}  {e.key}")
        if args.compile:
            compiled = make_step(MODELS[name], compiled=True)
            first = timed(compiled, images, masks)
            eager, fast = alternated(step, compiled, images, masks, args.steps)
            print(f"    torch.compile: first step {first:.1f} s (compile); steady step {fast:.3f} s against "
                  f"eager {eager:.3f} s ({eager / fast:.2f}x)", flush=True)
        if args.contiguous:
            plain = make_step(MODELS[name], compiled=False, layout=torch.contiguous_format)
            plain(images, masks)  # warm-up
            last, nchw = alternated(step, plain, images, masks, args.steps)
            print(f"    layout: channels_last {last:.3f} s per step, contiguous NCHW {nchw:.3f} s "
                  f"({nchw / last:.2f}x the time)", flush=True)


if __name__ == "__main__":
    main()
