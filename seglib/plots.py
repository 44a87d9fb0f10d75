"""Figures and DVC plot records. Draws the rows it is given; computes no metrics."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

COLOURS = np.array([[0, 0, 0], [255, 64, 64], [64, 160, 255], [255, 200, 0], [0, 220, 120],
                    [200, 80, 255], [255, 128, 0], [0, 200, 200]], dtype=np.float32) / 255.0


def _class_colour(c):
    return COLOURS[1 + (c - 1) % (len(COLOURS) - 1)]


def label_overlay(image01, ids, alpha=0.45):
    """RGB image with each foreground class tinted in its own colour."""
    rgb = np.repeat(image01[..., None], 3, axis=2)
    for c in np.unique(ids):
        if c:
            rgb[ids == c] = (1 - alpha) * rgb[ids == c] + alpha * _class_colour(int(c))
    return rgb


def error_overlay(image01, truth, pred):
    """Truth vs prediction on the image: agreement yellow, missed (truth only) green, extra (prediction only) red."""
    rgb = np.repeat(image01[..., None], 3, axis=2) * 0.8
    t, p = truth > 0, pred > 0
    wrong_class = t & p & (truth != pred)
    for where, colour in ((t & p & ~wrong_class, (1.0, 0.85, 0.0)), (t & ~p, (0.0, 0.9, 0.2)),
                          (p & ~t, (1.0, 0.1, 0.1)), (wrong_class, (0.7, 0.2, 1.0))):
        rgb[where] = 0.45 * rgb[where] + 0.55 * np.array(colour)
    return rgb


def samples_figure(images, masks, names, columns=4):
    """The original's trainSetVis: preprocessed training samples with their masks overlaid."""
    n = len(images)
    rows = (n + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, mask, name in zip(axes.ravel(), images, masks, names):
        ax.imshow(label_overlay(image.astype(np.float32) / 255.0, mask))
        ax.set_title(name, fontsize=8)
    fig.tight_layout()
    return fig


def best_worst_figure(entries, title):
    """One row per entry (name, image01, truth, pred, dice): image | truth vs prediction."""
    fig, axes = plt.subplots(len(entries), 2, figsize=(7, 3.3 * len(entries)), squeeze=False)
    for (name, image, truth, pred, dice, label), (ax_img, ax_cmp) in zip(entries, axes):
        ax_img.imshow(image, cmap="gray", vmin=0, vmax=1)
        ax_img.set_title(f"{label}: {name}", fontsize=8)
        ax_cmp.imshow(error_overlay(image, truth, pred))
        ax_cmp.set_title(f"Dice {dice:.3f}  (yellow both, green missed, red extra)", fontsize=8)
        ax_img.axis("off")
        ax_cmp.axis("off")
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    return fig


def comparison_figure(histories, metric):
    """The original's comparison figure: train and validation panels, one curve per model."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, part in zip(axes, ("train", "val")):
        for model, rows in histories.items():
            ax.plot([int(r["epoch"]) for r in rows], [float(r[f"{part}_{metric}"]) for r in rows],
                    marker="o", markersize=3, label=model)
        ax.set_title(f"{'train' if part == 'train' else 'validation'} {metric}"
                     + ("" if metric in ("loss", "accuracy") else " (foreground mean)"))
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def compute_figure(curves, budget):
    """Validation Dice against training compute (TFLOPs), one curve per model: who learns more per
    unit of work, with the cheapest run's total (the equal-compute budget) marked."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for model, points in curves.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=model)
    ax.axvline(budget, color="gray", linestyle="--", linewidth=0.8, label="equal-compute budget")
    return _labelled(fig, ax, "training compute, TFLOPs (3 x forward FLOPs x images seen)",
                     "validation Dice (foreground mean)", "Validation Dice at equal training compute")


def _labelled(fig, ax, xlabel, ylabel, title):
    """One panel's labels, grid and legend, laid out."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def learning_curve_figure(points, models):
    """Mean subject Dice against training subjects (log scale), one line per model with its 95% band."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    x = [p["train_subjects"] for p in points]
    for model in models:
        dice = [p["models"][model]["slice_fg_dice"] for p in points]
        line, = ax.plot(x, [d["mean"] for d in dice], marker="o", label=model)
        ax.fill_between(x, [d["ci95"][0] for d in dice], [d["ci95"][1] for d in dice], color=line.get_color(), alpha=0.2)
    ax.set_xscale("log", base=2)
    ax.set_xticks(x, [f"all\n({n:g})" if p.get("all") else str(n) for n, p in zip(x, points)])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    return _labelled(fig, ax, "training subjects per fold", "mean subject Dice (foreground), out of fold",
                     "Learning curve (bands: 95% bootstrap interval by subject)")


def convergence_figure(runs, marks, fraction):
    """Validation Dice against training images seen, one line per run (every fold and seed), a colour
    per model, each run's point of convergence (`marks`: per model, per run {images_seen, epoch} or
    None) as a dot."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (model, logs) in enumerate(runs.items()):
        for k, (rows, mark) in enumerate(zip(logs, marks[model])):
            seen = [int(r["images_seen"]) for r in rows]
            dice = [float(r["val_dice"]) for r in rows]
            ax.plot(seen, dice, color=f"C{i}", alpha=0.7, linewidth=1, label=model if k == 0 else None)
            if mark is not None:
                ax.plot(mark["images_seen"], dice[mark["epoch"] - 1], "o", color=f"C{i}", markersize=4)
    return _labelled(fig, ax, "training images seen", "validation Dice (foreground mean)",
                     f"Convergence: dots where a run first reaches {fraction:.0%} of its best")


def subject_differences_figure(per_subject, a, b):
    """Per subject, model a's mean image Dice minus model b's, sorted: where each model fails."""
    subjects = sorted(set(per_subject[a]) & set(per_subject[b]), key=lambda s: per_subject[a][s] - per_subject[b][s])
    diffs = [per_subject[a][s] - per_subject[b][s] for s in subjects]
    fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(subjects) + 2), 4))
    ax.bar(range(len(subjects)), diffs, color=["#c0392b" if d < 0 else "#2e86c1" for d in diffs])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(subjects)), subjects, rotation=90, fontsize=7)
    ax.set_ylabel(f"Dice {a} - {b}")
    ax.set_title(f"Per-subject paired difference, out-of-fold ({len(subjects)} subjects; above 0: {a} better)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def confusion_records(matrix, class_names, total=2000):
    """Rows {actual, predicted} for DVC's confusion template, in proportion to the pixel counts.

    DVC counts one record per row, so pixels are scaled to `total` records by
    largest remainder; any non-zero cell keeps at least one record.
    """
    m = np.asarray(matrix, dtype=np.float64)
    share = m / max(m.sum(), 1) * total
    counts = np.floor(share).astype(int)
    order = np.argsort(-(share - counts), axis=None, kind="stable")
    for flat in order[: max(total - counts.sum(), 0)]:
        counts.flat[flat] += 1
    counts[(m > 0) & (counts == 0)] = 1
    return [{"actual": class_names[g], "predicted": class_names[p]}
            for g in range(len(m)) for p in range(len(m)) for _ in range(counts[g, p])]
