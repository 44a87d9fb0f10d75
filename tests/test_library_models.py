"""Architectures of segmentation-models-pytorch as models: built offline, trained, checkpointed and
started from local encoder files in the layouts their libraries publish."""
import socket

import pytest
import torch

from conftest import tiny_meta
from seglib import config
from seglib.checkpoint import load_checkpoint, load_encoder_weights, save_checkpoint
from seglib.config import DeepLabV3Config, LibraryConfig, TrainConfig, UNetConfig
from seglib.errors import SegError
from seglib.models import build_model, encoder_of, model_cost
from seglib.resume import TrainingRun
from seglib.train import fit
from test_models_train import _data

CPU = torch.device("cpu")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve a name or open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_every_model_builds_with_the_network_blocked(no_network):
    configs = [UNetConfig(width=4)] + [DeepLabV3Config(backbone=b) for b in config.BACKBONES]
    # every architecture on a small timm encoder; smp's own encoders on one
    configs += [LibraryConfig(architecture=a, encoder="tu-resnet10t") for a in config.LIBRARY_ARCHITECTURES]
    configs += [LibraryConfig(encoder="resnet18"), LibraryConfig(encoder="mobilenet_v2")]
    for cfg in configs:
        model = build_model(cfg, 2).eval()
        assert model(torch.zeros(2, 1, 40, 40)).shape == (2, 2, 40, 40), cfg


@pytest.mark.parametrize("architecture", config.LIBRARY_ARCHITECTURES)
def test_library_architecture_trains_a_step_and_round_trips_through_a_checkpoint(architecture, tmp_path):
    cfg = LibraryConfig(architecture=architecture, encoder="tu-resnet10t", batch_size=4, lr=1e-3)
    result = fit(_data(4, 2), cfg, TrainConfig(epochs=1), CPU, tiny_meta(), TrainingRun("lib"))
    assert result.history[0]["images_seen"] == 4 and result.history[0]["train_loss"] > 0
    save_checkpoint(tmp_path / "m.pt", result.model, cfg, tiny_meta(), "lib")
    ckpt = load_checkpoint(tmp_path / "m.pt")
    assert ckpt.settings == cfg  # predict rebuilds the model from the checkpoint alone
    trained = result.model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in ckpt.model.state_dict().items())
    x = torch.randn(2, 1, 32, 32)  # in the memory layout training left the model in
    assert torch.equal(ckpt.model.to(memory_format=torch.channels_last)(x), result.model.eval()(x))


def test_an_input_the_encoder_cannot_divide_is_padded_and_cropped():
    torch.manual_seed(0)
    model = build_model(LibraryConfig(architecture="FPN", encoder="resnet18"), 3).eval()
    x = torch.randn(1, 1, 50, 70)
    out = model(x)
    assert out.shape == (1, 3, 50, 70)
    padded = torch.nn.functional.pad(x, (0, 26, 0, 14))  # to 64 x 96, multiples of 32
    torch.testing.assert_close(out, model.net(padded)[..., :50, :70])


def test_cost_counts_flops_and_the_coarsest_feature_map():
    unet = build_model(UNetConfig(width=4, depth=2), 2)
    cost = model_cost(unet, (32, 32))
    # by hand: each 3x3 conv is 2 * 9 * c_in * c_out FLOPs per output pixel; the 1x1 head 2 * 4 * 2
    convs = [(1, 4, 32), (4, 4, 32), (4, 8, 16), (8, 8, 16), (8, 16, 8), (16, 16, 8),  # down
             (24, 8, 16), (8, 8, 16), (12, 4, 32), (4, 4, 32)]                        # up (skip + below)
    flops = sum(2 * 9 * a * b * s * s for a, b, s in convs) + 2 * 4 * 2 * 32 * 32
    assert cost["gflops"] == round(flops / 1e9, 3) and cost["feature_map"] == [8, 8]
    deeplab = model_cost(build_model(DeepLabV3Config(), 2), (128, 128))
    scaled = model_cost(build_model(DeepLabV3Config(input_scale=2.0), 2), (128, 128))
    assert deeplab["feature_map"] == [8, 8] and scaled["feature_map"] == [16, 16]  # output stride 16
    assert scaled["parameters"] == deeplab["parameters"] and scaled["gflops"] > 4 * deeplab["gflops"]


@pytest.mark.parametrize("raw, message", [
    ({"architecture": "UNet"}, r"models.m.architecture: unknown architecture 'UNet' \(did you mean 'Unet'\?\); "
                               r"segmentation-models-pytorch builds \['Unet', 'UnetPlusPlus'"),
    ({"encoder": "resnt34"}, r"models.m.encoder: unknown encoder 'resnt34' \(did you mean 'resnet34'\?\); "
                              r"segmentation-models-pytorch has resnet18, resnet34, .*'tu-<name>'"),
    ({"encoder": "tu-no_such_net"}, r"unknown encoder 'tu-no_such_net'"),
    ({"output_stride": 8}, r"models.m.output_stride: 8 is for DeepLabV3 and DeepLabV3Plus only"),
    ({"architecture": "DeepLabV3Plus", "output_stride": 4}, r"output_stride: 4 is for DeepLabV3 and DeepLabV3Plus"),
    ({"encoder_weights": "/tmp/r18.pth"}, r"models.m.encoder_weights: must be a file under weights/"),
])
def test_bad_library_settings_are_one_message(raw, message):
    with pytest.raises(SegError, match=message):
        config.model({"models": {"m": {"arch": "smp", **raw}}}, "m")


def _published(module, first_conv=None):
    """A state dict in the layout a library publishes, with distinct values so a test sees where each went."""
    torch.manual_seed(1)
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in module.state_dict().items()}
    return state


def test_smp_resnet_encoder_from_a_torchvision_imagenet_file(tmp_path):
    import torchvision
    state = _published(torchvision.models.resnet18(weights=None))  # conv1 3-channel, fc.* head
    torch.save(state, tmp_path / "resnet18.pth")
    model = build_model(LibraryConfig(architecture="DeepLabV3Plus", encoder="resnet18"), 2)
    load_encoder_weights(model, tmp_path / "resnet18.pth")
    loaded = encoder_of(model).state_dict()
    assert torch.equal(loaded["conv1.weight"], state["conv1.weight"].sum(1, keepdim=True))  # 1 channel, as smp does
    for key, value in state.items():
        if key != "conv1.weight" and not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key


def test_timm_encoder_from_a_timm_file(tmp_path):
    import timm
    state = _published(timm.create_model("resnet10t", pretrained=False))
    torch.save(state, tmp_path / "resnet10t.pth")
    model = build_model(LibraryConfig(encoder="tu-resnet10t"), 2)
    load_encoder_weights(model, tmp_path / "resnet10t.pth")
    loaded = encoder_of(model).state_dict()
    assert torch.equal(loaded["model.conv1.0.weight"], state["conv1.0.weight"].sum(1, keepdim=True))
    assert torch.equal(loaded["model.layer4.0.conv2.weight"], state["layer4.0.conv2.weight"])


@pytest.mark.parametrize("backbone, builder", [("mobilenet_v3_large", "mobilenet_v3_large"), ("resnet50", "resnet50")])
def test_deeplabv3_backbone_from_a_torchvision_imagenet_file(tmp_path, backbone, builder):
    import torchvision
    state = _published(getattr(torchvision.models, builder)(weights=None))
    torch.save(state, tmp_path / "backbone.pth")
    model = build_model(DeepLabV3Config(backbone=backbone, input_scale=2.0), 2)
    load_encoder_weights(model, tmp_path / "backbone.pth")
    loaded = encoder_of(model).state_dict()
    for key, value in state.items():
        own = key.removeprefix("features.")
        if own in loaded:
            assert torch.equal(loaded[own], value), key
    assert sum(k.removeprefix("features.") in loaded for k in state) == len(
        [k for k in loaded if not k.endswith("num_batches_tracked")] + [k for k in state if k.endswith("num_batches_tracked")])


def test_encoder_files_that_do_not_fit_are_one_message_naming_the_file(tmp_path):
    import torchvision
    model = build_model(LibraryConfig(encoder="resnet18"), 2)
    state = _published(torchvision.models.resnet18(weights=None))
    state["layer2.0.conv1.weight"] = torch.zeros(128, 64, 5, 5)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(SegError, match=r"shape.pth: tensor 'layer2.0.conv1.weight' has shape \[128, 64, 5, 5\], "
                                       r"the encoder's is \[128, 64, 3, 3\]"):
        load_encoder_weights(model, tmp_path / "shape.pth")
    torch.save(_published(torchvision.models.mobilenet_v3_large(weights=None)), tmp_path / "other.pth")
    with pytest.raises(SegError, match=r"other.pth: not the encoder of this model \(ResNetEncoder, \d+ tensors\): "
                                       r"\d+ missing \(first 'bn1.bias'\), \d+ unexpected"):
        load_encoder_weights(model, tmp_path / "other.pth")
    torch.save(_published(torchvision.models.resnet34(weights=None)), tmp_path / "resnet34.pth")
    with pytest.raises(SegError, match=r"resnet34.pth: not the encoder of this model .* 0 missing, \d+ unexpected "
                                       r"\(first 'layer1.2.bn1.bias'\)"):
        load_encoder_weights(model, tmp_path / "resnet34.pth")
    with pytest.raises(SegError, match=r"encoder_weights are for models with an encoder"):
        load_encoder_weights(build_model(UNetConfig(width=4), 2), tmp_path / "resnet34.pth")


def test_a_checkpoint_carries_no_encoder_file_and_refuses_one(tmp_path):
    cfg = LibraryConfig(encoder="resnet18", encoder_weights="weights/r18.pth")
    save_checkpoint(tmp_path / "m.pt", build_model(cfg, 2), cfg, tiny_meta(), "m")
    assert load_checkpoint(tmp_path / "m.pt").settings.encoder_weights is None
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    ckpt["settings"]["encoder_weights"] = "weights/r18.pth"
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(SegError, match=r"bad.pt: settings.weights and encoder_weights must be null"):
        load_checkpoint(tmp_path / "bad.pt")

