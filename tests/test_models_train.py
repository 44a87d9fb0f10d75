"""Model shapes, checkpoints, the schedule, and real training on tiny data."""
import math

import numpy as np
import pytest
import torch

from conftest import tiny_meta
from seglib.checkpoint import load_checkpoint, save_checkpoint
from seglib.config import DeepLabV3Config, LibraryConfig, TrainConfig, UNetConfig
from seglib.epochlog import read_epoch_log
from seglib.errors import SegError

CPU = torch.device("cpu")
from seglib.models import build_model
from seglib.postprocess import ClassRule
from seglib.resume import TrainingRun
from seglib.train import cosine_factor, fit
from seglib.transforms import flip_batch, jitter_batch


@pytest.mark.parametrize("cfg", [UNetConfig(width=4), UNetConfig(width=4, norm="instance"),
                                 UNetConfig(width=4, depth=2), UNetConfig(width=4, depth=5),
                                 DeepLabV3Config(),
                                 DeepLabV3Config(input_scale=1.5)])
@pytest.mark.parametrize("size", [(64, 64), (48, 80), (50, 70)])
def test_models_return_logits_at_input_size(cfg, size):
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=3).eval()
    out = model(torch.randn(2, 1, *size))
    assert out.shape == (2, 3, *size)


def test_deeplabv3_backbones_build_offline():
    for backbone in ("resnet50",):
        model = build_model(DeepLabV3Config(backbone=backbone), num_classes=2)
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 2, 32, 32)


@pytest.mark.parametrize("side", [6, 12, 13, 20])
def test_aspp_convolution_equals_the_full_one_on_small_and_large_maps(side):
    from torch import nn

    from seglib.models import AtrousConv2d
    torch.manual_seed(0)
    full = nn.Conv2d(8, 4, 3, padding=12, dilation=12, bias=False)
    atrous = AtrousConv2d(8, 4, 3, padding=12, dilation=12, bias=False)
    atrous.load_state_dict(full.state_dict())
    x = torch.randn(2, 8, side, side, requires_grad=True)
    expected, got = full(x), atrous(x)
    torch.testing.assert_close(got, expected)  # side 13: the outer taps reach the map, the full sum runs
    grads = [torch.autograd.grad(y.square().sum(), (x, m.weight)) for y, m in ((expected, full), (got, atrous))]
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a)


def test_deeplabv3_aspp_runs_centre_taps_and_keeps_torchvisions_weights():
    from torchvision.models import segmentation

    from seglib.models import AtrousConv2d
    model = build_model(DeepLabV3Config(), 2)
    atrous = [m for m in model.modules() if isinstance(m, AtrousConv2d)]
    assert sorted(m.dilation[0] for m in atrous) == [12, 24, 36]
    reference = segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=2,
                                                         aux_loss=False)
    assert {f"net.{k}": v.shape for k, v in reference.state_dict().items()} == \
        {k: v.shape for k, v in model.state_dict().items()}


def test_bn_momentum_is_applied_everywhere():
    model = build_model(DeepLabV3Config(), 2, bn_momentum=0.1)
    momenta = {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert momenta == {0.1}


def test_instance_norm_unet_scores_each_image_on_its_own():
    """With instance norm an image's logits do not depend on its batch mates, in train or eval mode."""
    torch.manual_seed(0)
    model = build_model(UNetConfig(width=4, norm="instance"), 2)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(4, 1, 32, 32)
    for mode in (model.train, model.eval):
        mode()
        alone = model(x[:1])
        assert torch.allclose(model(x)[:1], alone, atol=1e-5)
        assert torch.allclose(model(torch.cat([x[:1], 10 * x[1:]]))[:1], alone, atol=1e-5)


def test_cosine_schedule_matches_the_original_formula():
    assert cosine_factor(0, 10, 0.01) == pytest.approx(1.0)
    assert cosine_factor(5, 10, 0.01) == pytest.approx(0.505)
    assert cosine_factor(10, 10, 0.01) == pytest.approx(0.01)
    assert cosine_factor(3, 10, 0.1) == pytest.approx(((1 + math.cos(math.pi * 0.3)) / 2) * 0.9 + 0.1)


def test_flips_move_image_and_mask_together():
    images = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(8, 1, 1, 1)
    masks = images[:, 0].long()
    gen = torch.Generator().manual_seed(0)
    flipped, flipped_masks = flip_batch(images.clone(), masks.clone(), 1.0, 0.0, gen)
    assert torch.equal(flipped[:, 0].long(), flipped_masks)
    assert torch.equal(flipped, images.flip(-1))


def test_geometric_jitter_keeps_masks_aligned_and_labels_valid():
    images = torch.zeros(4, 1, 40, 40)
    masks = torch.zeros(4, 40, 40, dtype=torch.long)
    images[:, :, 10:30, 12:28], masks[:, 10:30, 12:28] = 1.0, 2
    cfg = TrainConfig(scale_jitter=0.2, rotate_degrees=30.0, intensity_jitter=0.0)
    out_images, out_masks = jitter_batch(images, masks, cfg, torch.Generator().manual_seed(0))
    assert set(out_masks.unique().tolist()) <= {0, 2}
    assert not torch.equal(out_masks, masks)
    # where the warped mask says "object" the warped image is bright: they moved together
    inside = out_images[:, 0][out_masks == 2]
    assert inside.mean() > 0.95


def _tiny_arrays(n, seed):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (n, 32, 32)).astype(np.uint8)
    masks = np.zeros((n, 32, 32), np.uint8)
    for i in range(n):
        top, left = rng.integers(2, 18, 2)
        images[i, top:top + 12, left:left + 12] += 150
        masks[i, top:top + 12, left:left + 12] = 1
    return {"images": images, "masks": masks}


def _fit(epochs=4, arch="unet", precision="fp32"):
    common = {"batch_size": 4, "lr": 3e-3, "precision": precision}
    cfg = UNetConfig(width=8, **common) if arch == "unet" else DeepLabV3Config(**common)
    return fit(_data(16, 8), cfg, TrainConfig(epochs=epochs), CPU, tiny_meta(), TrainingRun("t"))


def _data(train, val):
    return {"train": _tiny_arrays(train, 0), "val": _tiny_arrays(val, 1)}


def test_training_learns_and_is_deterministic():
    first, second = _fit(), _fit()
    assert [r["val_dice"] for r in first.history] == [r["val_dice"] for r in second.history]
    assert first.history[-1]["train_loss"] < first.history[0]["train_loss"]
    assert max(r["val_dice"] for r in first.history) > 0.5
    assert first.best_scores["fg_dice"] == max(r["val_dice"] for r in first.history)
    assert set(first.history[0]) >= {"epoch", "lr", "train_loss", "train_dice", "val_iou", "val_f1", "val_recall"}


def test_bf16_autocast_trains_in_bfloat16_and_keeps_float32_weights():
    seen = []
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, out: seen.append(out.dtype) if isinstance(module, torch.nn.Conv2d) else None)
    try:
        result = _fit(precision="bf16")
    finally:
        hook.remove()
    assert set(seen) == {torch.bfloat16}
    assert {p.dtype for p in result.model.parameters()} == {torch.float32}
    assert max(r["val_dice"] for r in result.history) > 0.5
    assert [r["val_dice"] for r in result.history] == [r["val_dice"] for r in _fit(precision="bf16").history]


def test_model_epochs_override_train_epochs():
    cfg = UNetConfig(width=4, batch_size=4, epochs=2)
    result = fit(_data(8, 4), cfg, TrainConfig(epochs=5), CPU, tiny_meta(), TrainingRun("t"))
    assert [r["epoch"] for r in result.history] == [1, 2]
    assert result.history[1]["lr"] < result.history[0]["lr"]


def test_deeplabv3_trains_one_epoch():
    result = _fit(epochs=1, arch="deeplabv3")
    assert result.best_epoch == 1 and result.parameters > 1_000_000


def test_batch_larger_than_training_set_is_a_clear_error():
    cfg = UNetConfig(width=4, batch_size=32)
    with pytest.raises(SegError, match=r"models.t.batch_size: 32 is larger than the 16 training images"):
        fit(_data(16, 4), cfg, TrainConfig(epochs=1), CPU, tiny_meta(mean=0.0, std=1.0), TrainingRun("t"))


@pytest.mark.parametrize("unet", [{}, {"norm": "instance"}, {"depth": 3}])
def test_checkpoint_round_trip_and_mismatch(tmp_path, unet):
    cfg = UNetConfig(width=4, **unet)
    model = build_model(cfg, 3)
    rules = (ClassRule("largest"), ClassRule("max_count", 5.0))
    save_checkpoint(tmp_path / "m.pt", model, cfg, tiny_meta((0, 1, 2)), "m", rules)
    ckpt = load_checkpoint(tmp_path / "m.pt")
    loaded, settings, meta = ckpt.model, ckpt.settings, ckpt.meta
    assert meta == tiny_meta((0, 1, 2)) and settings == cfg and ckpt.rules == rules
    x = torch.randn(1, 1, 32, 32)
    assert torch.equal(loaded(x), model.eval()(x))
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    ckpt["settings"]["width"] = 8
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(SegError, match=r"bad.pt: weights do not fit a unet with 3 classes"):
        load_checkpoint(tmp_path / "bad.pt")
    ckpt["settings"]["width"], ckpt["num_classes"] = 4, 5
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(SegError, match=r"bad.pt: num_classes 5 disagrees with meta's 3 gray values"):
        load_checkpoint(tmp_path / "bad.pt")
    ckpt["num_classes"], ckpt["postprocess"] = 3, [{"kind": "biggest", "value": 1}, {"kind": "none", "value": 0}]
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(SegError, match=r"bad.pt: postprocess\[0\]: expected \{kind: one of"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(SegError, match="not a checkpoint written by this pipeline"):
        load_checkpoint(tmp_path / "other.pt")


def test_settings_and_registry_name_the_same_models():
    from seglib import config, models
    assert set(models.REGISTRY) == set(config.ARCHS)
    assert all(cls().arch == arch for arch, cls in config.ARCHS.items())
    assert set(models.BACKBONES) == set(config.BACKBONES)


class StopAfter(TrainingRun):
    """A run that is killed right after saving the state of epoch `stop`."""

    def __init__(self, stop, **kwargs):
        super().__init__("t", **kwargs)
        self.stop = stop

    def epoch_done(self, history, state):
        super().epoch_done(history, state)
        if len(history) == self.stop:
            raise KeyboardInterrupt


# DeepLabV3's (and smp DeepLabV3Plus's ASPP) dropout draws from torch's global generator
@pytest.mark.parametrize("arch", ["unet", "deeplabv3", "smp"])
def test_a_stopped_run_resumes_to_the_uninterrupted_weights(tmp_path, arch):
    common = {"batch_size": 4, "lr": 3e-3}
    cfg = {"unet": UNetConfig(width=8, **common), "deeplabv3": DeepLabV3Config(**common),
           "smp": LibraryConfig(architecture="DeepLabV3Plus", encoder="tu-resnet10t", **common)}[arch]
    train_cfg = TrainConfig(epochs=3, hflip=0.5, vflip=0.5, scale_jitter=0.1, rotate_degrees=10.0)
    reference = fit(_data(12, 8), cfg, train_cfg, CPU, tiny_meta(), TrainingRun("t", log=tmp_path / "reference"))
    files = {"log": tmp_path / "log", "state": tmp_path / "state.pt"}
    with pytest.raises(KeyboardInterrupt):
        fit(_data(12, 8), cfg, train_cfg, CPU, tiny_meta(), StopAfter(2, key="k", **files))
    assert [r["epoch"] for r in read_epoch_log(files["log"])] == [1, 2]  # the epochs done, written as they ended
    torch.manual_seed(123)  # whatever ran in between: the state brings every generator back
    resumed = fit(_data(12, 8), cfg, train_cfg, CPU, tiny_meta(), TrainingRun("t", key="k", **files))
    assert repr(resumed.history) == repr(reference.history) and resumed.best_epoch == reference.best_epoch  # NaN-safe
    for name, tensor in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name
    # the resumed run continued the same epoch log: DVCLive's files, byte for byte the uninterrupted run's
    logged = {p.relative_to(tmp_path / "reference"): p.read_bytes() for p in (tmp_path / "reference").rglob("*.*")}
    assert len(logged) > 10 and {p: (files["log"] / p).read_bytes() for p in logged} == logged
    assert sorted(p.relative_to(files["log"]) for p in files["log"].rglob("*.*")) == sorted(logged)


def test_a_state_left_by_other_inputs_is_not_resumed(tmp_path, capsys):
    cfg, train_cfg = UNetConfig(width=4, batch_size=4), TrainConfig(epochs=2)
    state = tmp_path / "state.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(_data(8, 4), cfg, train_cfg, CPU, tiny_meta(), StopAfter(1, key="old", state=state))
    result = fit(_data(8, 4), cfg, train_cfg, CPU, tiny_meta(), TrainingRun("t", key="new", state=state))
    assert "left by other settings, data or code; training from the first epoch" in capsys.readouterr().out
    assert [r["epoch"] for r in result.history] == [1, 2]
    run = TrainingRun("t", key="new", state=state)
    run.finish()
    assert not state.exists()


def test_run_key_follows_settings_and_file_bytes(tmp_path):
    from seglib.resume import run_key
    (tmp_path / "a.npz").write_bytes(b"one")
    first = run_key({"lr": 1e-3}, [tmp_path / "a.npz"])
    assert run_key({"lr": 1e-3}, [tmp_path / "a.npz"]) == first
    assert run_key({"lr": 2e-3}, [tmp_path / "a.npz"]) != first
    (tmp_path / "a.npz").write_bytes(b"two")
    assert run_key({"lr": 1e-3}, [tmp_path / "a.npz"]) != first

