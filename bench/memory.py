"""Peak memory and time of each stage, and of a no-op `dvc repro`, in a scratch project on the
built-in dataset at any size.

    python -m bench.memory --workdir /tmp/mem_default                         # 40 x 6 = 240 images, every stage
    python -m bench.memory --workdir /tmp/mem_10k --subjects 500 --slices 20 \\
        --stages split preprocess-gray-map                                     # 10,000 images, preparation only
    python -m bench.memory --workdir /tmp/mem_vol --images ../shared/datasets/myosegmentum-volumes/images \\
        --masks ../shared/datasets/myosegmentum-volumes/masks --set data.group_regex="'^(Case\\d+)'" \\
        --set data.image_token="''" --set data.mask_token="''" --stages split preprocess-gray-map   # real volumes

Each stage's command (as dvc.yaml writes it) runs as its own process; its peak
resident memory is the kernel's figure for that process (wait4's ru_maxrss).
Training runs --epochs epochs (its memory does not grow with them). The
prepared arrays' size is printed beside preprocess's peak, the figure that
says whether preparation holds more than the arrays themselves. Then
`dvc commit` records the outputs and a no-op `dvc repro` is timed.
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from bench.real_data import parse_overrides
from bench.scratch import ENV, dvc, scratch_project
from bench.stages_in_order import commands
from seglib.runtime import cpu_name


def run_measured(argv, cwd):
    """(seconds, peak resident MB) of one command, as its own process."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed")
    return time.perf_counter() - start, usage.ru_maxrss / 1024  # Linux reports kB


def prepared_mb(root):
    total = 0
    for path in (root / "artifacts/prepared").glob("*.npz"):
        with np.load(path) as data:
            total += sum(data[k].nbytes for k in data.files)
    return total / 2 ** 20


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="a new or empty folder")
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--slices", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--stages", nargs="+", help="only these stages (names as dvc.yaml's, e.g. train@unet)")
    parser.add_argument("--images", help="a dataset folder instead of the built-in dataset (with --masks)")
    parser.add_argument("--masks")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="params.yaml keys, YAML values")
    args = parser.parse_args()
    start = time.perf_counter()
    overrides = {"train.epochs": args.epochs, **parse_overrides(args.set)}
    if args.images:
        root = scratch_project(args.workdir, args.images, args.masks, overrides)
        images = len(list(Path(args.images).iterdir()))
        what = f"{images} files of {args.images}"
    else:
        root = scratch_project(args.workdir, overrides=overrides,
                               synth_args=["--subjects", args.subjects, "--slices", args.slices])
        images = args.subjects * args.slices
        what = f"{images} images ({args.subjects} subjects x {args.slices} slices)"
    print(f"{what}, scratch project built in {time.perf_counter() - start:.0f} s; {cpu_name()}", flush=True)
    pipeline, params = (yaml.safe_load((root / name).read_text()) for name in ("dvc.yaml", "params.yaml"))
    ran = []
    for name, argv in commands(pipeline, params):
        if args.stages and name not in args.stages and name != "check-params":  # every stage depends on it
            continue
        seconds, peak = run_measured([sys.executable if a == "python" else a for a in argv], root)
        extra = f", {seconds / images * 1000:.1f} s per 1,000 files" if name in ("split", "preprocess-gray-map") else ""
        if name == "preprocess-gray-map":
            extra += f"; prepared arrays {prepared_mb(root):.0f} MB"
        print(f"{name:22s} {seconds:7.1f} s  peak RSS {peak:7.0f} MB{extra}", flush=True)
        ran.append(name)
    dvc("commit", "-f", "-q", *ran, cwd=root)
    for _ in range(2):  # the first also warms the file system's caches
        began = time.perf_counter()
        out = dvc("repro", *ran, cwd=root).stdout
        noop = time.perf_counter() - began
    assert "Running stage" not in out, out
    print(f"no-op dvc repro of these stages: {noop:.2f} s")


if __name__ == "__main__":
    main()
