"""A running cross-validation: its pooled result over the folds finished so far, the runs kept
where they outlive the machine, and the stages left.

    python -m bench.cv_progress [--project .] [--models unet ...] [--sizes 4 ...]
    python -m bench.cv_progress --project /tmp/curve --keep docs/results/curve-mri [--todo]
    python -m bench.cv_progress --project docs/results/curve-mri --figures docs/results/curve-mri

Pools, with compare's own code (seglib.crossval.pool, seglib.curve), the folds whose cv-evaluate
files exist for every model (--models: only those) and seed of crossval.seeds, and names the
folds still missing; a finished fold's seed study and seed ensembles once they are scored; the
learning curve over the folds where every size (--sizes: only those) and the full part are done.

--keep DIR first copies every finished run of the project (test metrics, per-image rows, train
metrics, epoch log, timing; params.yaml and the folds file; no checkpoints) into DIR, then pools
DIR, with what earlier machines kept there. A kept file is never overwritten with other bytes
(another machine's rerun, other params): nothing is copied then. --todo prints instead the
evaluate stages of crossval.seeds finished in neither place, fold by fold, the curve's ends
(smallest size, full part) first, for a driver (docs/crossval.md):

    for t in $(python -m bench.cv_progress -p . --keep D --todo); do
        dvc repro $t && git add -A && git commit -qm $t && python -m bench.cv_progress -p . --keep D; done
"""
import argparse
import dataclasses
import filecmp
import shutil
from pathlib import Path

from seglib import config
from seglib.crossval import pool, read_curve_runs, read_logs, read_runs, run_files, run_name, run_part
from seglib.curve import CONVERGED, convergence, convergence_spread, learning_curve
from seglib.errors import SegError, run_cli
from seglib.folds import training_units
from seglib.io import atomic_path, read_json, save_figure
from seglib.plots import convergence_figure, learning_curve_figure
from seglib.report import crossval_lines, curve_lines

# compare's --test-metrics, --per-image and --train-logs in dvc.yaml
TEST_METRICS, PER_IMAGE, TRAIN_LOGS = "metrics/test", "plots/eval", "plots/train"


def _done(project, names, fold, seeds, subjects=None):
    return all(path.is_file() for m in names for s in seeds
               for path in run_files(project / TEST_METRICS, project / PER_IMAGE, m, fold, s, subjects))


def curve_progress(project, names, cv_cfg, cmp_cfg, figures=None):
    """Report lines of the learning curve over the folds where every size and the full part are done
    for every model and seed (none: []); the full part's size from the split's folds file. With
    `figures` (a folder) also compare's learning_curve.png and convergence.png (the full parts' runs)."""
    folds = tuple(f for f in cv_cfg.folds if all(_done(project, names, f, cv_cfg.seeds, n)
                                                 for n in (None, *cv_cfg.train_subjects)))
    if not folds or not cv_cfg.train_subjects:
        return []
    done = dataclasses.replace(cv_cfg, folds=folds, extra_seeds=(), extra_seed_folds=())
    test, rows, ensembles = read_runs(project / TEST_METRICS, project / PER_IMAGE, names, done, partial=True)
    cv = pool(test, rows, done, cmp_cfg, names, ensembles)
    runs = read_logs(project / TRAIN_LOGS, names, done)
    cv["convergence"] = convergence_spread(runs)
    sized = {n: (*read_curve_runs(project / TEST_METRICS, project / PER_IMAGE, names, done, n),
                 read_logs(project / TRAIN_LOGS, names, done, n)) for n in done.train_subjects}
    split = read_json(project / "artifacts/folds.json")
    full = sum(len(training_units(split["folds"][f], split["units"])) for f in folds) / len(folds)
    curve = learning_curve(sized, cv, full, done, cmp_cfg, names)
    if figures:
        save_figure(learning_curve_figure(curve["points"], names), Path(figures) / "learning_curve.png")
        marks = {m: [convergence(h) for h in logs] for m, logs in runs.items()}
        save_figure(convergence_figure(runs, marks, CONVERGED), Path(figures) / "convergence.png")
    lines = curve_lines(curve, names)
    return [lines[0], "", f"Over fold(s) {', '.join(map(str, folds))} of {len(cv_cfg.folds)}.", *lines[1:]]


def finished(project, names, cv_cfg):
    """crossval settings cut to the folds whose runs are done for every model and seed, and to the
    seed-study folds among them whose extra seeds are done too."""
    folds = tuple(f for f in cv_cfg.folds if _done(project, names, f, cv_cfg.seeds))
    extra = tuple(f for f in cv_cfg.extra_seed_folds if f in folds and _done(project, names, f, cv_cfg.extra_seeds))
    return dataclasses.replace(cv_cfg, folds=folds, extra_seed_folds=extra,
                               extra_seeds=cv_cfg.extra_seeds if extra else ())


def progress(project, models=None, sizes=None, figures=None):
    """(report lines of the finished folds, the folds still missing, the seed-study folds still
    missing), for `models` (default: all) and learning-curve `sizes` (default: all); the learning
    curve's figures into the folder `figures` if given."""
    params = config.load_params(project / "params.yaml")
    names, cv_cfg = list(config.models(params)), config.section(params, "crossval")
    unknown = sorted(set(models or ()) - set(names))
    if unknown:
        raise SegError(f"--models: {', '.join(unknown)} not in models: of {project / 'params.yaml'} "
                       f"({', '.join(names)})")
    if sizes:
        unlisted = sorted(set(sizes) - set(cv_cfg.train_subjects))
        if unlisted:
            raise SegError(f"--sizes: {', '.join(map(str, unlisted))} not in crossval.train_subjects of "
                           f"{project / 'params.yaml'} ({list(cv_cfg.train_subjects)})")
        cv_cfg = dataclasses.replace(cv_cfg, train_subjects=tuple(n for n in cv_cfg.train_subjects if n in sizes))
    names = [m for m in names if m in models] if models else names
    if not cv_cfg.folds:
        raise SegError(f"{project / 'params.yaml'}: crossval.folds is empty; this project runs no cross-validation")
    done = finished(project, names, cv_cfg)
    missing = [f for f in cv_cfg.folds if f not in done.folds]
    seed_study_missing = [f for f in cv_cfg.extra_seed_folds if f not in done.extra_seed_folds]
    if not done.folds:
        return [], missing, seed_study_missing
    test, rows, ensembles = read_runs(project / TEST_METRICS, project / PER_IMAGE, names, done, partial=True)
    result = pool(test, rows, done, config.section(params, "compare"), names, ensembles)
    curve = curve_progress(project, names, cv_cfg, config.section(params, "compare"), figures)
    return crossval_lines(result) + ([""] + curve if curve else []), missing, seed_study_missing


def finished_runs(root):
    """{(part, run stem)} of the cv and curve runs whose test metrics and per-image rows exist under root."""
    found = [*(root / TEST_METRICS).glob("cv/*.json"), *(root / TEST_METRICS).glob("curve/n*/*.json")]
    return {(p.parent.relative_to(root / TEST_METRICS).as_posix(), p.stem) for p in found
            if (root / PER_IMAGE / p.parent.relative_to(root / TEST_METRICS) / f"{p.stem}.csv").is_file()}


def run_kept_files(part, stem):
    """A run's files kept besides its epoch log (TRAIN_LOGS/part/stem/): test metrics, per-image rows,
    train metrics and train timing, as the cv-/curve- stages of dvc.yaml write them."""
    return [Path(TEST_METRICS, part, f"{stem}.json"), Path(PER_IMAGE, part, f"{stem}.csv"),
            Path("metrics", part, f"{stem}.json"), Path("logs/timing", part, f"{stem}.json")]


def evaluate_stage(model, fold, seed, subjects=None):
    """The dvc.yaml name of a cv run's evaluate stage (a curve run's with `subjects`)."""
    return (f"cv-evaluate@{model}-{fold}-{seed}" if subjects is None
            else f"curve-evaluate@{model}-{fold}-{subjects}-{seed}")


def _kept_files(root):
    """Files (relative to root) a results folder keeps of a project: each finished run's and the project's."""
    runs = sorted(finished_runs(root))
    wanted = [f for part, stem in runs for f in run_kept_files(part, stem)]
    logs = [p.relative_to(root) for part, stem in runs for p in (root / TRAIN_LOGS / part / stem).rglob("*")]
    return [f for f in [Path("params.yaml"), Path("artifacts/folds.json"), *wanted, *logs] if (root / f).is_file()]


def keep(project, into):
    """Copy every finished run's files from `project` into `into`; the copied files (relative paths).
    Raises before copying anything when a file is already kept with other bytes."""
    wanted = _kept_files(project)
    differing = [f for f in wanted if (into / f).is_file() and not filecmp.cmp(project / f, into / f, shallow=False)]
    if differing:
        listed = ", ".join(map(str, differing[:3])) + (f" and {len(differing) - 3} more" if len(differing) > 3 else "")
        raise SegError(f"{into}: {listed} already kept with other bytes than {project}'s (another machine or "
                       f"other params); nothing copied: keep these runs in a new folder (--keep)")
    copied = [f for f in wanted if not (into / f).is_file()]
    for f in copied:
        with atomic_path(into / f) as tmp:
            shutil.copyfile(project / f, tmp)
    return copied


def stages_to_do(project, into):
    """Evaluate stage names of crossval.seeds runs finished in neither folder, fold by fold."""
    params = config.load_params(project / "params.yaml")
    cv_cfg, done = config.section(params, "crossval"), finished_runs(project) | finished_runs(into)
    sizes = list(cv_cfg.train_subjects)
    return [evaluate_stage(m, f, s, n) for f in cv_cfg.folds for n in sizes[:1] + [None] + sizes[1:]
            for m in config.models(params) for s in cv_cfg.seeds if (run_part(n), run_name(m, f, s)) not in done]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--project", default=".", help="the DVC project (default: here)")
    parser.add_argument("--models", nargs="+", help="pool only these models (default: all in params)")
    parser.add_argument("--sizes", nargs="+", type=int, help="pool only these learning-curve sizes "
                        "(default: all of crossval.train_subjects)")
    parser.add_argument("--keep", metavar="DIR", help="copy the finished runs into DIR and pool DIR")
    parser.add_argument("--todo", action="store_true", help="print the evaluate stages left instead")
    parser.add_argument("--figures", metavar="DIR", help="write the learning curve's figures (learning_curve.png, "
                        "convergence.png) into DIR")
    args = parser.parse_args(argv)
    project = Path(args.project)
    if args.todo:
        print("\n".join(stages_to_do(project, Path(args.keep or project))))
        return
    if args.keep:
        copied = keep(project, Path(args.keep))
        print(f"kept {sum(f.parts[:2] == ('metrics', 'test') for f in copied)} new run(s) in {args.keep}\n")
        project = Path(args.keep)
    lines, missing, seed_study_missing = progress(project, args.models, args.sizes, args.figures)
    print("\n".join(lines) if lines else "no fold finished yet")
    if seed_study_missing:
        print(f"seed study not finished on fold(s): {', '.join(map(str, seed_study_missing))}")
    print(f"folds not finished: {', '.join(map(str, missing))}" if missing else "every fold finished: run `dvc repro`")


if __name__ == "__main__":
    run_cli(main)
