"""predict: masks in the dataset's own gray values at each image's original size."""
import numpy as np
import pytest
from PIL import Image

from conftest import run_module, tiny_meta
from seglib.checkpoint import save_checkpoint
from seglib.config import UNetConfig
from seglib.models import build_model

GRAYS = [0, 128, 255]


@pytest.fixture
def checkpoint(tmp_path):
    cfg = UNetConfig(width=4)
    model = build_model(cfg, 3)
    save_checkpoint(tmp_path / "model.pt", model, cfg, tiny_meta(GRAYS, mean=0.3, std=0.2), "unet")
    return tmp_path / "model.pt"


def test_predict_round_trip_keeps_gray_values_and_sizes(tmp_path, checkpoint):
    images = tmp_path / "in"
    images.mkdir()
    sizes = {"a.png": (50, 70), "b.jpg": (33, 20), "c.tif": (64, 64)}
    for name, (h, w) in sizes.items():
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w)).astype(np.uint8)).save(images / name)
    Image.fromarray((np.arange(40 * 30).reshape(40, 30) * 40).astype(np.uint16)).save(images / "d.png")
    result = run_module("seglib", "predict", "--checkpoint", checkpoint, "--input", images,
                        "--output", tmp_path / "out", "--overlays", tmp_path / "ov", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    sizes["d.png"] = (40, 30)
    for name, (h, w) in sizes.items():
        mask = np.asarray(Image.open(tmp_path / "out" / (name.rsplit(".", 1)[0] + ".png")))
        assert mask.shape == (h, w)
        assert set(np.unique(mask).tolist()) <= set(GRAYS)
        assert (tmp_path / "ov" / (name.rsplit(".", 1)[0] + ".png")).is_file()


def test_unreadable_file_is_skipped_and_reported(tmp_path, checkpoint):
    images = tmp_path / "in"
    images.mkdir()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(images / "good.png")
    (images / "bad.png").write_bytes(b"not a png")
    result = run_module("seglib", "predict", "--checkpoint", checkpoint, "--input", images,
                        "--output", tmp_path / "out", "--device", "cpu")
    assert result.returncode == 1
    assert "skipped" in result.stderr and "bad.png" in result.stderr and "cannot decode image" in result.stderr
    assert (tmp_path / "out" / "good.png").is_file() and not (tmp_path / "out" / "bad.png").exists()


def test_mismatched_checkpoint_is_rejected(tmp_path, checkpoint):
    import torch
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["settings"]["width"] = 8
    torch.save(ckpt, tmp_path / "wrong.pt")
    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "in" / "x.png")
    result = run_module("seglib", "predict", "--checkpoint", tmp_path / "wrong.pt", "--input", tmp_path / "in",
                        "--output", tmp_path / "out")
    assert result.returncode == 2
    assert "wrong.pt: weights do not fit a unet with 3 classes" in result.stderr
    assert not (tmp_path / "out").exists()


def test_flips_and_batches_give_one_mask_per_image_in_the_dataset_grays(tmp_path, checkpoint):
    """More images than one batch (the checkpoint's batch size is 8), with test-time flips, from the library call."""
    from seglib.predict import PredictOptions, predict_folder
    images = tmp_path / "in"
    images.mkdir()
    rng = np.random.default_rng(1)
    sizes = {f"s{i:02d}.png": (20 + i, 30 - i) for i in range(11)}
    for name, size in sizes.items():
        Image.fromarray(rng.integers(0, 255, size).astype(np.uint8)).save(images / name)
    plain, flipped = tmp_path / "plain", tmp_path / "flipped"
    assert predict_folder(PredictOptions((checkpoint,), "cpu"), images, {"--output": plain}) == []
    assert predict_folder(PredictOptions((checkpoint,), "cpu", ("h", "v")), images, {"--output": flipped}) == []
    import matplotlib.pyplot as plt
    overlays = {"--output": tmp_path / "with_overlays", "--overlays": tmp_path / "overlays"}
    assert predict_folder(PredictOptions((checkpoint,), "cpu"), images, overlays) == []
    assert len(list((tmp_path / "overlays").iterdir())) == len(sizes)
    assert plt.get_fignums() == []  # every overlay's figure closed: memory stays flat with the number of images
    for name, size in sizes.items():
        for folder in (plain, flipped):
            mask = np.asarray(Image.open(folder / name))
            assert mask.shape == size and set(np.unique(mask).tolist()) <= set(GRAYS)
    result = run_module("seglib", "predict", "--checkpoint", checkpoint, "--input", images,
                        "--output", tmp_path / "cli", "--flips", "h", "v", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert all((np.asarray(Image.open(tmp_path / "cli" / n)) == np.asarray(Image.open(flipped / n))).all()
               for n in sizes)
