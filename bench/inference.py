"""Images per second of the one forward path (seglib.inference.Predictor) by batch size, side by side.

    python -m bench.inference --project . --batches 1 8 --rounds 3

For each model's checkpoint in the project, predicts the test split's prepared
images at their original sizes (as the evaluate stage does, without the
scoring), batch 1 and the other batch sizes in alternating rounds, and prints
the median images per second of each and its ratio to batch 1, with the CPU
and thread count the figures belong to.
"""
import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import torch

from bench.determinism import cpu_name
from seglib import config
from seglib.inference import Predictor, use_runtime
from seglib.io import read_npz


def images_per_second(predictor, arrays):
    start = time.perf_counter()
    for _ in predictor.classes(arrays["images"], arrays["sizes"]):
        pass
    return len(arrays["images"]) / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", default=".", help="a pipeline project after dvc repro")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    root = Path(args.project)
    params = config.load_params(root / "params.yaml")
    device = use_runtime(config.section(params, "runtime"))
    arrays = read_npz(root / "artifacts/prepared/test.npz")
    sizes = sorted({tuple(s) for s in arrays["sizes"].tolist()})
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, {device}; {len(arrays['images'])} test images "
          f"prepared at {list(arrays['images'].shape[1:])}, resized back to {len(sizes)} original sizes")
    batches = [1] + [b for b in args.batches if b != 1]
    for name in config.models(params):
        plain = Predictor.load(root / "models" / name / "model.pt", device)
        runs = {b: [] for b in batches}
        for _ in range(args.rounds):
            for b in batches:
                runs[b].append(images_per_second(dataclasses.replace(plain, batch_size=b), arrays))
        base = statistics.median(runs[1])
        print(f"{name:10s} " + "  ".join(f"batch {b}: {statistics.median(r):6.1f} img/s ({statistics.median(r) / base:.2f}x)"
                                         for b, r in runs.items()), flush=True)


if __name__ == "__main__":
    main()
