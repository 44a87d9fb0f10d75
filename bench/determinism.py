"""Which CPU settings change training results, and whether seglib's pins remove the difference.

python -m bench.determinism [--steps 4] [--size 64]

Each environment runs in its own process (oneDNN and ATen read their ISA caps
once): a few seeded optimiser steps of UNet and DeepLabV3 on fixed random
slices, then a digest of the weights; equal digests mean bitwise equal
training. Each environment runs twice: unpinned (SEGLIB_NATIVE_CPU=1, threads
as the environment says) and pinned (seglib's CPU_PINS and runtime.threads'
default). An environment's caps stand in for another CPU: capping this one
below its own ISA is the only other CPU a single machine can show.

    python -m bench.determinism --trace unet.trace [--arch unet] [--size 128] [--batch 8]
    python -m bench.determinism --first-difference a.trace b.trace

--trace runs one pinned training step and writes every op's name, shape and
output digest, in call order (forward, loss, backward, optimiser); traces made
on two machines, or here and under `valgrind --tool=none` (which answers CPUID
as another CPU: other caches, the same pinned ISA), are compared by
--first-difference, which names the first op whose output differs. A FILE
ending in .gz is compressed (the reference traces in docs/results/determinism/).
"""
import argparse
import gzip
import hashlib
import json
import os
import platform
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


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def training_setup(arch, size, batch, channels_last):
    """A fresh seeded model of `arch`, its optimiser and fixed random slices with masks."""
    import torch

    from seglib.config import ARCHS
    from seglib.models import build_model
    torch.manual_seed(0)
    images = torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(1))
    masks = (images[:, 0] > 0.5).long()
    model = build_model(ARCHS[arch](), 2, bn_momentum=0.1)
    if channels_last:  # as seglib.train: oneDNN's NHWC kernels
        images = images.contiguous(memory_format=torch.channels_last)
        model = model.to(memory_format=torch.channels_last)
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
    from seglib.inference import use_runtime
    if pinned:
        use_runtime(RuntimeConfig(device="cpu"))
    out = {"isa": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}
    for arch in ("unet", "deeplabv3"):
        model, optimizer, images, masks = training_setup(arch, size, 4, channels_last=False)
        start = time.perf_counter()
        for _ in range(steps):
            train_step(model, optimizer, images, masks)
        digest = hashlib.sha256()
        for tensor in model.state_dict().values():
            digest.update(tensor.detach().contiguous().numpy().tobytes())
        out[arch] = {"digest": digest.hexdigest()[:16], "seconds": time.perf_counter() - start}
    print(json.dumps(out))


def open_text(path, mode="r"):
    return gzip.open(path, mode + "t") if str(path).endswith(".gz") else open(path, mode)


def op_trace(stream):
    """A dispatch mode that writes each ATen op's name, output shapes and output digest to `stream`."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class OpTrace(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            tensors = [t for t in (out if isinstance(out, (tuple, list)) else [out]) if hasattr(t, "numpy")]
            digest = hashlib.sha256()
            for t in tensors:
                digest.update(t.detach().contiguous().cpu().numpy().tobytes())
            shapes = ",".join("x".join(map(str, t.shape)) for t in tensors)
            stream.write(f"{func} {shapes} {digest.hexdigest()[:16]}\n")
            return out
    return OpTrace()


def trace(path, arch, size, batch):
    """One pinned training step of `arch` as seglib.train runs it (channels_last), every op's output
    digest to `path`."""
    from seglib.config import RuntimeConfig
    from seglib.inference import use_runtime
    use_runtime(RuntimeConfig(device="cpu"))
    model, optimizer, images, masks = training_setup(arch, size, batch, channels_last=True)
    with open_text(path, "w") as stream, op_trace(stream):
        train_step(model, optimizer, images, masks)


def first_difference(a, b):
    """Print the first op whose line differs between two traces; 1 if any differs, else 0."""
    lines = []
    for path in (a, b):
        with open_text(path) as stream:
            lines.append(stream.read().splitlines())
    for i, (x, y) in enumerate(zip(*lines)):
        if x != y:
            print(f"the first {i} ops equal; op {i} differs:\n  {a}: {x}\n  {b}: {y}")
            return 1
    if len(lines[0]) != len(lines[1]):
        print(f"equal for {min(map(len, lines))} ops, then one trace ends ({len(lines[0])} vs {len(lines[1])} ops)")
        return 1
    print(f"all {len(lines[0])} ops equal")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=8, help="images per step of --trace")
    parser.add_argument("--child", choices=("pinned", "native"), help=argparse.SUPPRESS)
    parser.add_argument("--trace", metavar="FILE", help="write one training step's op digests to FILE")
    parser.add_argument("--arch", choices=("unet", "deeplabv3"), default="unet", help="model of --trace")
    parser.add_argument("--first-difference", nargs=2, metavar="TRACE", help="compare two --trace files")
    args = parser.parse_args(argv)
    if args.first_difference:
        raise SystemExit(first_difference(*args.first_difference))
    if args.trace:
        return trace(args.trace, args.arch, args.size, args.batch)
    if args.child:
        return child(args.steps, args.size, args.child == "pinned")
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
