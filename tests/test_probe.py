"""bench.probe: flipped predictions are flipped back onto the right pixels, and scores pool correctly."""
import numpy as np
import torch

from bench.probe import probe_split
from seglib.metrics import scores


class Pointwise(torch.nn.Module):
    """Foreground wherever the normalised intensity is positive: a per-pixel rule, so it commutes with flips."""

    def forward(self, x):
        return torch.cat([-x, x], dim=1) * 50


def arrays():
    images = np.zeros((3, 16, 20), np.uint8)
    masks = np.zeros((3, 16, 20), np.uint8)
    images[0, 1:5, 2:9] = masks[0, 1:5, 2:9] = 1           # off-centre: a wrong flip-back would miss it
    images[1, 10:15, 12:19] = masks[1, 10:15, 12:19] = 1
    images[2, 3:6, 15:17] = 1                              # 6 pixels visible, the 4 at 8:10, 0:2 not
    masks[2, 3:6, 15:17] = masks[2, 8:10, 0:2] = 1
    return {"images": images * 200, "masks": masks, "names": np.array(["a_1.png", "b_1.png", "b_2.png"])}


def test_flips_and_thresholds_score_the_same_pixels_as_plain_prediction():
    units = {"a_1.png": "a", "b_1.png": "b", "b_2.png": "b"}
    matrices, subject_dice = probe_split(Pointwise(), {"mean": 0.1, "std": 1.0}, arrays(), units, every=1)
    assert set(matrices) == {"plain", "hflip", "hvflip", "fg > 0.3", "fg > 0.4", "fg > 0.6", "fg > 0.7"}
    for matrix in matrices.values():
        assert matrix.tolist() == matrices["plain"].tolist()
    # foreground: 28 + 35 + 6 true positives, 0 false positives, 4 missed
    assert matrices["plain"][1].tolist() == [4, 69]
    assert matrices["plain"][0, 1] == 0
    assert scores(matrices["plain"])["fg_dice"] == 2 * 69 / (2 * 69 + 4)
    assert subject_dice["a"] == [1.0]
    assert subject_dice["b"] == [1.0, 2 * 6 / (2 * 6 + 4)]


def test_every_nth_slice():
    matrices, subject_dice = probe_split(Pointwise(), {"mean": 0.1, "std": 1.0}, arrays(),
                                         {"a_1.png": "a", "b_2.png": "b"}, every=2)
    assert matrices["plain"][1].tolist() == [4, 34]
    assert set(subject_dice) == {"a", "b"}
