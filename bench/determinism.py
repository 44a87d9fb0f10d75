"""Which CPU settings change training results, and whether seglib's pins remove the difference.

python -m bench.determinism [--steps 4] [--size 64]

Each environment runs in its own process (oneDNN and ATen read their ISA caps
once): a few seeded optimiser steps of UNet and DeepLabV3 on fixed random
slices, then a digest of the weights; equal digests mean bitwise equal
training. Each environment runs twice: unpinned (SEGLIB_NATIVE_CPU=1, threads
as the environment says) and pinned (seglib's CPU_PINS and runtime.threads'
default). An environment's caps stand in for another CPU: capping this one
below its own ISA is the only other CPU a single machine can show.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

ENVIRONMENTS = {
    "default": {},
    "1 thread": {"OMP_NUM_THREADS": "1"},
    "ATen AVX2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "ATen default (no vec)": {"ATEN_CPU_CAPABILITY": "default"},
    "oneDNN AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "oneDNN SSE4.1": {"ONEDNN_MAX_CPU_ISA": "SSE41"},
    "MKL CNR AVX2": {"MKL_CBWR": "AVX2"},
}


def training_setup(arch, size, batch):
    """A fresh seeded model of `arch`, its optimiser and fixed random slices with masks."""
    import torch

    from seglib.config import ARCHS
    from seglib.models import build_model
    torch.manual_seed(0)
    images = torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(1))
    masks = (images[:, 0] > 0.5).long()
    model = build_model(ARCHS[arch](), 2, bn_momentum=0.1)
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3), images, masks


def train_step(model, optimizer, images, masks):
    from seglib.train import segmentation_loss
    loss = segmentation_loss(model(images), masks, "ce_dice")
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def child(steps, size, pinned):
    """Train both models a few steps in this process; print a JSON line of digests and seconds."""
    import torch

    from seglib.config import RuntimeConfig
    from seglib.runtime import use_runtime
    if pinned:
        use_runtime(RuntimeConfig(device="cpu"))
    out = {"isa": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}
    for arch in ("unet", "deeplabv3"):
        model, optimizer, images, masks = training_setup(arch, size, 4)
        start = time.perf_counter()
        for _ in range(steps):
            train_step(model, optimizer, images, masks)
        digest = hashlib.sha256()
        for tensor in model.state_dict().values():
            digest.update(tensor.detach().contiguous().numpy().tobytes())
        out[arch] = {"digest": digest.hexdigest()[:16], "seconds": time.perf_counter() - start}
    print(json.dumps(out))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--child", choices=("pinned", "native"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.steps, args.size, args.child == "pinned")
    from seglib.runtime import cpu_name
    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical cores; {args.steps} steps at {args.size} px, batch 4; "
          "'same' = bitwise equal weights to the first row of its mode")
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OMP_NUM_THREADS", "ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR", "SEGLIB_NATIVE_CPU")}
    for mode in ("native", "pinned"):
        reference = None
        for name, extra in ENVIRONMENTS.items():
            env = {**clean, **extra, **({"SEGLIB_NATIVE_CPU": "1"} if mode == "native" else {})}
            result = subprocess.run([sys.executable, "-m", "bench.determinism", "--child", mode, "--steps",
                                     str(args.steps), "--size", str(args.size)], env=env, capture_output=True, text=True)
            if result.returncode != 0:
                print(f"{mode:7s}{name:22s} failed: {result.stderr.strip().splitlines()[-1]}")
                continue
            row = json.loads(result.stdout.strip().splitlines()[-1])
            reference = reference or row
            marks = ["same" if row[a]["digest"] == reference[a]["digest"] else "DIFFERENT" for a in ("unet", "deeplabv3")]
            print(f"{mode:7s}{name:22s} ATen {row['isa']:8s} threads {row['threads']}  "
                  f"unet {row['unet']['digest']} {marks[0]:9s} {row['unet']['seconds']:6.2f} s  "
                  f"deeplabv3 {row['deeplabv3']['digest']} {marks[1]:9s} {row['deeplabv3']['seconds']:6.2f} s")


if __name__ == "__main__":
    main()
