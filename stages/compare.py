"""compare: the headline, the comparison figures, metrics/compare.json and the report, for every model in params.

python -m stages.compare --train-metrics metrics/train --train-logs plots/train --test-metrics metrics/test
    --per-image plots/eval --headline metrics/eval.json --metrics metrics/compare.json --figures plots/compare
    --subjects plots/subjects --report reports/report.md --html reports/report.html

--subjects gets <model>.csv per model (each test subject's mean image Dice; with
cross-validation also cv_<model>.csv over every subject), drawn side by side by
dvc.yaml's top-level plots.

The headline is the test metrics of params' top-level `model`, copied to
--headline: changing `model` reruns this stage alone.
"""
import argparse
import itertools
import os
from pathlib import Path

from seglib import config
from seglib.compare import compare_models, training_compute
from seglib.crossval import pool, read_curve_runs, read_logs, read_runs
from seglib.curve import CONVERGED, convergence, convergence_spread, learning_curve
from seglib.epochlog import read_epoch_log
from seglib.errors import run_cli
from seglib.io import read_csv, read_json, save_figure, write_csv, write_json, write_text
from seglib.metrics import EPOCH_METRICS
from seglib.plots import (comparison_figure, compute_figure, convergence_figure, learning_curve_figure,
                          subject_differences_figure)
from seglib.report import report_html, report_markdown


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--train-metrics", "--train-logs", "--test-metrics", "--per-image", "--headline",
                 "--metrics", "--figures", "--subjects", "--report", "--html"):
        parser.add_argument(name, required=True)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args(argv)
    params = config.load_params(args.params)
    names, cmp_cfg = list(config.models(params)), config.section(params, "compare")
    train = {m: read_json(Path(args.train_metrics) / f"{m}.json") for m in names}
    test = {m: read_json(Path(args.test_metrics) / f"{m}.json") for m in names}
    rows = {m: read_csv(Path(args.per_image) / f"{m}.csv") for m in names}
    histories = {m: read_epoch_log(Path(args.train_logs) / m) for m in names}
    result = compare_models(train, test, rows, histories, cmp_cfg)
    figures = []
    for metric in (m for m in EPOCH_METRICS if m != "f1"):  # F1 is Dice
        path = Path(args.figures) / f"{metric}.png"
        save_figure(comparison_figure(histories, metric), path)
        figures.append(path)
    if result["equal_compute"] is not None:
        path = Path(args.figures) / "val_dice_by_compute.png"
        save_figure(compute_figure({m: training_compute(histories[m], result["models"][m]["gflops_per_image"])
                                    for m in names}, result["equal_compute"]["budget_tflop"]), path)
        figures.append(path)
    result["convergence"] = convergence_spread({m: [histories[m]] for m in names})
    cv_cfg = config.section(params, "crossval")
    runs = {m: [histories[m]] for m in names}  # the convergence figure's: the hold-out runs, or every fold's
    if cv_cfg.folds:
        cv_test, cv_rows, ensembles = read_runs(args.test_metrics, args.per_image, names, cv_cfg)
        result["crossval"] = pool(cv_test, cv_rows, cv_cfg, cmp_cfg, names, ensembles)
        runs = read_logs(args.train_logs, names, cv_cfg)
        result["crossval"]["convergence"] = convergence_spread(runs)
        for a, b in itertools.combinations(names, 2):
            path = Path(args.figures) / f"cv_{a}_minus_{b}_by_subject.png"
            save_figure(subject_differences_figure(result["crossval"]["per_subject_dice"], a, b), path)
            figures.append(path)
    if cv_cfg.train_subjects:
        sized = {n: (*read_curve_runs(args.test_metrics, args.per_image, names, cv_cfg, n),
                     read_logs(args.train_logs, names, cv_cfg, n)) for n in cv_cfg.train_subjects}
        k = len(cv_cfg.folds)  # parts differ by at most one subject: the mean training part
        full = result["crossval"]["subjects"] * (k - 2) / k
        result["curve"] = learning_curve(sized, result["crossval"], full, cv_cfg, cmp_cfg, names)
        figures.append(Path(args.figures) / "learning_curve.png")
        save_figure(learning_curve_figure(result["curve"]["points"], names), figures[-1])
    figures.append(Path(args.figures) / "convergence.png")
    marks = {m: [convergence(h) for h in logs] for m, logs in runs.items()}
    save_figure(convergence_figure(runs, marks, CONVERGED), figures[-1])
    per_subject = {m: result["per_subject_dice"][m] for m in names}
    if "crossval" in result:
        per_subject.update({f"cv_{m}": result["crossval"]["per_subject_dice"][m] for m in names})
    for stem, dice in per_subject.items():
        write_csv(Path(args.subjects) / f"{stem}.csv", [{"subject": s, "dice": d} for s, d in dice.items()])
    write_json(args.headline, test[config.headline_model(params)])
    write_json(args.metrics, result)
    report_dir = Path(args.report).parent
    links = [os.path.relpath(f, report_dir) for f in figures]
    links += [os.path.relpath(Path(args.per_image) / f"{m}_best_worst.png", report_dir) for m in names]
    write_text(args.report, report_markdown(result, links))
    embedded = figures + [Path(args.per_image) / f"{m}_best_worst.png" for m in names]
    write_text(args.html, report_html(result, embedded))
    for key, leader in result["ahead"].items():
        print(f"ahead on {key}: {leader}")


if __name__ == "__main__":
    run_cli(main)
