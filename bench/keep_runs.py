"""Keep a scratch project's finished cross-validation and learning-curve runs in a results folder
that outlives it, and list the runs still to do.

    python -m bench.keep_runs --project /tmp/curve --into docs/results/curve-mri
    python -m bench.keep_runs --project /tmp/curve --into docs/results/curve-mri --todo

A 5-fold learning curve can take longer than a machine lives. The checkpoints stay behind; the
files compare pools travel: per finished run (its test metrics and per-image rows exist) those
two, its train metrics, DVCLive epoch log and timing, and the project's params.yaml and folds
file. `python -m bench.cv_progress --project <folder>` pools them. A kept file is never
overwritten with other bytes (a rerun on another machine, changed params): nothing is copied
then, and such runs belong in a new folder. --todo prints the evaluate stages of crossval.seeds
that neither the project nor the folder has finished, fold by fold: the smallest learning-curve
size and the full part first (the curve's ends), then the sizes between. A driver:

    for t in $(python -m bench.keep_runs -p . --into D --todo); do
        dvc repro $t && git add -A && git commit -qm $t && python -m bench.keep_runs -p . --into D; done
"""
import argparse
import filecmp
import shutil
from pathlib import Path

from seglib import config
from seglib.crossval import run_name, run_part
from seglib.errors import SegError, run_cli
from seglib.io import atomic_path

PROJECT_FILES = ("params.yaml", "artifacts/folds.json")


def run_files(part, stem):
    """A run's files, relative to the project: (test metrics, per-image rows) first, then those a run
    may lack (a seed ensemble has no training of its own)."""
    return [Path("metrics/test", part, f"{stem}.json"), Path("plots/eval", part, f"{stem}.csv"),
            Path("metrics", part, f"{stem}.json"), Path("logs/timing", part, f"{stem}.json"),
            Path("plots/train", part, stem)]


def finished_runs(root):
    """{(part, run stem)} of the runs whose test metrics and per-image rows both exist under `root`."""
    runs = set()
    for path in [*(root / "metrics/test").glob("cv/*.json"), *(root / "metrics/test").glob("curve/n*/*.json")]:
        part = path.parent.relative_to(root / "metrics/test").as_posix()
        if (root / "plots/eval" / part / f"{path.stem}.csv").is_file():
            runs.add((part, path.stem))
    return runs


def _files_under(root, relative):
    """Files of `relative` under root (itself, or every file of a folder), relative to root."""
    path = root / relative
    if path.is_dir():
        return sorted(p.relative_to(root) for p in path.rglob("*") if p.is_file())
    return [relative] if path.is_file() else []


def keep(project, into):
    """Copy every finished run's files from `project` into `into`; the copied files (relative paths).
    Raises before copying anything when a file is already kept with other bytes."""
    runs = sorted(finished_runs(project))
    wanted = [f for name in PROJECT_FILES for f in _files_under(project, Path(name))]
    wanted += [f for part, stem in runs for rel in run_files(part, stem) for f in _files_under(project, rel)]
    differing = [f for f in wanted if (into / f).is_file() and not filecmp.cmp(project / f, into / f, shallow=False)]
    if differing:
        listed = ", ".join(map(str, differing[:3])) + (f" and {len(differing) - 3} more" if len(differing) > 3 else "")
        raise SegError(f"{into}: {listed} already kept with other bytes than {project}'s (another machine or "
                       f"other params); nothing copied: keep these runs in a new folder (--into)")
    copied = [f for f in wanted if not (into / f).is_file()]
    for f in copied:
        with atomic_path(into / f) as tmp:
            shutil.copyfile(project / f, tmp)
    return copied


def stages_to_do(project, into):
    """Evaluate stage names of crossval.seeds runs finished in neither folder, fold by fold."""
    params = config.load_params(project / "params.yaml")
    cv_cfg, models = config.section(params, "crossval"), list(config.models(params))
    done = finished_runs(project) | finished_runs(into)
    sizes = list(cv_cfg.train_subjects)
    order = sizes[:1] + [None] + sizes[1:]
    todo = []
    for fold in cv_cfg.folds:
        for size in order:
            for model in models:
                for seed in cv_cfg.seeds:
                    if (run_part(size), run_name(model, fold, seed)) in done:
                        continue
                    todo.append(f"cv-evaluate@{model}-{fold}-{seed}" if size is None
                                else f"curve-evaluate@{model}-{fold}-{size}-{seed}")
    return todo


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-p", "--project", default=".", help="the scratch DVC project (default: here)")
    parser.add_argument("--into", required=True, help="the results folder (created if missing)")
    parser.add_argument("--todo", action="store_true", help="print the evaluate stages still to run instead")
    args = parser.parse_args(argv)
    project, into = Path(args.project), Path(args.into)
    if not (project / "params.yaml").is_file():
        raise SegError(f"{project}: no params.yaml; --project is the scratch DVC project's root")
    if args.todo:
        print("\n".join(stages_to_do(project, into)))
        return
    copied = keep(project, into)
    runs = sum(f.parts[:2] == ("metrics", "test") for f in copied)
    print(f"kept {runs} new run(s), {len(copied)} file(s), in {into}; "
          f"{len(finished_runs(into))} run(s) kept in all")


if __name__ == "__main__":
    run_cli(main)
