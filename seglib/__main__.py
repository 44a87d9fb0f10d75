"""Commands beside the pipeline:

python -m seglib synth   --out data [--volumes]          write the built-in synthetic dataset (as NIfTI volumes)
python -m seglib check   --images DIR --masks DIR        check a dataset (the split stage's check)
python -m seglib predict --checkpoint models/unet/model.pt [more.pt ...] --input DIR --output DIR
                         [--overlays DIR] [--overwrite] [--flips h v] [--no-postprocess] [--device auto]
python -m seglib summary                                 each model's test Dice, the verdict, and the run
                                                         against the committed reference (make pipeline's end)
"""
import argparse
import inspect
import sys

from seglib import synth as synth_data
from seglib.errors import run_cli

SYNTH_OPTIONS = ("subjects", "slices", "seed")  # generate()'s defaults are the values behind data.dvc


def _synth(args):
    synth_data.generate(args.out, args.subjects, args.slices, args.seed, args.volumes)
    what = f"{args.subjects} volumes of {args.slices} planes" if args.volumes else f"{args.subjects * args.slices} slices"
    print(f"wrote {what} to {args.out}/images and {args.out}/masks")


def _check(args):
    from seglib import config
    from seglib.check import check_dataset
    from seglib.io import write_json
    from seglib.split import split_dataset
    params = config.load_params(args.params)
    data_cfg = config.section(params, "data")
    report = check_dataset(args.images, args.masks, data_cfg, config.section(params, "preprocess").max_pixels,
                           config.section(params, "volume"))
    split_dataset(report, data_cfg)  # its class-coverage warnings join the report's
    for warning in report.warnings:
        print(f"warning: {warning}")
    summary = report.summary()
    print(f"ok: {summary['images']} pairs, {summary['subjects']} subjects, gray values {summary['gray_values']}, "
          f"{summary['empty_masks']} empty masks")
    if args.json:
        write_json(args.json, summary)


def _predict(args):
    from seglib.predict import PredictOptions, predict_folder
    outputs = {"--output": args.output, **({"--overlays": args.overlays} if args.overlays else {})}
    options = PredictOptions(tuple(args.checkpoint), args.device, tuple(args.flips), not args.no_postprocess)
    skipped = predict_folder(options, args.input, outputs, args.overwrite)
    for path, reason in skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    if skipped:
        sys.exit(1)


def _summary(args):
    from seglib.summary import summary
    print("\n".join(summary(args.root)))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m seglib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    synth = sub.add_parser("synth", help="write the built-in synthetic dataset")
    synth.add_argument("--out", required=True)
    defaults = inspect.signature(synth_data.generate).parameters
    for key in SYNTH_OPTIONS:
        synth.add_argument(f"--{key}", type=int, default=defaults[key].default)
    synth.add_argument("--volumes", action="store_true", help="one NIfTI volume per subject instead of PNG slices")
    check = sub.add_parser("check", help="check images and masks before training")
    check.add_argument("--images", required=True)
    check.add_argument("--masks", required=True)
    check.add_argument("--params", default="params.yaml")
    check.add_argument("--json", help="also write the summary here")
    predict = sub.add_parser("predict", help="predict masks for a folder of images")
    predict.add_argument("--checkpoint", required=True, nargs="+",
                         help="one checkpoint, or several: their ensemble (mean probabilities)")
    predict.add_argument("--input", required=True)
    predict.add_argument("--output", required=True)
    predict.add_argument("--overlays")
    predict.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")
    predict.add_argument("--overwrite", action="store_true", help="replace masks already in the output folders")
    predict.add_argument("--flips", nargs="+", choices=("h", "v"), default=(),
                         help="test-time augmentation: average the softmax with the horizontally (h) and/or "
                              "vertically (v) flipped image's")
    predict.add_argument("--no-postprocess", action="store_true",
                         help="raw masks: skip the post-processing rules the checkpoint chose on validation")
    summary = sub.add_parser("summary", help="the run's headline and how it stands against the committed reference")
    summary.add_argument("--root", default=".", help="the project (a Git repository after `dvc repro`)")
    args = parser.parse_args(argv)
    {"synth": _synth, "check": _check, "predict": _predict, "summary": _summary}[args.command](args)


def cli():
    """The `seglib` console script."""
    run_cli(main)


if __name__ == "__main__":
    cli()
