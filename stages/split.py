"""split: check the dataset, pair images with masks, and split by subject (copies kept together):
the hold-out split, and the cross-validation folds when crossval.folds asks for them.

python -m stages.split --images data/images --masks data/masks --split artifacts/split.json
    --folds artifacts/folds.json --report reports/dataset_check.json
"""
import argparse

from seglib import config
from seglib.check import check_dataset
from seglib.errors import run_cli
from seglib.folds import check_curve_sizes, cross_validation
from seglib.io import write_json
from seglib.split import PARTS, split_dataset


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--images", "--masks", "--split", "--folds", "--report"):
        parser.add_argument(name, required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    params = config.load_params(args.params)  # checks every section: the first stage fails in seconds
    data_cfg, pre_cfg = config.section(params, "data"), config.section(params, "preprocess")
    report = check_dataset(args.images, args.masks, data_cfg, pre_cfg.max_pixels, config.section(params, "volume"))
    parts = split_dataset(report, data_cfg)
    cv_cfg = config.section(params, "crossval")
    folds = cross_validation(report, data_cfg, len(cv_cfg.folds))
    check_curve_sizes(folds["folds"], report.units, cv_cfg.train_subjects)
    counts = {p: {"images": len(parts[p]), "subjects": len({report.subjects[i] for i, _ in parts[p]})} for p in PARTS}
    for warning in report.warnings:
        print(f"warning: {warning}")
    write_json(args.report, {**report.summary(), "split": counts})
    # the split units travel with the split: evaluation resamples by the same units
    write_json(args.split, {**parts, "units": report.units})
    write_json(args.folds, {**folds, "units": report.units})
    print("split: " + ", ".join(f"{p} {c['images']} images / {c['subjects']} subjects" for p, c in counts.items()))
    if folds["k"]:
        sizes = [sum(part == i for part in folds["parts"].values()) for i in range(folds["k"])]
        print(f"cross-validation: {folds['k']} folds of {sizes} split units")


if __name__ == "__main__":
    run_cli(main)
