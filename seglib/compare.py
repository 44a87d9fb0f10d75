"""One table from the per-model results, the paired test, and the report (markdown and HTML)."""
import base64
import html
import itertools
from pathlib import Path

from seglib.crossval import format_score, report_lines
from seglib.metrics import image_dice, subject_means
from seglib.stats import paired_difference

# (key in the summary, column title, True when higher is better)
COLUMNS = (("val_fg_dice", "val Dice (fg)", True), ("test_fg_dice", "test Dice (fg)", True),
           ("test_fg_dice_postprocessed", "test Dice (fg), post-processed", True),
           ("test_fg_iou", "test IoU (fg)", True), ("test_mean_dice", "test Dice (all classes)", True),
           ("test_accuracy", "test pixel accuracy", True), ("test_dice_median", "median image Dice", True),
           ("test_dice_p5", "5th pct image Dice", True), ("test_hd95_median", "median HD95", False),
           ("test_assd_mean", "mean ASSD", False), ("test_misses", "images with a class missed", False))


def model_summary(train_metrics, test_metrics):
    per_image = test_metrics["per_image"]
    return {"best_epoch": train_metrics["best_epoch"], "parameters": train_metrics["parameters"],
            "val_fg_dice": train_metrics["val"]["fg_dice"], "test_fg_dice": test_metrics["fg_dice"],
            "test_fg_iou": test_metrics["fg_iou"], "test_mean_dice": test_metrics["mean_dice"],
            "test_accuracy": test_metrics["accuracy"], "test_dice_median": per_image["dice"]["median"],
            "test_dice_p5": per_image["dice"]["p5"], "test_hd95_median": per_image["hd95"]["median"],
            "test_assd_mean": per_image["assd"]["mean"], "test_misses": per_image["misses"],
            # chosen on validation when the model was trained (seglib.postprocess)
            "test_fg_dice_postprocessed": test_metrics["postprocessed"]["fg_dice"],
            "postprocess": "; ".join(test_metrics["postprocessed"]["rules"])}


def _leader(summaries, key, higher_better):
    scored = {m: s[key] for m, s in summaries.items() if s[key] is not None}
    if not scored:
        return None
    best = (max if higher_better else min)(scored.values())
    leaders = sorted(m for m, v in scored.items() if v == best)
    return leaders[0] if len(leaders) == 1 else "tie: " + ", ".join(leaders)


def compare_models(train_metrics, test_metrics, per_image_rows, cmp_cfg):
    """{models: per-model summary, ahead: leader per column, paired: per-image Dice differences per pair,
    per_subject_dice: per model, each test subject's mean image Dice}."""
    summaries = {m: model_summary(train_metrics[m], test_metrics[m]) for m in train_metrics}
    per_subject = {m: subject_means(image_dice(rows), {r["image"]: r["subject"] for r in rows})
                   for m, rows in per_image_rows.items()}
    paired = {}
    for a, b in itertools.combinations(summaries, 2):
        dice_a, dice_b = image_dice(per_image_rows[a]), image_dice(per_image_rows[b])
        common = sorted(set(dice_a) & set(dice_b))
        subject = {row["image"]: str(row["subject"]) for row in per_image_rows[a]}
        paired[f"{a}_minus_{b}"] = paired_difference(
            [dice_a[i] for i in common], [dice_b[i] for i in common], [subject[i] for i in common],
            cmp_cfg.bootstrap, cmp_cfg.permutations, cmp_cfg.seed)
    ahead = {key: _leader(summaries, key, better) for key, _, better in COLUMNS}
    return {"models": summaries, "ahead": ahead, "paired_image_dice": paired, "per_subject_dice": per_subject}


def _fmt(value):
    return format_score(value) if value is None or isinstance(value, float) else str(value)


def table_rows(result):
    """Header and rows of the side-by-side table (one column per model)."""
    models = list(result["models"])
    header = ["", *models]
    rows = [[title, *[_fmt(result["models"][m][key]) for m in models]] for key, title, _ in COLUMNS]
    rows.append(["post-processing (chosen on validation)", *[result["models"][m]["postprocess"] for m in models]])
    rows.append(["best epoch", *[str(result["models"][m]["best_epoch"]) for m in models]])
    rows.append(["parameters", *[f"{result['models'][m]['parameters']:,}" for m in models]])
    return header, rows


def _paired_sentences(result):
    lines = []
    for pair, stat in result["paired_image_dice"].items():
        if not stat["n"]:
            continue
        a, b = pair.split("_minus_")
        lo, hi = stat["ci95"]
        lines.append(f"{a} - {b}: mean per-image Dice difference {stat['mean_diff']:+.4f} "
                     f"(95% bootstrap CI {lo:+.4f} to {hi:+.4f}; paired permutation p = {stat['p_value']:.4g}; "
                     f"{stat['n']} test images from {stat['units']} {stat['unit']}s, resampled by {stat['unit']})")
    return lines


TIMING_NOTE = ("Timings are not part of this report, so identical runs give identical bytes: "
               "see logs/timing/ after a run.")


def report_markdown(result, figures, title="Model comparison"):
    header, rows = table_rows(result)
    out = [f"# {title}", "", "Test split scores at each image's original size; fg = mean over foreground classes. "
           "Distances in the units of metrics/test/<model>.json (pixels unless evaluate.pixel_spacing or subject_spacing is set). "
           + TIMING_NOTE, "",
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out += ["", "## Paired difference over test images", ""] + [f"- {s}" for s in _paired_sentences(result)]
    if "crossval" in result:
        out += [""] + report_lines(result["crossval"])
    out += ["", "## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures]
    return "\n".join(out) + "\n"


def report_html(result, figure_files, title="Model comparison"):
    """The same report as one self-contained HTML file: figures embedded, no network needed."""
    header, rows = table_rows(result)
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    images = "".join(
        f'<figure><img alt="{html.escape(Path(f).stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(Path(f).read_bytes()).decode()}"><figcaption>{html.escape(Path(f).stem)}</figcaption></figure>'
        for f in figure_files)
    paired = "".join(f"<li>{html.escape(s)}</li>" for s in _paired_sentences(result))
    if "crossval" in result:  # its tables as the markdown text, which reads as a table in plain text
        paired += f"<pre>{html.escape(chr(10).join(report_lines(result['crossval'])))}</pre>"
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}img{max-width:100%}</style></head>"
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(TIMING_NOTE)}</p><table><tr>{cells}</tr>{body}</table>"
            f"<h2>Paired difference over test images</h2><ul>{paired}</ul><h2>Figures</h2>{images}</body></html>\n")
