"""train@<model>: train one model on the prepared arrays; keep its best validation epoch.

python -m stages.train --model unet --prepared artifacts/prepared --out models/unet
    --metrics metrics/train/unet.json --log plots/train/unet --timing logs/timing/unet.json
    --resume logs/resume/unet.pt

After the last epoch the best epoch's model chooses its post-processing rules on
the validation images (seglib.postprocess); the checkpoint carries them.

The epoch log (--log, a DVCLive folder: seglib.epochlog) is rewritten after every epoch, so a run can be watched
while it goes. The timing and resume files are no DVC outputs: seconds differ
on every run, and DVC deletes a stage's outputs before it runs, which would
take a stopped run's state with them. The resume state is keyed by the
settings, the prepared arrays and the code, and removed once the outputs are
written.

With runtime.processes above 1 the stage starts that many copies of itself
under torchrun (DistributedDataParallel); started by torchrun itself (several
machines), it joins the world torchrun describes. Only the main process writes.
"""
import argparse
import dataclasses
import sys
from pathlib import Path

from seglib import config, distributed
from seglib.checkpoint import save_checkpoint
from seglib.epochlog import write_epoch_log
from seglib.errors import run_cli
from seglib.io import read_json, read_npz, write_json
from seglib.models import model_cost
from seglib.prepared_meta import read_meta
from seglib.resume import TrainingRun, training_key
from seglib.runtime import describe, end_with_dvc, use_runtime
from seglib.split import read_split
from seglib.train import choose_postprocessing, curve_subset, fit, per_process_batch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--model", "--prepared", "--out", "--metrics", "--log", "--timing", "--resume"):
        parser.add_argument(name, required=True)
    parser.add_argument("--seed", type=int, help="train with this seed instead of train.seed "
                        "(cv-train: one of crossval.seeds)")
    parser.add_argument("--subjects", type=int, help="learning curve (curve-train): train on this many of the "
                        "fold's training subjects, a nested subset seeded by data.seed; needs --folds and --fold")
    parser.add_argument("--folds", help="the split stage's folds file (with --subjects)")
    parser.add_argument("--fold", type=int, help="the fold of --prepared (with --subjects)")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    if args.subjects is not None and (args.folds is None or args.fold is None):
        parser.error("--subjects needs --folds and --fold")
    end_with_dvc()
    params = config.load_params(args.params)
    # every setting is checked before any training process starts
    train_cfg = config.section(params, "train")
    if args.seed is not None:
        train_cfg = dataclasses.replace(train_cfg, seed=args.seed)
    configs = {"models": config.model(params, args.model), "train": train_cfg,
               "runtime": config.section(params, "runtime"), "crossval": config.section(params, "crossval"),
               "data": config.section(params, "data")}
    runtime_cfg = configs["runtime"]
    per_process_batch(configs["models"], runtime_cfg.processes, args.model)
    if runtime_cfg.processes > 1 and not distributed.launched_by_torchrun():
        return distributed.relaunch("stages.train", sys.argv[1:] if argv is None else argv, runtime_cfg.processes)
    world, device = distributed.join(use_runtime(runtime_cfg), runtime_cfg.threads)
    try:
        train(args, configs, world, device)
    finally:
        distributed.leave(world)


def train(args, configs, world, device):
    model_cfg, train_cfg = configs["models"], configs["train"]
    prepared = Path(args.prepared)
    meta = read_meta(read_json(prepared / "meta.json"), prepared / "meta.json")
    data = {part: read_npz(prepared / f"{part}.npz") for part in ("train", "val")}
    files = [prepared / "train.npz", prepared / "val.npz", Path(__file__)]
    starts = [model_cfg.weights, model_cfg.encoder_file()]
    settings = {k: configs[k] for k in ("models", "train", "runtime")}
    subset = None
    if args.subjects is not None:
        data["train"], subset = curve_subset(data["train"], read_split(args.folds, args.fold), args.subjects,
                                             configs["data"].seed, configs["crossval"].curve_budget, prepared)
        settings["subset"], data["epoch_images"] = subset, subset.epoch_images
    key = training_key(args.model, settings, meta, files + [Path(w) for w in starts if w])
    run = TrainingRun(args.model, log=args.log, state=args.resume, key=key, world=world)
    result = fit(data, model_cfg, train_cfg, device, meta, run)
    if not world.main:
        return
    rules, report = choose_postprocessing(result, data, model_cfg, meta, device)
    save_checkpoint(Path(args.out) / "model.pt", result.model, model_cfg, meta, args.model, rules)
    write_epoch_log(args.log, result.history)  # again: a run resumed after its last epoch has no epoch left to write it
    best = result.best_scores
    cost = model_cost(result.model, meta.base_size)
    curve = {} if subset is None else {"train_subjects": len(subset.units), "train_images": len(data["train"]["images"]),
                                       "epoch_images": subset.epoch_images}
    write_json(args.metrics, {"best_epoch": result.best_epoch, **curve, "parameters": result.parameters,
                              "gflops_per_image": cost["gflops"], "feature_map": cost["feature_map"],
                              "val": {k: best[k] for k in ("accuracy", "fg_dice", "fg_iou", "fg_precision",
                                                           "fg_recall", "mean_dice", "mean_iou", "dice", "iou")},
                              "postprocess": report, "trained_on": describe(device)})
    write_json(args.timing, {"seconds_per_epoch": result.seconds_per_epoch,
                             "train_seconds": sum(result.seconds_per_epoch)})
    run.finish()
    print(f"{args.model}: best epoch {result.best_epoch}, val foreground Dice {best['fg_dice']:.4f}; "
          f"post-processing: {', '.join(r.describe() for r in rules)}")


if __name__ == "__main__":
    run_cli(main)
