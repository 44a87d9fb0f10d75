"""Post-processing rules on hand-made masks, their choice on validation, and ensembles."""
import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_module, tiny_meta
from seglib import postprocess
from seglib.checkpoint import save_checkpoint
from seglib.config import UNetConfig, VolumeConfig
from seglib.errors import SegError
from seglib.inference import Ensemble, Predictor
from seglib.models import build_model
from seglib.postprocess import ClassRule

CPU = torch.device("cpu")


def blobs(shape, *boxes, value=1):
    """A class-id mask with `value` in each (row, col, height, width) box."""
    mask = np.zeros(shape, np.uint8)
    for r, c, h, w in boxes:
        mask[r:r + h, c:c + w] = value
    return mask


def test_components_are_eight_connected():
    mask = blobs((8, 8), (0, 0, 2, 2), (2, 2, 1, 1), (5, 5, 3, 3)).astype(bool)  # the 1-px box touches a corner
    labels, areas = postprocess.components(mask)
    assert sorted(areas.tolist()) == [5, 9] and labels.max() == 2


def test_each_rule_on_a_hand_made_mask():
    # class 1: components of 12, 6 and 2 px; class 2: one of 4 px, untouched by class 1's rule
    pred = blobs((10, 10), (0, 0, 3, 4), (5, 0, 2, 3), (9, 8, 1, 2))
    pred[5:7, 6:8] = 2
    none = ClassRule()
    assert (postprocess.apply(pred, (none, none)) == pred).all()
    largest = postprocess.apply(pred, (ClassRule("largest"), none))
    assert (largest == 1).sum() == 12 and (largest == 2).sum() == 4 and largest[5, 0] == 0 and largest[9, 8] == 0
    two = postprocess.apply(pred, (ClassRule("max_count", 2.0), none))
    assert (two == 1).sum() == 18 and two[9, 8] == 0
    # at least 5 % of the 100 pixels: the 6- and 12-px components stay, the 2-px one goes
    sized = postprocess.apply(pred, (ClassRule("min_size", 0.05), none))
    assert (sized == two).all()
    small = postprocess.apply(pred, (none, ClassRule("min_size", 0.05)))  # class 2's 4 px < 5 px: removed
    assert (small == 2).sum() == 0 and ((small == 1) == (pred == 1)).all()


def test_min_size_removes_a_class_component_below_the_fraction():
    pred = blobs((10, 10), (0, 0, 2, 2), value=2)
    assert (postprocess.apply(pred, (ClassRule(), ClassRule("min_size", 0.05))) == 0).all()  # 4 px < 5 px
    assert (postprocess.apply(pred, (ClassRule(), ClassRule("min_size", 0.04))) == pred).all()  # 4 px = 4 px kept


def test_candidates_are_learned_from_the_training_masks():
    train = np.stack([blobs((10, 10), (0, 0, 3, 3), (6, 6, 2, 2)), blobs((10, 10), (1, 1, 4, 4))])
    (rules,) = postprocess.candidates(train, 2)
    assert rules == [ClassRule(), ClassRule("min_size", 0.04), ClassRule("max_count", 2.0), ClassRule("largest")]
    only_one = postprocess.candidates(train[1:], 3)
    assert only_one == [[ClassRule(), ClassRule("min_size", 0.16), ClassRule("largest")], [ClassRule()]]


def test_a_rule_that_raises_validation_dice_is_chosen_the_gentlest_on_ties():
    truth = blobs((16, 16), (2, 2, 4, 4))
    pred = truth.copy()
    pred[12:13, 12:14] = 1  # a 2-px false positive
    train = np.stack([blobs((16, 16), (8, 8, 4, 4))])
    rules, report = postprocess.choose([pred], [truth], train, 2)
    # none: 2*16/(18+16); min_size (16/256) and largest both reach 1.0: the gentler, min_size, is chosen
    assert rules == (ClassRule("min_size", 16 / 256),)
    dice = report["classes"][0]["val_dice"]
    assert dice["none"] == pytest.approx(32 / 34) and dice["largest component"] == 1.0
    assert report["val_fg_dice"] == {"raw": pytest.approx(32 / 34), "postprocessed": 1.0}


def test_a_rule_that_lowers_validation_dice_is_not_chosen():
    # validation holds two true vertebrae (16 and 9 px) predicted exactly; training masks show one of 16 px,
    # so "largest" and "min_size" would each delete the 9-px one
    truth = blobs((16, 16), (1, 1, 4, 4), (10, 10, 3, 3))
    train = np.stack([blobs((16, 16), (5, 5, 4, 4))])
    rules, report = postprocess.choose([truth.copy()], [truth], train, 2)
    assert rules == (ClassRule(),)
    dice = report["classes"][0]["val_dice"]
    assert dice["none"] == 1.0 and dice["largest component"] == pytest.approx(32 / 41)
    assert report["val_fg_dice"]["raw"] == report["val_fg_dice"]["postprocessed"] == 1.0


def test_classes_are_chosen_independently():
    truth = blobs((16, 16), (0, 0, 4, 4))
    truth[8:12, 8:12] = 2
    pred = truth.copy()
    pred[14, 0:2] = 2  # a stray piece of class 2 only
    train = np.stack([truth])
    rules, _ = postprocess.choose([pred], [truth], train, 3)
    assert rules[0] == ClassRule() and rules[1].kind == "min_size"


def test_rules_round_trip_and_bad_lists_name_the_key():
    rules = (ClassRule("largest"), ClassRule("min_size", 0.01))
    assert postprocess.from_list(postprocess.to_list(rules), 3, "x") == rules
    with pytest.raises(SegError, match=r"ckpt: postprocess: expected a list of 2 rules"):
        postprocess.from_list([], 3, "ckpt: postprocess")
    with pytest.raises(SegError, match=r"p\[1\]: expected \{kind"):
        postprocess.from_list([{"kind": "none", "value": 0}, {"kind": "none", "value": -1}], 3, "p")


def test_an_ensemble_agrees_on_rules_class_by_class():
    a = (ClassRule("largest"), ClassRule("min_size", 0.1), ClassRule())
    b = (ClassRule("largest"), ClassRule("min_size", 0.2), ClassRule())
    assert postprocess.agreed([a, b]) == (ClassRule("largest"), ClassRule(), ClassRule())


def _predictor(seed, meta, rules=None):
    torch.manual_seed(seed)
    return Predictor(build_model(UNetConfig(width=4), meta.num_classes).eval(), meta, CPU, batch_size=3, rules=rules)


def test_ensemble_probabilities_are_the_mean_of_the_members():
    meta = tiny_meta((0, 128, 255))
    other = tiny_meta((0, 128, 255), mean=0.5, std=0.1)  # members normalise with their own statistics
    members = [_predictor(0, meta), _predictor(1, other)]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (5, 32, 32)).astype(np.uint8)
    sizes = np.array([(32, 32), (40, 20), (32, 32), (17, 50), (64, 64)])
    ensemble = Ensemble(members)
    got = list(ensemble.probabilities(images, sizes))
    one, two = (list(m.probabilities(images, sizes)) for m in members)
    for g, p, q, size in zip(got, one, two, sizes):
        assert g.shape == (3, *size)
        np.testing.assert_allclose(g, (p + q) / 2, rtol=0, atol=1e-7)
        assert not np.allclose(p, q, atol=1e-3)  # the members differ, so the mean is a real combination
    for ids, probs in zip(ensemble.classes(images, sizes), got):
        assert (ids == probs.argmax(0)).all()


def test_ensemble_members_must_read_the_same_input(tmp_path):
    cfg = UNetConfig(width=4)
    save_checkpoint(tmp_path / "a.pt", build_model(cfg, 3), cfg, tiny_meta((0, 128, 255)), "unet")
    save_checkpoint(tmp_path / "b.pt", build_model(cfg, 2), cfg, tiny_meta((0, 255)), "unet")
    with pytest.raises(SegError, match=r"b.pt: prepared with gray_values \(0, 255\), .*a.pt with "
                                       r"\(0, 128, 255\)"):
        Ensemble.load([tmp_path / "a.pt", tmp_path / "b.pt"], CPU)
    # same classes, other size: the message names the preprocessing, not the gray values
    save_checkpoint(tmp_path / "c.pt", build_model(cfg, 3), cfg, tiny_meta((0, 128, 255), (64, 64)), "unet")
    with pytest.raises(SegError, match=r"c.pt: prepared with preprocess .*base_size=\(64, 64\).*a.pt with "
                                       r".*base_size=\(32, 32\)"):
        Ensemble.load([tmp_path / "a.pt", tmp_path / "c.pt"], CPU)
    # volumes sliced along other axes: refused; trained on other planes of the same slicing: one ensemble
    sagittal, coronal = (dataclasses.replace(tiny_meta((0, 128, 255)), volume=VolumeConfig(slice_axis=axis))
                         for axis in ("sagittal", "coronal"))
    foreground = dataclasses.replace(sagittal, volume=VolumeConfig(train_planes="foreground", step=3))
    for name, meta in (("s.pt", sagittal), ("k.pt", coronal), ("f.pt", foreground)):
        save_checkpoint(tmp_path / name, build_model(cfg, 3), cfg, meta, "unet")
    with pytest.raises(SegError, match=r"k.pt: prepared with volume slicing .*coronal.*s.pt with .*sagittal"):
        Ensemble.load([tmp_path / "s.pt", tmp_path / "k.pt"], CPU)
    assert len(Ensemble.load([tmp_path / "s.pt", tmp_path / "f.pt"], CPU).members) == 2


def test_predict_applies_the_checkpoints_rule_and_an_ensemble_the_agreed_one(tmp_path):
    cfg = UNetConfig(width=4)
    meta = tiny_meta((0, 255))
    torch.manual_seed(0)
    model = build_model(cfg, 2).eval()
    image = np.random.default_rng(3).integers(0, 255, (32, 32)).astype(np.uint8)
    # move class 1's bias to the median logit gap, so about half the pixels are class 1, in pieces
    with torch.no_grad():
        logits = Predictor(model, meta, CPU)._scores(image[None], softmax=False)[0]
        model.head.bias[1] += (logits[0] - logits[1]).median()
    save_checkpoint(tmp_path / "largest.pt", model, cfg, meta, "unet", (ClassRule("largest"),))
    save_checkpoint(tmp_path / "raw.pt", model, cfg, meta, "unet")  # the same weights, no rule
    (tmp_path / "in").mkdir()
    Image.fromarray(image).save(tmp_path / "in" / "x.png")
    runs = {"rule": ["--checkpoint", tmp_path / "largest.pt"],
            "off": ["--checkpoint", tmp_path / "largest.pt", "--no-postprocess"],
            "ensemble": ["--checkpoint", tmp_path / "largest.pt", tmp_path / "raw.pt"]}
    masks = {}
    for name, options in runs.items():
        result = run_module("seglib", "predict", *options, "--input", tmp_path / "in", "--output", tmp_path / name,
                            "--device", "cpu")
        assert result.returncode == 0, result.stderr
        masks[name] = np.asarray(Image.open(tmp_path / name / "x.png"))
    raw = (masks["off"] == 255).astype(np.uint8)
    assert len(postprocess.components(raw > 0)[1]) > 1  # the untrained model's mask is in pieces
    assert (masks["rule"] == postprocess.apply(raw, (ClassRule("largest"),)) * 255).all()
    # the members disagree (largest vs none), so the ensemble keeps every piece of the mean prediction
    assert (masks["ensemble"] == masks["off"]).all()
