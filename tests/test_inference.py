"""The one forward path: batches, flips, resizing back, the device-side confusion matrix and the
settings classes behind checkpoints."""
import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_meta
from seglib import config
from seglib.checkpoint import load_checkpoint
from seglib.errors import SegError
from seglib.inference import Predictor
from seglib.metrics import confusion
from seglib.models import build_model
from seglib.runtime import use_runtime
from seglib.train import ConfusionMatrix
from seglib.transforms import Augment, flip_batch, jitter_batch

CPU = torch.device("cpu")


class LeftRight(torch.nn.Module):
    """Two classes whose logits depend on the column: a flip changes the answer, so flips must be undone."""

    def forward(self, x):
        ramp = torch.linspace(-1, 1, x.shape[-1]).expand_as(x)
        return torch.cat([-(x + ramp), x + ramp], dim=1)


def _images(n, size=(16, 20), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *size)).astype(np.uint8)


def _softmax(model, images, meta):
    x = (torch.from_numpy(images).float()[:, None] / 255.0 - meta.mean) / meta.std
    return model(x).softmax(1)


def test_classes_come_back_in_order_at_each_size_across_batch_boundaries():
    meta = tiny_meta(mean=0.5, std=0.25)
    images = _images(7)
    sizes = [(16, 20), (32, 40), (8, 10), (16, 20), (20, 16), (17, 23), (16, 20)]
    predictor = Predictor(LeftRight(), meta, CPU, batch_size=3)
    out = list(predictor.classes(images, sizes))
    assert [o.shape for o in out] == sizes and all(o.dtype == np.uint8 for o in out)
    logits = LeftRight()((torch.from_numpy(images).float()[:, None] / 255.0 - 0.5) / 0.25)
    for i, size in enumerate(sizes):  # the logits resized to the image's size, then the argmax
        expected = F.interpolate(logits[i:i + 1], size=size, mode="bilinear", align_corners=False).argmax(1)[0]
        assert np.array_equal(out[i], expected.numpy())


def test_flips_average_the_softmax_of_the_flipped_passes_flipped_back():
    meta = tiny_meta(mean=0.5, std=0.25)
    images = _images(5)
    sizes = [images.shape[1:]] * 5
    model = LeftRight()
    plain = _softmax(model, images, meta)
    h = _softmax(model, images[:, :, ::-1].copy(), meta).flip(-1)
    v = _softmax(model, images[:, ::-1].copy(), meta).flip(-2)
    for flips, expected in (((), plain), (("h",), (plain + h) / 2), (("h", "v"), (plain + h + v) / 3)):
        got = np.stack(list(Predictor(model, meta, CPU, batch_size=2, flips=flips).probabilities(images, sizes)))
        assert np.allclose(got, expected.detach().numpy(), atol=1e-6), flips
        assert np.allclose(got.sum(1), 1.0, atol=1e-5)
    # the horizontal flip matters for this model: undone wrongly, it would average to 0.5 everywhere
    assert not np.allclose(h.detach().numpy(), 0.5, atol=0.05)


def test_batched_prediction_matches_one_image_at_a_time_on_a_real_model():
    torch.manual_seed(0)
    model = build_model(config.UNetConfig(width=4, depth=2), 3).eval()
    meta = tiny_meta((0, 1, 2), mean=0.4, std=0.2)
    images, sizes = _images(5, (32, 32)), [(32, 32), (40, 48), (32, 32), (24, 24), (64, 64)]
    batched = list(Predictor(model, meta, CPU, batch_size=4).probabilities(images, sizes))
    single = [next(Predictor(model, meta, CPU, batch_size=1).probabilities(images[i:i + 1], sizes[i:i + 1]))
              for i in range(5)]
    for a, b in zip(batched, single):
        assert np.allclose(a, b, atol=1e-5)


def test_confusion_matrix_on_the_device_equals_the_numpy_count():
    rng = torch.Generator().manual_seed(0)
    matrix = ConfusionMatrix(4, CPU)
    expected = np.zeros((4, 4), np.int64)
    for _ in range(3):
        truth, pred = torch.randint(0, 4, (2, 9, 7), generator=rng), torch.randint(0, 4, (2, 9, 7), generator=rng)
        matrix.update(truth, pred)
        expected += confusion(truth.numpy(), pred.numpy(), 4)
    assert matrix.numpy().dtype == np.int64 and np.array_equal(matrix.numpy(), expected)


def test_augment_draws_what_flip_then_jitter_draw_from_one_generator():
    cfg = config.TrainConfig(hflip=0.5, vflip=0.5, scale_jitter=0.1, rotate_degrees=10.0, intensity_jitter=0.1)
    images, masks = torch.rand(6, 1, 20, 20), torch.randint(0, 2, (6, 20, 20))
    augment = Augment(cfg, seed=3)
    gen = torch.Generator().manual_seed(3)
    for _ in range(2):  # the stream carries on across batches
        got = augment(images.clone(), masks.clone())
        want = jitter_batch(*flip_batch(images.clone(), masks.clone(), 0.5, 0.5, gen), cfg, gen)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_each_arch_takes_only_its_own_settings():
    assert set(dataclasses.asdict(config.DeepLabV3Config())) == {
        "arch", "lr", "batch_size", "epochs", "input_scale", "precision", "weights", "backbone", "encoder_weights"}
    assert {"width", "norm", "depth"} <= set(dataclasses.asdict(config.UNetConfig())) - {"backbone"}
    assert set(dataclasses.asdict(config.LibraryConfig())) - set(dataclasses.asdict(config.DeepLabV3Config())) == {
        "architecture", "encoder", "output_stride"}
    params = {"model": "a", "models": {"a": {"arch": "deeplabv3", "depth": 3}}}
    with pytest.raises(SegError, match=r"models.a: unknown key\(s\) \['depth'\] \(it is a setting of "
                                       r"models.<name>: of arch unet"):
        config.model(params, "a")


def test_format_1_checkpoints_still_load(tmp_path):
    """Format 1 stored every arch's fields in the settings and base_size twice in meta; both are read."""
    torch.manual_seed(0)
    cfg = config.DeepLabV3Config()
    model = build_model(cfg, 2)
    meta = tiny_meta()
    old_settings = {**dataclasses.asdict(cfg), "width": 16, "norm": "batch", "depth": 4}
    torch.save({"format": 1, "settings": old_settings, "num_classes": 2,
                "meta": {**meta.to_dict(), "base_size": list(meta.base_size), "name": "deeplabv3"},
                "state_dict": model.state_dict()}, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    assert loaded.settings == cfg and loaded.meta == meta and [r.kind for r in loaded.rules] == ["none"]
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(loaded.model(x), model.eval()(x))


def test_use_runtime_pins_threads_and_resolves_the_device():
    before = torch.get_num_threads()
    try:
        assert use_runtime(config.RuntimeConfig(device="cpu", threads=1)) == CPU
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_fp16_needs_a_cuda_gpu():
    from seglib.runtime import check_precision
    check_precision(CPU, "bf16", "models.unet")
    with pytest.raises(SegError, match="models.unet.precision: fp16 .* on cpu use fp32 or bf16"):
        check_precision(CPU, "fp16", "models.unet")


def test_bf16_on_a_cpu_that_cannot_use_bf16_units_is_warned_about(tmp_path, monkeypatch, capsys):
    from seglib.runtime import check_precision, cpu_bf16_slowness
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma avx512f\n")
    assert "no AMX or AVX512-BF16" in cpu_bf16_slowness(cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile\n")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")       # the pins of seglib/__init__.py
    assert "SEGLIB_NATIVE_CPU=1" in cpu_bf16_slowness(cpuinfo)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")               # SEGLIB_NATIVE_CPU=1: oneDNN may use AMX
    assert cpu_bf16_slowness(cpuinfo) is None
    assert cpu_bf16_slowness(tmp_path / "absent") is None  # flags unknown (not Linux): nothing to say
    # the train stage's check prints the warning once for bf16 on the CPU, and nothing for fp32
    monkeypatch.setattr("seglib.runtime.cpu_bf16_slowness", lambda: "is slow here")
    check_precision(CPU, "fp32", "models.unet")
    check_precision(CPU, "bf16", "models.unet")
    assert capsys.readouterr().out == "warning: models.unet.precision: bf16 is slow here\n"
