"""A running cross-validation's pooled result over the folds finished so far.

    python -m bench.cv_progress [--project .] [--models unet ...]

A 5-fold run of two models takes hours; `compare` pools it only when every
run is done. This pools what is: the folds whose cv-evaluate files exist for
every model and every seed of `crossval.seeds`, with compare's own code
(`seglib.crossval.pool`: pooled Dice raw and post-processed, the mean slice
Dice with its interval, each fold, the paired comparison), and names the folds
still missing. --models pools only those (a run that trains one model's folds
first). The extra seeds and the seed ensembles wait for `compare`.
"""
import argparse
import dataclasses
from pathlib import Path

from seglib import config
from seglib.crossval import pool, report_lines, run_name
from seglib.errors import SegError, run_cli
from seglib.io import read_csv, read_json


def finished_folds(project, names, cv_cfg):
    """The folds whose test metrics and per-image rows exist for every model and seed."""
    def done(fold):
        return all((project / "metrics/test/cv" / f"{run_name(m, fold, s)}.json").is_file()
                   and (project / "plots/eval/cv" / f"{run_name(m, fold, s)}.csv").is_file()
                   for m in names for s in cv_cfg.seeds)
    return [f for f in cv_cfg.folds if done(f)]


def progress(project, models=None):
    """(report lines of the finished folds, the folds still missing), for `models` (default: all)."""
    params = config.load_params(project / "params.yaml")
    names, cv_cfg = list(config.models(params)), config.section(params, "crossval")
    unknown = sorted(set(models or ()) - set(names))
    if unknown:
        raise SegError(f"--models: {', '.join(unknown)} not in models: of {project / 'params.yaml'} "
                       f"({', '.join(names)})")
    names = [m for m in names if m in models] if models else names
    if not cv_cfg.folds:
        raise SegError(f"{project / 'params.yaml'}: crossval.folds is empty; this project runs no cross-validation")
    folds = finished_folds(project, names, cv_cfg)
    missing = [f for f in cv_cfg.folds if f not in folds]
    if not folds:
        return [], missing
    finished = dataclasses.replace(cv_cfg, folds=tuple(folds), extra_seeds=(), extra_seed_folds=())
    runs = [(m, f, s) for m in names for f in folds for s in cv_cfg.seeds]
    result = pool({r: read_json(project / "metrics/test/cv" / f"{run_name(*r)}.json") for r in runs},
                  {r: read_csv(project / "plots/eval/cv" / f"{run_name(*r)}.csv") for r in runs},
                  finished, config.section(params, "compare"), names, {})
    return report_lines(result), missing


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", default=".", help="the DVC project (default: here)")
    parser.add_argument("--models", nargs="+", help="pool only these models (default: all in params)")
    args = parser.parse_args(argv)
    lines, missing = progress(Path(args.project), args.models)
    print("\n".join(lines) if lines else "no fold finished yet")
    print(f"folds not finished: {', '.join(map(str, missing))}" if missing else "every fold finished: run `dvc repro`")


if __name__ == "__main__":
    run_cli(main)
