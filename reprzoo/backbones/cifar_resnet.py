"""ResNets for small images: timm's ResNet with the CIFAR stem (3x3 conv, stride 1, no max-pool).

The CIFAR variant of "Deep Residual Learning for Image Recognition" (He et al., 2016) that SimSiam, BYOL and
solo-learn use on 32x32 inputs. ``resnet_tiny_cifar`` (16-32-64-128 channels, one block per stage) is an in-house
net for CPU tests and the digits demo.
"""

from __future__ import annotations

from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn

from reprzoo.backbones.registry import register_backbone


def _cifar_resnet(block, layers, channels=(64, 128, 256, 512), in_chans: int = 3, **kwargs) -> ResNet:
    model = ResNet(block, layers, num_classes=0, in_chans=in_chans, channels=channels, **kwargs)
    stem_width = model.bn1.num_features  # timm's plain stem is 64 wide whatever the stage widths
    model.conv1 = nn.Conv2d(in_chans, stem_width, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


@register_backbone("resnet18_cifar")
def resnet18_cifar(**kwargs) -> ResNet:
    return _cifar_resnet(BasicBlock, (2, 2, 2, 2), **kwargs)


@register_backbone("resnet50_cifar")
def resnet50_cifar(**kwargs) -> ResNet:
    return _cifar_resnet(Bottleneck, (3, 4, 6, 3), **kwargs)


class TinyResNet(nn.Module):
    """A 4-stage residual net for CPU tests: a 3x3 stem of ``widths[0]`` channels at full resolution, then one
    timm ``BasicBlock`` per stage, each halving the resolution; global average pooling."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), in_chans: int = 3):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        stages = []
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            downsample = nn.Sequential(nn.Conv2d(w_in, w_out, 1, stride=2, bias=False), nn.BatchNorm2d(w_out))
            stages.append(BasicBlock(w_in, w_out, stride=2, downsample=downsample))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = widths[-1]

    def forward(self, x):
        return self.pool(self.stages(self.stem(x)))


@register_backbone("resnet_tiny_cifar")
def resnet_tiny_cifar(**kwargs) -> TinyResNet:
    return TinyResNet(**kwargs)
