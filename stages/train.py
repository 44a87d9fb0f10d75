"""train@<model>: train one model on the prepared arrays; keep its best validation epoch.

python -m stages.train --model unet --prepared artifacts/prepared --out models/unet
    --metrics metrics/train/unet.json --log plots/train/unet.csv --timing logs/timing/unet.json

The timing file is no DVC output: seconds differ on every run, and the
checkpoint folder must hash the same for the same weights.
"""
import argparse
from pathlib import Path

from seglib import config
from seglib.errors import run_cli
from seglib.inference import use_runtime
from seglib.io import read_json, read_npz, write_csv, write_json
from seglib.models import save_checkpoint
from seglib.prepared_meta import read_meta
from seglib.train import fit


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--model", "--prepared", "--out", "--metrics", "--log", "--timing"):
        parser.add_argument(name, required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    model_cfg, train_cfg = config.model(params, args.model), config.section(params, "train")
    device = use_runtime(config.section(params, "runtime"))
    prepared = Path(args.prepared)
    meta = read_meta(read_json(prepared / "meta.json"), prepared / "meta.json")
    data = {part: read_npz(prepared / f"{part}.npz") for part in ("train", "val")}
    result = fit(data, model_cfg, train_cfg, device, meta, args.model)
    save_checkpoint(Path(args.out) / "model.pt", result.model, model_cfg, meta, args.model)
    write_csv(args.log, result.history)
    best = result.best_scores
    write_json(args.metrics, {"best_epoch": result.best_epoch, "parameters": result.parameters,
                              "val": {k: best[k] for k in ("accuracy", "fg_dice", "fg_iou", "fg_precision",
                                                           "fg_recall", "mean_dice", "mean_iou", "dice", "iou")}})
    write_json(args.timing, {"seconds_per_epoch": result.seconds_per_epoch,
                             "train_seconds": sum(result.seconds_per_epoch)})
    print(f"{args.model}: best epoch {result.best_epoch}, val foreground Dice {best['fg_dice']:.4f}")


if __name__ == "__main__":
    run_cli(main)
