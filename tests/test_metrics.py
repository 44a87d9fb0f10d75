"""Pixel metrics against the hand-worked vectors of notes/metrics.md, and per-image rules."""
import math

import numpy as np
import pytest
import torch

from seglib.metrics import confusion, image_dice, per_image, scores, summarise


def approx(values):
    return pytest.approx(values, abs=1e-6, nan_ok=True)


def test_two_class_vector():
    s = scores([[50, 10], [5, 35]])
    assert s["accuracy"] == approx(0.85)
    assert s["iou"] == approx([0.769231, 0.7])
    assert s["mean_iou"] == approx(0.734615)
    assert s["dice"] == approx([0.869565, 0.823529])
    assert s["mean_dice"] == approx(0.846547)
    assert s["precision"] == approx([0.909091, 0.777778])
    assert s["recall"] == approx([0.833333, 0.875])
    assert s["f1"] == s["dice"]
    assert s["fg_dice"] == approx(0.823529)


def test_absent_class_is_undefined_and_skipped():
    s = scores([[60, 5, 0], [4, 31, 0], [0, 0, 0]])
    assert s["iou"][:2] == approx([0.869565, 0.775])
    assert math.isnan(s["iou"][2])
    assert s["mean_iou"] == approx(0.822283)


def test_predicted_but_absent_class_scores_zero():
    s = scores([[60, 5, 2], [4, 29, 0], [0, 0, 0]])
    assert s["iou"][2] == 0.0
    assert s["precision"][2] == 0.0
    assert math.isnan(s["recall"][2])


def test_confusion_counts_against_set_logic():
    rng = np.random.default_rng(0)
    truth, pred = rng.integers(0, 3, (20, 30)), rng.integers(0, 3, (20, 30))
    m = confusion(truth, pred, 3)
    for g in range(3):
        for p in range(3):
            assert m[g, p] == np.sum((truth == g) & (pred == p))


def _square(size, top, left, side):
    mask = np.zeros(size, bool)
    mask[top:top + side, left:left + side] = True
    return mask


def test_shifted_square_boundary_distances():
    # A 10x10 square and the same square moved 3 columns right: the left/right edges
    # are 3 apart, the top/bottom edges overlap, so directed distances are 0..3.
    truth = _square((40, 40), 10, 10, 10)
    pred = _square((40, 40), 10, 13, 10)
    row = per_image(truth.astype(int), pred.astype(int), 2)[0]
    assert row["status"] == "scored"
    assert row["dice"] == pytest.approx(2 * 70 / 200)
    assert row["iou"] == pytest.approx(70 / 130)
    assert row["hd95"] == pytest.approx(3.0)
    # truth boundary: 36 pixels; columns 10..12 of it are 3,2,1 away from pred's boundary
    # (top/bottom rows) or... computed by brute force below as an independent oracle.
    a = np.argwhere(truth & ~_square((40, 40), 11, 11, 8))
    b = np.argwhere(pred & ~_square((40, 40), 11, 14, 8))
    d = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
    expected = np.concatenate([d.min(1), d.min(0)]).mean()
    assert row["assd"] == pytest.approx(expected)


def test_identical_masks_have_zero_distance_and_spacing_scales():
    truth = _square((30, 30), 5, 5, 8)
    pred = _square((30, 30), 5, 9, 8)  # shifted 4 columns
    px = per_image(truth.astype(int), pred.astype(int), 2)[0]
    mm = per_image(truth.astype(int), pred.astype(int), 2, spacing=(1.0, 0.5))[0]
    assert mm["hd95"] == pytest.approx(px["hd95"] * 0.5)
    same = per_image(truth.astype(int), truth.astype(int), 2)[0]
    assert same["dice"] == 1.0 and same["hd95"] == 0.0 and same["assd"] == 0.0


def test_empty_truth_and_prediction_rules():
    empty, square = np.zeros((20, 20), int), _square((20, 20), 2, 2, 5).astype(int)
    assert per_image(empty, empty, 2)[0]["status"] == "both_empty"
    miss = per_image(square, empty, 2)[0]
    assert miss["status"] == "miss" and miss["dice"] == 0.0 and math.isnan(miss["hd95"])
    extra = per_image(empty, square, 2)[0]
    assert extra["status"] == "false_positive" and extra["dice"] == 0.0
    rows = [{"image": "a", **per_image(square, square, 2)[0]}, {"image": "b", **miss},
            {"image": "c", **per_image(empty, empty, 2)[0]}]
    summary = summarise(rows)
    assert summary["misses"] == 1 and summary["both_empty"] == 1 and summary["images_scored"] == 2
    assert summary["dice"]["mean"] == pytest.approx(0.5)  # the miss counts as 0, not dropped
    assert summary["hd95"]["n"] == 1
    assert image_dice(rows) == {"a": 1.0, "b": 0.0}


class Bright(torch.nn.Module):
    """Class 1 wherever the (normalised) image is above its mean: predicts the bright square exactly."""

    def forward(self, x):
        return torch.cat([-x, x], 1)


def test_subject_spacing_scales_each_subjects_distances(tmp_path):
    """Two subjects with the same image and mask one pixel off the truth: distances follow each one's spacing."""
    from PIL import Image

    from conftest import tiny_meta
    from seglib.config import EvaluateConfig, build_section
    from seglib.evaluate import ScoredSplit, evaluate_split
    from seglib.inference import Predictor
    image = np.zeros((32, 32), np.uint8)
    image[8:20, 8:20] = 255
    mask = np.zeros((32, 32), np.uint8)
    mask[9:21, 8:20] = 255  # shifted one row: HD95 1 pixel
    for name in ("A_1.png", "B_1.png"):
        Image.fromarray(mask).save(tmp_path / name)
    split = ScoredSplit({"images": np.stack([image, image]), "sizes": np.array([(32, 32), (32, 32)])},
                        [("A_1.png", "A_1.png"), ("B_1.png", "B_1.png")], tmp_path, {"A_1.png": "A", "B_1.png": "B"})
    predictor = Predictor(Bright(), tiny_meta(mean=0.5, std=0.5), torch.device("cpu"))
    cfg = build_section(EvaluateConfig, {"pixel_spacing": [0.5, 0.5], "subject_spacing": {"B": [3.0, 2.0]}}, "evaluate")
    raw, _ = evaluate_split(predictor, split, cfg.spacing)
    hd95 = {row["image"]: row["hd95"] for row in raw.rows}
    assert hd95 == {"A_1.png": pytest.approx(0.5), "B_1.png": pytest.approx(3.0)}  # one row off: the row spacing
    # a subject with no entry and no pixel_spacing fails before anything is scored
    only_b = build_section(EvaluateConfig, {"subject_spacing": {"B": [3.0, 2.0]}}, "evaluate")
    with pytest.raises(Exception, match=r"evaluate.subject_spacing: no entry for subject 'A'"):
        evaluate_split(predictor, split, only_b.spacing)


def test_subject_spacing_entries_are_checked_and_copies_share_one():
    from seglib.config import EvaluateConfig, build_section
    from seglib.errors import SegError
    with pytest.raises(SegError, match=r"evaluate.subject_spacing.Case04: expected \[row_mm, col_mm\] > 0, got \[1.0\]"):
        build_section(EvaluateConfig, {"subject_spacing": {"Case04": [1.0]}}, "evaluate")
    with pytest.raises(SegError, match=r"evaluate.subject_spacing.Case04: expected a list of numbers"):
        build_section(EvaluateConfig, {"subject_spacing": {"Case04": "1mm"}}, "evaluate")
    cfg = build_section(EvaluateConfig, {"pixel_spacing": [1.5, 1.5],
                                         "subject_spacing": {"Case18": [1.0, 1.0], "Case19": [2.0, 2.0]}}, "evaluate")
    assert cfg.spacing("Case01") == (1.5, 1.5) and cfg.spacing("Case18") == (1.0, 1.0) and cfg.in_mm
    with pytest.raises(SegError, match=r"Case18\+Case19 are copies of one scan but their entries differ"):
        cfg.spacing("Case18+Case19")
    assert not build_section(EvaluateConfig, {}, "evaluate").in_mm

