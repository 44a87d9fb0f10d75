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
input goes through the pipeline's to_device either way). With --onednn, one
step's time inside oneDNN by primitive, direction and the kernel oneDNN chose
(its verbose log): torch.profiler books some work under other operators, and
the kernel names show what the CPU pins leave (jit:avx2, brg_*, or a
reference fallback). With --fill-memory, steps with deterministic mode's NaN
fill of new tensors (torch.utils.deterministic.fill_uninitialized_memory,
PyTorch's default) against steps without, alternating. With --atrous,
DeepLabV3's step with the ASPP's centre-tap convolutions
(seglib.models.AtrousConv2d) against torchvision's plain ones, alternating.
"""
import argparse
import collections
import ctypes
import dataclasses
import functools
import os
import statistics
import sys
import tempfile
import time

import torch
from torch.profiler import ProfilerActivity, profile

from bench.determinism import cpu_name
from seglib.config import DeepLabV3Config, RuntimeConfig, TrainConfig, UNetConfig
from seglib.inference import use_runtime
from seglib.models import AtrousConv2d, build_model
from seglib.train import grad_scaler, segmentation_loss, training_step

MODELS = {"unet": UNetConfig(), "deeplabv3": DeepLabV3Config()}
TOP = 8


def make_step(cfg, compiled, layout=torch.channels_last, plain_aspp=False):
    torch.manual_seed(0)
    model = build_model(cfg, 2, TrainConfig().bn_momentum).to(memory_format=layout).train()
    for module in model.modules():
        if plain_aspp and isinstance(module, AtrousConv2d):
            module.__class__ = torch.nn.Conv2d
    net = torch.compile(model) if compiled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    return training_step(net, functools.partial(segmentation_loss, kind="ce_dice"), optimizer,
                         lambda x, y: (x, y), cfg.precision, grad_scaler(torch.device("cpu"), cfg.precision))


def timed(step, images, masks):
    start = time.perf_counter()
    step(images, masks)
    return time.perf_counter() - start


def filling(step, fill):
    """The step run with deterministic mode's NaN fill of new tensors on or off."""
    def run(images, masks):
        before = torch.utils.deterministic.fill_uninitialized_memory
        torch.utils.deterministic.fill_uninitialized_memory = fill
        try:
            return step(images, masks)
        finally:
            torch.utils.deterministic.fill_uninitialized_memory = before
    return run


def alternated(first, second, images, masks, steps):
    """Median seconds per step of two steps timed in turn, `steps` times each."""
    times = ([], [])
    for _ in range(steps):
        for step, out in zip((first, second), times):
            out.append(timed(step, images, masks))
    return tuple(statistics.median(t) for t in times)


def onednn_times(step, images, masks):
    """One step's oneDNN executions from its verbose log (written to fd 1 by C code, so taken there):
    (primitive, propagation kind, implementation) -> [calls, milliseconds], and the step's seconds."""
    with tempfile.TemporaryFile(mode="w+") as log:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(log.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                seconds = timed(step, images, masks)
        finally:
            ctypes.CDLL(None).fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        times = collections.defaultdict(lambda: [0, 0.0])
        for line in log:
            fields = line.rstrip().split(",")
            if fields[:4] == ["onednn_verbose", "v1", "primitive", "exec"]:
                entry = times[fields[5], fields[7], fields[6]]
                entry[0] += 1
                entry[1] += float(fields[-1])
    return dict(times), seconds


def print_onednn(times, seconds):
    total = sum(ms for _, ms in times.values())
    conv = collections.Counter()
    for (primitive, kind, _), (_, ms) in times.items():
        conv[kind if primitive == "convolution" else primitive] += ms
    print(f"    oneDNN: {total / 1e3:.2f} s of the step's {seconds:.2f} s wall; convolution backward data "
          f"{conv['backward_data'] / conv['forward_training']:.2f}x and backward weights "
          f"{conv['backward_weights'] / conv['forward_training']:.2f}x the forward's time")
    for (primitive, kind, impl), (calls, ms) in sorted(times.items(), key=lambda kv: -kv[1][1]):
        print(f"    {ms / total:6.1%} {ms:8.1f} ms {calls:4d} calls  {primitive} {kind} [{impl}]")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--contiguous", action="store_true", help="also time NCHW weights against channels_last")
    parser.add_argument("--onednn", action="store_true", help="also one step's oneDNN primitives by kernel")
    parser.add_argument("--fill-memory", action="store_true", help="also time steps with the NaN fill of new tensors")
    parser.add_argument("--input-scale", type=float, default=1.0, help="DeepLabV3's input_scale (recipe: 2)")
    parser.add_argument("--atrous", action="store_true", help="also time DeepLabV3 with torchvision's plain ASPP")
    args = parser.parse_args(argv)
    use_runtime(RuntimeConfig(device="cpu"))
    images = torch.randn(args.batch, 1, args.size, args.size, generator=torch.Generator().manual_seed(0))
    masks = (images[:, 0] > 0.5).long()
    print(f"{cpu_name()}, {torch.get_num_threads()} threads; {args.size} px, batch {args.batch}, fp32; "
          f"DeepLabV3 input_scale {args.input_scale}")
    models = {**MODELS, "deeplabv3": dataclasses.replace(MODELS["deeplabv3"], input_scale=args.input_scale)}
    for name in args.models:
        step = make_step(models[name], compiled=False)
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
            compiled = make_step(models[name], compiled=True)
            first = timed(compiled, images, masks)
            eager, fast = alternated(step, compiled, images, masks, args.steps)
            print(f"    torch.compile: first step {first:.1f} s (compile); steady step {fast:.3f} s against "
                  f"eager {eager:.3f} s ({eager / fast:.2f}x)", flush=True)
        if args.contiguous:
            plain = make_step(models[name], compiled=False, layout=torch.contiguous_format)
            plain(images, masks)  # warm-up
            last, nchw = alternated(step, plain, images, masks, args.steps)
            print(f"    layout: channels_last {last:.3f} s per step, contiguous NCHW {nchw:.3f} s "
                  f"({nchw / last:.2f}x the time)", flush=True)
        if args.fill_memory:
            filled, unfilled = alternated(filling(step, True), filling(step, False), images, masks, args.steps)
            print(f"    NaN fill of new tensors: {filled:.3f} s per step with it, {unfilled:.3f} s without "
                  f"({filled / unfilled:.2f}x the time)", flush=True)
        if args.atrous and name == "deeplabv3":
            plain = make_step(models[name], compiled=False, plain_aspp=True)
            plain(images, masks)  # warm-up
            centre, full = alternated(step, plain, images, masks, args.steps)
            print(f"    ASPP: centre taps where the map is within the dilation {centre:.3f} s per step, "
                  f"torchvision's full 3 x 3 {full:.3f} s ({full / centre:.2f}x the time)", flush=True)
        if args.onednn:
            print_onednn(*onednn_times(step, images, masks))


if __name__ == "__main__":
    main()
