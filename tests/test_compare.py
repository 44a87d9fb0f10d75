"""compare for any number of models: the table, the leaders, the pairs and both reports."""
import pytest

from seglib.compare import compare_models
from seglib.config import CompareConfig
from seglib.report import report_html, report_markdown


def _inputs(name, dice_by_image, epoch):
    train = {"best_epoch": epoch, "parameters": 1000 * epoch, "val": {"fg_dice": sum(dice_by_image) / 4}}
    per = {"mean": sum(dice_by_image) / 4, "median": 0.5, "p5": 0.1, "n": 4}
    test = {"fg_dice": sum(dice_by_image) / 4, "fg_iou": 0.5, "mean_dice": 0.7, "accuracy": 0.9,
            "per_image": {"dice": per, "hd95": {**per, "median": 10.0 - epoch}, "assd": per, "misses": 0},
            "postprocessed": {"fg_dice": sum(dice_by_image) / 4 + 0.01, "rules": ["largest component"]}}
    rows = [{"image": f"im{i}", "subject": f"s{i // 2}", "status": "scored", "dice": d}
            for i, d in enumerate(dice_by_image)]
    return train, test, rows


def test_three_models_are_compared_pairwise(tmp_path):
    models = {"unet": ([0.9, 0.8, 0.85, 0.95], 3), "deeplabv3": ([0.7, 0.6, 0.65, 0.75], 5),
              "unet_wide": ([0.9, 0.8, 0.85, 0.95], 4)}
    train, test, rows = {}, {}, {}
    for name, (dice, epoch) in models.items():
        train[name], test[name], rows[name] = _inputs(name, dice, epoch)
    result = compare_models(train, test, rows, {}, CompareConfig(bootstrap=200, permutations=200))
    assert set(result["paired_image_dice"]) == {"unet_minus_deeplabv3", "unet_minus_unet_wide",
                                                "deeplabv3_minus_unet_wide"}
    assert result["paired_image_dice"]["unet_minus_deeplabv3"]["mean_diff"] == pytest.approx(0.2)
    assert result["paired_image_dice"]["unet_minus_deeplabv3"]["units"] == 2  # two subjects
    assert result["ahead"]["test_fg_dice"] == "tie: unet, unet_wide"
    assert result["ahead"]["test_hd95_median"] == "deeplabv3"  # lower is better
    figure = tmp_path / "dice.png"
    figure.write_bytes(b"\x89PNG fake")
    markdown = report_markdown(result, ["dice.png"])
    assert "| test Dice (fg) | 0.8750 | 0.6750 | 0.8750 |" in markdown
    assert "| test Dice (fg), post-processed | 0.8850 | 0.6850 | 0.8850 |" in markdown
    assert "| post-processing (chosen on validation) | largest component | largest component |" in markdown
    assert "time" not in markdown.split("## Paired")[0].split("\n|", 1)[1]  # no run-dependent rows
    html = report_html(result, [figure])
    assert html.count("<tr>") == 1 + 16 and "data:image/png;base64," in html
