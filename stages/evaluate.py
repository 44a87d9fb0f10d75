"""evaluate: score every model on the test split; the top-level `model` is the headline.

python -m stages.evaluate --prepared artifacts/prepared --masks data/masks --split artifacts/split.json
    --models models --metrics metrics/eval.json --test-metrics metrics/test --plots plots/eval
    --timing logs/timing/evaluate.json

The timing file is no DVC output: images per second differ on every run.
"""
import argparse
from pathlib import Path

from seglib import config
from seglib.errors import run_cli
from seglib.evaluate import ScoredSplit, evaluate_split, worst_and_best
from seglib.inference import Predictor, resolve_device, use_threads
from seglib.io import read_json, read_npz, save_figure, write_csv, write_json
from seglib.plots import best_worst_figure, confusion_records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--prepared", "--masks", "--split", "--models", "--metrics", "--test-metrics", "--plots", "--timing"):
        parser.add_argument(name, required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    headline, names = config.headline_model(params), list(config.models(params))
    eval_cfg, train_cfg = config.section(params, "evaluate"), config.section(params, "train")
    device = resolve_device(train_cfg.device)
    use_threads(train_cfg.threads)
    split = read_json(args.split)
    items = split["test"]  # never empty: data.test_fraction is above 0 (config)
    test = ScoredSplit(read_npz(Path(args.prepared) / "test.npz"), items, Path(args.masks),
                       {image: split["units"][image] for image, _ in items})
    spacing = eval_cfg.pixel_spacing or (1.0, 1.0)
    predictors = {name: Predictor.load(Path(args.models) / name / "model.pt", device) for name in names}
    # score everything before writing anything: a failure leaves no partial outputs
    evaluations = {name: evaluate_split(predictor, test, spacing) for name, predictor in predictors.items()}
    drawn = {name: worst_and_best(predictors[name], test, evaluations[name], eval_cfg.overlays) for name in names}
    results, speed = {}, {}
    for name, evaluation in evaluations.items():
        results[name] = {"model": name, "units": "mm" if eval_cfg.pixel_spacing else "pixels", **evaluation.metrics()}
        speed[name] = {"images_per_second": evaluation.images_per_second, "device": str(device)}
        write_json(Path(args.test_metrics) / f"{name}.json", results[name])
        write_csv(Path(args.plots) / f"{name}.csv", evaluation.rows)
        save_figure(best_worst_figure(drawn[name], f"{name}: worst and best test images"),
                    Path(args.plots) / f"{name}_best_worst.png")
        print(f"{name}: test foreground Dice {results[name]['fg_dice']:.4f}, IoU {results[name]['fg_iou']:.4f}, "
              f"median HD95 {results[name]['per_image']['hd95']['median']:.2f}, "
              f"misses {results[name]['per_image']['misses']}")
    class_names = [str(g) for g in predictors[headline].meta.gray_values]
    write_csv(Path(args.plots) / "confusion.csv", confusion_records(evaluations[headline].matrix, class_names))
    write_json(args.metrics, results[headline])
    write_json(args.timing, speed)


if __name__ == "__main__":
    run_cli(main)
