"""bench.probe: flipped predictions are flipped back onto the right pixels, scores pool correctly,
and whole-object errors are counted by connected component."""
import numpy as np
import torch

from bench.probe import components, off_target, probe_split, variants_of
from conftest import tiny_meta
from seglib.inference import Predictor
from seglib.metrics import scores


class Pointwise(torch.nn.Module):
    """Foreground wherever the normalised intensity is positive: a per-pixel rule, so it commutes with flips."""

    def forward(self, x):
        return torch.cat([-x, x], dim=1) * 50


def _variants():
    return variants_of(Predictor(Pointwise(), tiny_meta(mean=0.1, std=1.0), torch.device("cpu")))


def arrays():
    images = np.zeros((3, 16, 20), np.uint8)
    masks = np.zeros((3, 16, 20), np.uint8)
    images[0, 1:5, 2:9] = masks[0, 1:5, 2:9] = 1           # off-centre: a wrong flip-back would miss it
    images[1, 10:15, 12:19] = masks[1, 10:15, 12:19] = 1
    images[1, 0:2, 0:3] = 1                                # an extra object of 6 pixels
    images[2, 3:6, 15:17] = 1                              # 6 pixels visible, the 4 at 8:10, 0:2 not
    masks[2, 3:6, 15:17] = masks[2, 8:10, 0:2] = 1
    return {"images": images * 200, "masks": masks, "names": np.array(["a_1.png", "b_1.png", "b_2.png"])}


def test_flips_and_thresholds_score_the_same_pixels_as_plain_prediction():
    units = {"a_1.png": "a", "b_1.png": "b", "b_2.png": "b"}
    matrices, objects, subject_dice = probe_split(_variants(), arrays(), units, every=1)
    assert set(matrices) == {"plain", "hflip", "hvflip", "fg > 0.3", "fg > 0.4", "fg > 0.6", "fg > 0.7"}
    for matrix in matrices.values():
        assert matrix.tolist() == matrices["plain"].tolist()
    # foreground: 28 + 35 + 6 true positives, 6 false positives, 4 missed
    assert matrices["plain"][1].tolist() == [4, 69]
    assert matrices["plain"][0, 1] == 6
    assert scores(matrices["plain"])["fg_dice"] == 2 * 69 / (2 * 69 + 6 + 4)
    assert objects == {"extra objects": 1, "extra pixels": 6, "missed objects": 1, "missed pixels": 4,
                       "tp": 69, "fp": 6, "fn": 4}
    assert subject_dice["a"] == [1.0]
    assert subject_dice["b"] == [2 * 35 / (2 * 35 + 6), 2 * 6 / (2 * 6 + 4)]


def test_every_nth_slice():
    matrices, objects, subject_dice = probe_split(_variants(), arrays(),
                                                  {"a_1.png": "a", "b_2.png": "b"}, every=2)
    assert matrices["plain"][1].tolist() == [4, 34]
    assert set(subject_dice) == {"a", "b"}


def test_components_are_8_connected_and_off_target_uses_overlap():
    mask = np.array([[1, 0, 0, 1],
                     [0, 1, 0, 1],
                     [0, 0, 0, 0],
                     [1, 1, 0, 0]], bool)
    masks = np.stack([mask, mask])
    labels = components(masks)
    assert len(np.unique(labels[masks])) == 6 and (labels[~masks] == 0).all()   # unique over the batch
    assert labels[0, 0, 0] == labels[0, 1, 1]                 # diagonal neighbours join
    other = np.zeros_like(masks)
    other[:, 0, 3] = True                                     # half of the right-hand pair: on target
    assert off_target(masks, other) == (4, 8)                 # per image: the diagonal pair and the bottom pair
