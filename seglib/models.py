"""The model registry: UNet, DeepLabV3 adapted to return logits, segmentation-models-pytorch's
architectures, and their builder.

Every model maps a (N, 1, H, W) float tensor to (N, C, H, W) logits; nothing
outside this module knows that DeepLabV3 returns a dict or wants 3 channels.
"""

import torch
import torch.nn.functional as F
from torch import nn

from seglib import config

# backbone -> torchvision's builder; torchvision is imported only where a DeepLabV3 is built, since importing
# it (it pulls in torch._dynamo) doubles the start-up of every UNet stage
BACKBONES = {name: f"deeplabv3_{name}" for name in ("mobilenet_v3_large", "resnet50", "resnet101")}


# Instance norm (nnU-Net's choice) normalises each image's features on its own:
# no batch statistics, so train and eval mode compute the same thing.
NORM_LAYERS = {"batch": nn.BatchNorm2d, "instance": lambda c: nn.InstanceNorm2d(c, affine=True)}


class DoubleConv(nn.Sequential):
    """(conv 3x3 -> norm -> ReLU) x 2"""

    def __init__(self, c_in, c_out, norm):
        layer = NORM_LAYERS[norm]
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), layer(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), layer(c_out), nn.ReLU(inplace=True))


class Up(nn.Module):
    """Bilinear upsample x2 -> concatenate the skip -> DoubleConv"""

    def __init__(self, c_in, c_skip, c_out, norm):
        super().__init__()
        self.conv = DoubleConv(c_in + c_skip, c_out, norm)

    def forward(self, x, skip):
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """`depth` 2x poolings; channels width, 2w, ... doubling down to width * 2**depth at the bottom. Any input size works."""

    def __init__(self, in_channels, num_classes, width=16, norm="batch", depth=4):
        super().__init__()
        w = [width * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([DoubleConv(in_channels, w[0], norm)] +
                                  [DoubleConv(w[i], w[i + 1], norm) for i in range(depth)])
        self.up = nn.ModuleList([Up(w[i + 1], w[i], w[i], norm) for i in reversed(range(depth))])
        self.head = nn.Conv2d(w[0], num_classes, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            x = block(x, skips.pop())
        return self.head(x)


class AtrousConv2d(nn.Conv2d):
    """An ASPP convolution (3 x 3, padding = dilation) that runs only its centre tap on a feature map
    no taller and no wider than its dilation: there every other tap reads padding zeros, so the
    sum is the same up to float rounding, at a ninth of the work. ASPP's rates 12, 24 and 36 all
    exceed the 8 x 8 map of a 128 px slice; at 224 px (14 x 14) 24 and 36 do (docs/benchmarks.md)."""

    def forward(self, x):
        if x.shape[-2] <= self.dilation[0] and x.shape[-1] <= self.dilation[1]:
            return F.conv2d(x, self.weight[:, :, 1:2, 1:2], self.bias)
        return super().forward(x)


def use_centre_taps(net):
    """torchvision's DeepLabV3 `net` with its ASPP convolutions as AtrousConv2d: the same weights and
    checkpoints; only forward differs."""
    from torchvision.models.segmentation.deeplabv3 import ASPPConv
    for module in net.modules():
        if isinstance(module, ASPPConv):
            module[0].__class__ = AtrousConv2d
    return net


class DeepLabV3(nn.Module):
    """torchvision's DeepLabV3, fed gray images as 3 equal channels, returning the 'out' logits."""

    def __init__(self, num_classes, backbone):
        super().__init__()
        # weights=None and weights_backbone=None: nothing is downloaded, ever
        from torchvision.models import segmentation
        build = getattr(segmentation, BACKBONES[backbone])
        self.net = use_centre_taps(build(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False))

    def forward(self, x):
        return self.net(x.expand(-1, 3, -1, -1))["out"]


class ScaledInput(nn.Module):
    """Run `net` on the input resized by `scale` and resize its logits back.

    For DeepLabV3, whose output stride of 16 leaves a 14 x 14 map at 224 x 224:
    scale 2 doubles the feature map's resolution at four times the compute.
    """

    def __init__(self, net, scale):
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, x):
        size = x.shape[-2:]
        logits = self.net(F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class LibraryModel(nn.Module):
    """An architecture of segmentation-models-pytorch on 1-channel input, built with
    encoder_weights=None (nothing is downloaded). Inputs are zero-padded at the bottom and right to
    the multiple of its output stride the library requires (and PAN's pyramid to 128 px), and the
    logits cropped back, so any slice size trains, like the UNet."""

    MIN_SIDE = {"PAN": 128}  # its attention pyramid pools the stride-16 map three more times

    def __init__(self, cfg, num_classes):
        super().__init__()
        import segmentation_models_pytorch as smp
        options = {} if cfg.output_stride is None else {"encoder_output_stride": cfg.output_stride}
        self.net = smp.create_model(cfg.architecture, encoder_name=cfg.encoder, encoder_weights=None,
                                    in_channels=1, classes=num_classes, **options)
        self.min_side = self.MIN_SIDE.get(cfg.architecture, 1)

    def forward(self, x):
        h, w = x.shape[-2:]
        stride = self.net.encoder.output_stride
        pad_h, pad_w = (max(-(-side // stride) * stride, self.min_side) - side for side in (h, w))
        if pad_h or pad_w:
            return self.net(F.pad(x, (0, pad_w, 0, pad_h)))[..., :h, :w]
        return self.net(x)


def encoder_of(model):
    """The part of `model` that an ImageNet backbone file initialises: torchvision DeepLabV3's backbone,
    or a library model's encoder (None for the UNet)."""
    model = model.net if isinstance(model, ScaledInput) else model
    if isinstance(model, DeepLabV3):
        return model.net.backbone
    return model.net.encoder if isinstance(model, LibraryModel) else None


def model_cost(model, side):
    """{parameters, gflops: one forward pass of one image of `side` (h, w) px, feature_map: the coarsest
    activation's [h, w]}: the size and cost the report sets beside each score."""
    from torch.utils.flop_counter import FlopCounterMode
    smallest = []

    def record(_module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.dim() == 4:
            smallest.append(tuple(output.shape[-2:]))
    hooks = [m.register_forward_hook(record) for m in model.modules() if not list(m.children())]
    was_training = model.training
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.eval()(torch.zeros(1, 1, *side, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    # global pooling (DeepLabV3's image branch, PSP's bins) is no feature map of the image
    maps = [s for s in smallest if s[0] * s[1] > 1]
    return {"parameters": count_parameters(model), "gflops": round(counter.get_total_flops() / 1e9, 3),
            "feature_map": list(min(maps, key=lambda s: s[0] * s[1]))}


def min_input_side(cfg):
    """Smallest input side (px, after input_scale) a model trains on: UNet's deepest level must keep
    2 x 2 pixels (instance norm needs more than one); DeepLabV3 has no such limit."""
    return 2 ** (cfg.depth + 1) if isinstance(cfg, config.UNetConfig) else 1


# arch -> builder from its settings class (config.ARCHS); a test keeps the two equal
REGISTRY = {
    "unet": lambda cfg, num_classes: UNet(1, num_classes, cfg.width, cfg.norm, cfg.depth),
    "deeplabv3": lambda cfg, num_classes: DeepLabV3(num_classes, cfg.backbone),
    "smp": LibraryModel,
}


def build_model(cfg, num_classes, bn_momentum=None):
    """A fresh model for `cfg.arch`. `bn_momentum` overrides every BatchNorm's momentum.

    torchvision's MobileNetV3 sets momentum 0.01: from scratch on a few hundred
    slices the running statistics then lag the weights for many epochs and the
    model predicts nothing in eval mode. 0.1 tracks them (docs/real-data.md).
    """
    model = REGISTRY[cfg.arch](cfg, num_classes)
    if cfg.input_scale != 1.0:
        model = ScaledInput(model, cfg.input_scale)
    if bn_momentum is not None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = bn_momentum
    return model


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
