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
    result = {"models": summaries, "ahead": ahead, "paired_image_dice": paired, "per_subject_dice": per_subject}
    if any(t.get("scored_per") == "volume" for t in test_metrics.values()):
        result["scored_per"] = "volume"  # the "images" above are whole volumes, scored in 3D
    return result
