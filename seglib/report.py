"""The report: the side-by-side table, the paired sentences and the cross-validation section, as
markdown and as one self-contained HTML page."""
import base64
import html
from pathlib import Path

from seglib.compare import COLUMNS
from seglib.crossval import POOLED_KEYS
from seglib.curve import size_label


def format_score(value):
    """A score in a report table: 4 decimals, n/a where undefined (None, or NaN as in the JSON)."""
    return "n/a" if value is None or value != value else f"{value:.4f}"


def crossval_lines(result):
    """The cross-validation section of the report (markdown lines)."""
    models = list(result["models"])
    summaries = [result["models"][m] for m in models]

    def row(title, values):
        return f"| {title} | " + " | ".join(map(format_score, values)) + " |"

    def scored_rows(title, values):  # left out where no model has the score (not scored yet, or not asked for)
        return [row(title, values)] if any(v is not None for v in values) else []

    out = ["## Cross-validation", "",
           f"{result['folds']} folds x {len(result['seeds'])} seed(s); every one of {result['subjects']} subjects "
           "scored once per seed by models that neither trained on it nor chose an epoch on it.", "",
           "| | " + " | ".join(models) + " |", "|" + "---|" * (len(models) + 1)]
    out += [row(f"pooled {key}", [s["pooled"][key] for s in summaries]) for key in POOLED_KEYS]
    out.append(row("pooled fg_dice, post-processed", [s["pooled_postprocessed"]["fg_dice"] for s in summaries]))
    unit = "volume (3D)" if result.get("scored_per") == "volume" else "slice"
    out.append(row(f"mean {unit} fg Dice", [s["slice_fg_dice"]["mean"] for s in summaries]))
    out.append("| its 95% interval (bootstrap by subject) | " + " | ".join(
        "[" + ", ".join(map(format_score, s["slice_fg_dice"]["ci95"])) + "]" for s in summaries) + " |")
    for kind, title in (("pooled", ""), ("pooled_postprocessed", ", post-processed")):
        out += scored_rows(f"seed ensemble pooled fg_dice{title}",
                           [s["seed_ensemble"] and s["seed_ensemble"][kind]["fg_dice"] for s in summaries])
    for fold in summaries[0]["fold_fg_dice"]:
        out.append(row(f"fold {fold} fg_dice (mean of seeds)", [s["fold_fg_dice"][fold] for s in summaries]))
        out.append(row(f"fold {fold} fg_dice, post-processed",
                       [s["fold_fg_dice_postprocessed"][fold] for s in summaries]))
    for key, title in (("fold_sd", "sd between folds (fg Dice)"), ("seed_sd", "sd between seeds (fg Dice)")):
        out.append(row(title, [s[key] for s in summaries]))
    if "convergence" in result:
        out += [f"| {title} | " + " | ".join(cells) + " |" for title, cells in convergence_rows(result["convergence"], models)]
    for fold, first in summaries[0]["seed_study"].items():
        n = len(first["fg_dice_by_seed"])
        for key, title in (("mean", f"fold {fold}: mean fg Dice of {n} seeds"),
                           ("seed_sd", f"fold {fold}: sd between {n} seeds"),
                           ("ensemble_fg_dice", f"fold {fold}: {n} seeds as one ensemble"),
                           ("ensemble_fg_dice_postprocessed", f"fold {fold}: {n}-seed ensemble, post-processed")):
            out += scored_rows(title, [s["seed_study"][fold][key] for s in summaries])
    out += [""] + [f"- {p['verdict']}" for p in result["paired_subject_dice"].values()]
    over = "its volume's 3D Dice" if result.get("scored_per") == "volume" else "mean image Dice over its slices"
    out += ["", f"Per subject ({over} and the seeds), hardest first:", "",
            "| subject | " + " | ".join(models) + " |", "|" + "---|" * (len(models) + 1)]
    subjects = sorted(result["per_subject_dice"][models[0]], key=lambda s: result["per_subject_dice"][models[0]][s])
    out += [row(s, [result["per_subject_dice"][m].get(s) for m in models]) for s in subjects]
    return out


def _spread(value, digits=".1f"):
    """mean [least, most] of a convergence figure over runs; the value alone for one run."""
    if value is None:
        return "-"
    if value["min"] == value["max"]:
        return f"{value['min']:,}"
    return f"{value['mean']:,{digits}} [{value['min']:,}, {value['max']:,}]"


def convergence_rows(spread, models):
    """Table rows: per model the epoch, and the training images seen, at which validation Dice first
    reaches 95 % of the run's best (mean [least, most] over its runs)."""
    return [("epoch reaching 95% of its best val Dice", [_spread(spread[m]["epoch"]) for m in models]),
            ("training images seen by then", [_spread(spread[m]["images_seen"], ".0f") for m in models])]


def curve_lines(curve, models):
    """The learning-curve section of the report (markdown lines)."""
    pairs = list(curve["points"][0]["paired"])
    out = ["## Learning curve", "",
           "Each fold also trained on nested, seeded subsets of its training subjects; every size is tested on the "
           "same subjects, so each size has its own paired comparison by subject.", "",
           "| training subjects | " + " | ".join(f"{m}: mean subject Dice [95%]" for m in models) + " | "
           + " | ".join(f"{p.replace('_minus_', ' - ')} [95%], p" for p in pairs) + " |",
           "|" + "---|" * (1 + len(models) + len(pairs))]
    for point in curve["points"]:
        dice = [point["models"][m]["slice_fg_dice"] for m in models]
        cells = [f"{format_score(d['mean'])} [{format_score(d['ci95'][0])}, {format_score(d['ci95'][1])}]"
                 for d in dice]
        cells += [f"{st['mean_diff']:+.4f} [{st['ci95'][0]:+.4f}, {st['ci95'][1]:+.4f}], {st['p_value']:.3g}"
                  for st in (point["paired"][p] for p in pairs)]
        out.append(f"| {size_label(point)} | " + " | ".join(cells) + " |")
    out += [""] + [f"- {size_label(point)} subjects: {stat['verdict']}" for point in curve["points"]
                   for stat in point["paired"].values()]
    out += [""] + [f"**{answer}**" for answer in curve["answers"].values()]
    out += ["", "Convergence by training subjects (95% of each run's best val Dice; mean [least, most] over folds "
            "and seeds):", "", "| training subjects | " + " | ".join(f"{m}: epoch | {m}: images seen" for m in models)
            + " |", "|" + "---|" * (1 + 2 * len(models))]
    for point in curve["points"]:
        spread = point["convergence"]
        out.append(f"| {size_label(point)} | " + " | ".join(
            f"{_spread(spread[m]['epoch'])} | {_spread(spread[m]['images_seen'], '.0f')}" for m in models) + " |")
    return out


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
    rows.append(["GFLOPs per image (forward, at the input it sees)",
                 *[number_or_map(result["models"][m].get("gflops_per_image")) for m in models]])
    rows.append(["coarsest feature map", *[number_or_map(result["models"][m].get("feature_map")) for m in models]])
    if "convergence" in result:
        rows += [[title, *cells] for title, cells in convergence_rows(result["convergence"], models)]
    compute = result.get("equal_compute")
    if compute:
        budget = compute["budget_tflop"]
        rows.append(["training compute, TFLOPs", *[f"{compute['models'][m]['train_tflop']:g}" for m in models]])
        rows.append([f"best val Dice (fg) within {budget:g} TFLOPs (equal compute)",
                     *[_at_budget(compute["models"][m]) for m in models]])
    return header, rows


def number_or_map(value):
    """A number as written (3.891), a feature map's [h, w] as 16 x 16, '-' where not recorded."""
    if value is None:
        return "-"
    return " x ".join(str(s) for s in value) if isinstance(value, list) else f"{value:g}"


def _at_budget(entry):
    dice = entry["val_fg_dice_at_budget"]
    return "-" if dice is None else f"{format_score(dice)} (epoch {entry['epoch_at_budget']})"


def paired_sentences(result):
    """One sentence per pair of models: the mean per-image (per-volume) Dice difference, its interval and p-value."""
    lines, unit = [], result.get("scored_per", "image")
    for pair, stat in result["paired_image_dice"].items():
        if not stat["n"]:
            continue
        a, b = pair.split("_minus_")
        lo, hi = stat["ci95"]
        lines.append(f"{a} - {b}: mean per-{unit} Dice difference {stat['mean_diff']:+.4f} "
                     f"(95% bootstrap CI {lo:+.4f} to {hi:+.4f}; paired permutation p = {stat['p_value']:.4g}; "
                     f"{stat['n']} test {unit}s from {stat['units']} {stat['unit']}s, resampled by {stat['unit']})")
    return lines


TIMING_NOTE = ("Timings are not part of this report, so identical runs give identical bytes: "
               "see logs/timing/ after a run.")


VOLUME_NOTE = ("The test data are volumes: every plane predicted, each volume scored whole in 3D on its own grid "
               "(per-image rows are per volume, distances in mm from the headers; slice-level scores are under "
               "per_slice in metrics/test/<model>.json).")


def report_markdown(result, figures, title="Model comparison"):
    header, rows = table_rows(result)
    out = [f"# {title}", "", "Test split scores at each image's original size; fg = mean over foreground classes. "
           "Distances in the units of metrics/test/<model>.json (pixels unless evaluate.pixel_spacing or subject_spacing is set). "
           + TIMING_NOTE, ""]
    if result.get("scored_per") == "volume":
        out += [VOLUME_NOTE, ""]
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out += ["", "## Paired difference over test images", ""] + [f"- {s}" for s in paired_sentences(result)]
    if "crossval" in result:
        out += [""] + crossval_lines(result["crossval"])
    if "curve" in result:
        out += [""] + curve_lines(result["curve"], list(result["models"]))
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
    paired = "".join(f"<li>{html.escape(s)}</li>" for s in paired_sentences(result))
    note = TIMING_NOTE + (" " + VOLUME_NOTE if result.get("scored_per") == "volume" else "")
    if "crossval" in result:  # its tables as the markdown text, which reads as a table in plain text
        paired += f"<pre>{html.escape(chr(10).join(crossval_lines(result['crossval'])))}</pre>"
    if "curve" in result:
        paired += f"<pre>{html.escape(chr(10).join(curve_lines(result['curve'], list(result['models']))))}</pre>"
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse}"
            "td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}img{max-width:100%}</style></head>"
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(note)}</p><table><tr>{cells}</tr>{body}</table>"
            f"<h2>Paired difference over test images</h2><ul>{paired}</ul><h2>Figures</h2>{images}</body></html>\n")
