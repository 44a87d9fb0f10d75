"""train@<model>: train one model on the prepared arrays; keep its best validation epoch.

python -m stages.train --model unet --prepared artifacts/prepared --out models/unet
    --metrics metrics/train/unet.json --log plots/train/unet.csv --timing logs/timing/unet.json
    --resume logs/resume/unet.pt

The epoch log (--log) is rewritten after every epoch, so a run can be watched
while it goes. The timing and resume files are no DVC outputs: seconds differ
on every run, and DVC deletes a stage's outputs before it runs, which would
take a stopped run's state with them. The resume state is keyed by the
settings, the prepared arrays and the code, and removed once the outputs are
written.
"""
import argparse
import dataclasses
from pathlib import Path

import seglib
from seglib import config
from seglib.errors import run_cli
from seglib.inference import use_runtime
from seglib.io import read_json, read_npz, write_csv, write_json
from seglib.models import save_checkpoint
from seglib.prepared_meta import read_meta
from seglib.resume import TrainingRun, run_key
from seglib.train import fit


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--model", "--prepared", "--out", "--metrics", "--log", "--timing", "--resume"):
        parser.add_argument(name, required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    model_cfg, train_cfg = config.model(params, args.model), config.section(params, "train")
    runtime_cfg = config.section(params, "runtime")
    device = use_runtime(runtime_cfg)
    prepared = Path(args.prepared)
    meta = read_meta(read_json(prepared / "meta.json"), prepared / "meta.json")
    data = {part: read_npz(prepared / f"{part}.npz") for part in ("train", "val")}
    settings = {"model": args.model, **{k: dataclasses.asdict(c) for k, c in
                                        (("models", model_cfg), ("train", train_cfg), ("runtime", runtime_cfg))},
                "meta": meta.to_dict()}
    code = sorted(Path(seglib.__file__).parent.glob("*.py")) + [Path(__file__)]
    key = run_key(settings, [prepared / "train.npz", prepared / "val.npz", *code])
    run = TrainingRun(args.model, log=args.log, state=args.resume, key=key)
    result = fit(data, model_cfg, train_cfg, device, meta, run)
    save_checkpoint(Path(args.out) / "model.pt", result.model, model_cfg, meta, args.model)
    write_csv(args.log, result.history)
    best = result.best_scores
    write_json(args.metrics, {"best_epoch": result.best_epoch, "parameters": result.parameters,
                              "val": {k: best[k] for k in ("accuracy", "fg_dice", "fg_iou", "fg_precision",
                                                           "fg_recall", "mean_dice", "mean_iou", "dice", "iou")}})
    write_json(args.timing, {"seconds_per_epoch": result.seconds_per_epoch,
                             "train_seconds": sum(result.seconds_per_epoch)})
    run.finish()
    print(f"{args.model}: best epoch {result.best_epoch}, val foreground Dice {best['fg_dice']:.4f}")


if __name__ == "__main__":
    run_cli(main)
