"""Would output stride 8 make DeepLabV3-MobileNetV3 cheaper than its 2x input? Prints training FLOPs per image.

    python -m bench.deeplab_stride [--size 224]

The real-data recipe doubles DeepLabV3's input (models.deeplabv3.input_scale:
2.0) to get a 28 x 28 feature map from a 224 x 224 slice. Output stride 8
(the stride-16 stage dilated instead of strided, the dilated last stage's
dilation doubled) gives the same map from the 1x input, with the early,
high-resolution layers at a quarter of their cost. This counts the FLOPs of
one training step of each, and of the backbone alone, as bench/throughput.py
does (3 x the forward's count by torch.utils.flop_counter, whose backward
count of depthwise convolutions ignores the groups), to say whether that
saving is worth building. The last column counts the pipeline's model, whose ASPP
runs an atrous convolution as its centre tap where the map is within the
dilation (seglib.models.AtrousConv2d).
"""
import argparse

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from torchvision.models import segmentation

from seglib.models import use_centre_taps


def output_stride_8(model):
    """Dilate instead of stride from the stride-16 stage on (torchvision's dilated=True did the last stage)."""
    stride, extra = 1, 1
    for conv in (m for m in model.backbone.modules() if isinstance(m, nn.Conv2d) and m.kernel_size[0] > 1):
        if conv.stride[0] == 2:
            stride *= 2
            if stride == 16:
                conv.stride, extra = (1, 1), 2
        if extra > 1:
            d = conv.dilation[0] * extra
            conv.dilation, conv.padding = (d, d), ((conv.kernel_size[0] - 1) // 2 * d,) * 2
    return model


def train_gflops(module, x):
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    return 3 * counter.get_total_flops() / len(x) / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    print(f"{'variant':<28}{'feature map':>12}{'train GFLOP/img':>17}{'backbone share':>16}"
          f"{'centre taps GFLOP':>19}")
    for name, stride8, scale in (("output stride 16, 1x input", False, 1), ("output stride 16, 2x input", False, 2),
                                 ("output stride 8, 1x input", True, 1)):
        model = segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=2,
                                                          aux_loss=False).train()
        if stride8:
            output_stride_8(model)
        x = torch.randn(args.batch, 3, args.size * scale, args.size * scale)
        side = model.backbone(x)["out"].shape[-1]
        total, backbone = train_gflops(model, x), train_gflops(model.backbone, x)
        pipeline = train_gflops(use_centre_taps(model), x)
        print(f"{name:<28}{f'{side} x {side}':>12}{total:>17.1f}{backbone / total:>16.0%}{pipeline:>19.1f}")


if __name__ == "__main__":
    main()
