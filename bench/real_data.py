"""Run the whole pipeline on a dataset folder in a scratch copy of the repo; print scores and wall times.

    python -m bench.real_data --images ../shared/datasets/myosegmentum-sagittal/images \\
        --masks ../shared/datasets/myosegmentum-sagittal/masks --set preprocess.base_size='[224, 224]'

--set takes params.yaml keys with YAML values (repeatable); --exclude REGEX
leaves out image and mask files whose names match (e.g. copies the dataset
check reports). The scratch project
is a real Git + DVC repository (kept with --workdir), so its dvc.lock,
metrics and report can be inspected afterwards. --build-only stops after building
and committing it, for runs that go stage by stage (`dvc repro <stage>` there).
"""
import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import yaml

from bench.scratch import dvc, scratch_project


def parse_overrides(items):
    overrides = {}
    for item in items:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value) if value else ""
    return overrides


def report(root, wall):
    params = yaml.safe_load((root / "params.yaml").read_text())
    print(f"\nwhole pipeline: {wall:.0f} s wall ({root})")
    print(f"{'model':<12}{'test fg Dice':>13}{'test fg IoU':>12}{'median Dice':>12}{'HD95 med':>10}"
          f"{'misses':>7}{'best ep':>8}{'train s':>9}{'s/epoch':>9}")
    for name in params["models"]:
        test = json.loads((root / "metrics/test" / f"{name}.json").read_text())
        train = json.loads((root / "metrics/train" / f"{name}.json").read_text())
        timing = json.loads((root / "logs/timing" / f"{name}.json").read_text())
        per_epoch = timing["train_seconds"] / len(timing["seconds_per_epoch"])
        print(f"{name:<12}{test['fg_dice']:>13.4f}{test['fg_iou']:>12.4f}{test['per_image']['dice']['median']:>12.4f}"
              f"{test['per_image']['hd95']['median'] or float('nan'):>10.2f}{test['per_image']['misses']:>7}"
              f"{train['best_epoch']:>8}{timing['train_seconds']:>9.0f}{per_epoch:>9.1f}")
    split = json.loads((root / "reports/dataset_check.json").read_text())["split"]
    print("split: " + ", ".join(f"{p} {c['images']} images / {c['subjects']} subjects" for p, c in split.items()))
    paired = json.loads((root / "metrics/compare.json").read_text())["paired_image_dice"]
    for pair, stat in paired.items():
        print(f"{pair}: mean per-image Dice difference {stat['mean_diff']:+.4f}, 95% CI {stat['ci95']}, "
              f"p = {stat['p_value']}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True)
    parser.add_argument("--masks", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--exclude", metavar="REGEX", help="leave out files whose names match (re.search)")
    parser.add_argument("--workdir", help="where to build the scratch project (default: a new temp folder)")
    parser.add_argument("--build-only", action="store_true", help="build and commit the project, run nothing")
    args = parser.parse_args(argv)
    overrides = parse_overrides(args.set)
    root = Path(args.workdir or tempfile.mkdtemp(prefix="spine-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    files = None
    if args.exclude:
        files = {part: {p.name for p in Path(folder).iterdir() if not re.search(args.exclude, p.name)}
                 for part, folder in (("images", args.images), ("masks", args.masks))}
    scratch_project(root, args.images, args.masks, overrides, files=files)
    print("params overrides: " + (json.dumps(overrides) if overrides else "none")
          + (f"; excluded: files matching {args.exclude!r}" if args.exclude else ""))
    if args.build_only:
        print(f"built {root}; run it with: cd {root} && dvc repro")
        return
    print(f"running dvc repro; follow it with: tail -f {root / 'repro.log'}", flush=True)
    start = time.perf_counter()
    dvc("repro", cwd=root, log=root / "repro.log")
    report(root, time.perf_counter() - start)


if __name__ == "__main__":
    main()
