"""evaluate: score every model on the test split; the top-level `model` is the headline.

python -m stages.evaluate --prepared artifacts/prepared --masks data/masks --split artifacts/split.json
    --models models --metrics metrics/eval.json --test-metrics metrics/test --plots plots/eval
    --timing artifacts/eval_timing.json
"""
import argparse
from pathlib import Path

from seglib import config
from seglib.errors import SegError, run_cli
from seglib.evaluate import evaluate_split, worst_and_best
from seglib.io import read_json, read_npz, save_figure, write_csv, write_json
from seglib.models import load_checkpoint, resolve_device
from seglib.plots import best_worst_figure, confusion_records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--prepared", "--masks", "--split", "--models", "--metrics", "--test-metrics", "--plots", "--timing"):
        parser.add_argument(name, required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    headline, names = config.headline_model(params), list(config.models(params))
    eval_cfg, device = config.section(params, "evaluate"), resolve_device(config.section(params, "train").device)
    split = read_json(args.split)
    items = split["test"]
    if not items:
        raise SegError("data.test_fraction: the test split is empty; set test_fraction above 0")
    prepared = read_npz(Path(args.prepared) / "test.npz")
    spacing = eval_cfg.pixel_spacing or (1.0, 1.0)
    subjects = {image: split["units"][image] for image, _ in items}
    evaluations, metas = {}, {}
    for name in names:  # score everything before writing anything: a failure leaves no partial outputs
        model, metas[name] = load_checkpoint(Path(args.models) / name / "model.pt", device)
        stats = {"mean": metas[name]["mean"], "std": metas[name]["std"]}
        evaluations[name] = evaluate_split(model, prepared, items, args.masks, metas[name]["gray_values"],
                                           stats, spacing, device, subjects)
    results, speed = {}, {}
    for name, evaluation in evaluations.items():
        results[name] = {"model": name, "units": "mm" if eval_cfg.pixel_spacing else "pixels", **evaluation.metrics()}
        speed[name] = {"images_per_second": evaluation.images_per_second, "device": str(device)}
        write_json(Path(args.test_metrics) / f"{name}.json", results[name])
        write_csv(Path(args.plots) / f"{name}.csv", evaluation.rows)
        save_figure(best_worst_figure(worst_and_best(evaluation, prepared, eval_cfg.overlays),
                                      f"{name}: worst and best test images"), Path(args.plots) / f"{name}_best_worst.png")
        print(f"{name}: test foreground Dice {results[name]['fg_dice']:.4f}, IoU {results[name]['fg_iou']:.4f}, "
              f"median HD95 {results[name]['per_image']['hd95']['median']:.2f}, "
              f"misses {results[name]['per_image']['misses']}")
    class_names = [str(g) for g in metas[headline]["gray_values"]]
    write_csv(Path(args.plots) / "confusion.csv", confusion_records(evaluations[headline].matrix, class_names))
    write_json(args.timing, speed)
    write_json(args.metrics, results[headline])


if __name__ == "__main__":
    run_cli(main)
