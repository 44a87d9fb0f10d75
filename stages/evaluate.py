"""evaluate@<model>: score one model on the test split, at each image's original size.

python -m stages.evaluate --model unet --checkpoint models/unet/model.pt --prepared artifacts/prepared
    --masks data/masks --split artifacts/split.json --metrics metrics/test/unet.json
    --plots plots/eval --timing logs/timing/evaluate_unet.json

Writes into --plots: <model>.csv (per image and class), <model>_postprocessed.csv
(the same after the checkpoint's post-processing rules), <model>_confusion.csv
(DVC's confusion template) and <model>_best_worst.png (<name>.csv ... with
--name); the metrics hold raw and post-processed scores. Several --checkpoint
paths score their ensemble (mean probabilities); a path with {seed} stands for
one path per seed of the fold (crossval.seeds, and extra_seeds on
extra_seed_folds: cv-ensemble@<model>-<fold>). cv-evaluate@<model>-<fold>-<seed>
scores a fold's test part (--fold). The headline
(metrics/eval.json) is chosen by compare, so `dvc exp run -S model=...`
scores nothing again. The timing file is no DVC output: images per second
differ on every run.
"""
import argparse
from pathlib import Path

from seglib import config
from seglib.errors import SegError, run_cli
from seglib.evaluate import ScoredSplit, evaluate_split, evaluate_volumes, worst_and_best
from seglib.inference import load_predictor
from seglib.io import read_npz, save_figure, write_csv, write_json
from seglib.plots import best_worst_figure, confusion_records
from seglib.runtime import end_with_dvc, use_runtime
from seglib.split import read_split
from seglib.volume import VOLUME_SPACING


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", required=True, nargs="+")
    for name in ("--model", "--prepared", "--masks", "--split", "--metrics", "--plots", "--timing"):
        parser.add_argument(name, required=True)
    parser.add_argument("--fold", type=int, help="--split is the folds file; score fold K's test part")
    parser.add_argument("--name", help="stem of the files under --plots (default: --model)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    end_with_dvc()
    params = config.load_params(args.params)
    eval_cfg = config.section(params, "evaluate")
    device = use_runtime(config.section(params, "runtime"))
    split = read_split(args.split, args.fold)
    items = split["test"]  # never empty: data.test_fraction is above 0 (config)
    test = ScoredSplit(read_npz(Path(args.prepared) / "test.npz"), items, Path(args.masks),
                       {image: split["units"][image] for image, _ in items})
    seeds = config.section(params, "crossval").seeds_of(args.fold)
    checkpoints = [c.format(seed=s) for c in args.checkpoint for s in (seeds if "{seed}" in c else [None])]
    predictor = load_predictor(checkpoints, device)
    if test.of_volumes and eval_cfg.in_mm:
        raise SegError(VOLUME_SPACING)
    # score everything before writing anything: a failure leaves no partial outputs
    evaluation, processed = evaluate_volumes(predictor, test) if test.of_volumes else \
        evaluate_split(predictor, test, eval_cfg.spacing)
    drawn = worst_and_best(predictor, test, evaluation, eval_cfg.overlays)
    units = "mm" if eval_cfg.in_mm or test.of_volumes else "pixels"
    result = {"model": args.model, "units": units, **({"scored_per": "volume"} if test.of_volumes else {}),
              **evaluation.metrics(),
              "postprocessed": {"rules": [r.describe() for r in predictor.postprocess], **processed.metrics()}}
    if len(checkpoints) > 1:
        result["members"] = checkpoints
    plots, class_names, name = Path(args.plots), [str(g) for g in predictor.meta.gray_values], args.name or args.model
    write_csv(plots / f"{name}.csv", evaluation.rows)
    write_csv(plots / f"{name}_postprocessed.csv", processed.rows)
    write_csv(plots / f"{name}_confusion.csv", confusion_records(evaluation.matrix, class_names))
    save_figure(best_worst_figure(drawn, f"{name}: worst and best test images"), plots / f"{name}_best_worst.png")
    write_json(args.metrics, result)
    write_json(args.timing, {"images_per_second": evaluation.images_per_second, "device": str(device)})
    print(f"{name}: test foreground Dice {result['fg_dice']:.4f} ({result['postprocessed']['fg_dice']:.4f} "
          f"post-processed), IoU {result['fg_iou']:.4f}, "
          f"median HD95 {result['per_image']['hd95']['median']:.2f}, misses {result['per_image']['misses']}")


if __name__ == "__main__":
    run_cli(main)
