"""The hold-out comparison: one summary per model, the leader of each score, the paired test of image Dice."""
import itertools

from seglib.metrics import image_dice, subject_means
from seglib.stats import paired_difference

# (key in the summary, column title, True when higher is better)
COLUMNS = (("val_fg_dice", "val Dice (fg)", True), ("test_fg_dice", "test Dice (fg)", True),
           ("test_fg_dice_postprocessed", "test Dice (fg), post-processed", True),
           ("test_fg_iou", "test IoU (fg)", True), ("test_mean_dice", "test Dice (all classes)", True),
           ("test_accuracy", "test pixel accuracy", True), ("test_dice_median", "median image Dice", True),
           ("test_dice_p5", "5th pct image Dice", True), ("test_hd95_median", "median HD95", False),
           ("test_assd_mean", "mean ASSD", False), ("test_misses", "images with a class missed", False))


# training compute of one image: forward and backward, the usual 3 x the forward pass's FLOPs. Not
# torch's count of the backward: it counts MobileNetV3's depthwise convolution_backward 4.6x too high
# (34.9 against 7.5 GFLOPs per 224 px image)
TRAIN_FLOPS_PER_FORWARD = 3


def model_summary(train_metrics, test_metrics):
    per_image = test_metrics["per_image"]
    return {"best_epoch": train_metrics["best_epoch"], "parameters": train_metrics["parameters"],
            # absent from train metrics written before the cost was recorded
            "gflops_per_image": train_metrics.get("gflops_per_image"), "feature_map": train_metrics.get("feature_map"),
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


def training_compute(history, gflops):
    """Per epoch of an epoch log: (training TFLOPs spent so far, validation fg Dice)."""
    return [(int(row["images_seen"]) * gflops * TRAIN_FLOPS_PER_FORWARD / 1000, float(row["val_dice"]))
            for row in history]


def equal_compute(histories, summaries):
    """Each model's best validation Dice within the training compute of the cheapest run (the budget):
    "better" at equal cost rather than per epoch. None when an epoch log or cost predates them."""
    if any(s["gflops_per_image"] is None or not histories.get(m) or "images_seen" not in histories[m][0]
           for m, s in summaries.items()):
        return None
    curves = {m: training_compute(histories[m], summaries[m]["gflops_per_image"]) for m in summaries}
    budget = min(curve[-1][0] for curve in curves.values())
    models = {}
    for m, curve in curves.items():
        within = [(dice, epoch) for epoch, (spent, dice) in enumerate(curve, 1) if spent <= budget * (1 + 1e-9)]
        best = max(within, key=lambda d: d[0]) if within else (None, None)
        models[m] = {"train_tflop": _significant(curve[-1][0]), "val_fg_dice_at_budget": best[0],
                     "epoch_at_budget": best[1]}
    return {"budget_tflop": _significant(budget), "models": models}


def _significant(value):
    """6 significant digits: TFLOPs span 1e-4 (tiny test runs) to 1e3 (real ones)."""
    return float(f"{value:.6g}")


def compare_models(train_metrics, test_metrics, per_image_rows, histories, cmp_cfg):
    """{models: per-model summary, ahead: leader per column, paired: per-image Dice differences per pair,
    per_subject_dice: per model, each test subject's mean image Dice, equal_compute: validation Dice
    at the cheapest run's training compute}."""
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
    result = {"models": summaries, "ahead": ahead, "paired_image_dice": paired, "per_subject_dice": per_subject,
              "equal_compute": equal_compute(histories, summaries)}
    if any(t.get("scored_per") == "volume" for t in test_metrics.values()):
        result["scored_per"] = "volume"  # the "images" above are whole volumes, scored in 3D
    return result
