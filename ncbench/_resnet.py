"""torchvision-based ResNets of `ncbench.models` (`CifarResNet`), in their own module so that
importing `ncbench.models` does not import torchvision (seconds per process, paid by every worker
even for the MLP): the ResNet factories import this module on first use."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from ncbench.errors import ParameterError

__all__ = ["CifarResNet", "BasicBlock", "Bottleneck", "ResNet"]


class CifarResNet(ResNet):
    """torchvision `ResNet` with a CIFAR stem and per-stage channel counts.

    Holds `conv1` (3×3, stride 1, `in_channels` → planes[0]), `bn1`, `relu`, `maxpool`
    (Identity) — or, with `stem="imagenet"`, torchvision's 7×7 stride-2 conv and 3×3 stride-2
    max-pool (16× fewer activations in layer1: an option for 84-px inputs) —, `layer1..4` (built by torchvision's `ResNet._make_layer` from `block`, with
    `planes[i]` planes and stride 1, 2, 2, 2), `avgpool` (global average), and `classifier`
    (`nn.Linear(feature_dim, num_classes)`). `width_per_group` is torchvision's: a Bottleneck's
    inner channels are `int(planes · width_per_group / 64)`. Initialisation follows torchvision's
    (Kaiming-normal fan-out convolutions, BN weight 1 / bias 0, default `nn.Linear` classifier).
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: Sequence[int],
                 planes: Sequence[int], num_classes: int, *, width_per_group: int = 64,
                 in_channels: int = 3, zero_init_residual: bool = False, stem: str = "cifar"):
        # torchvision's ResNet.__init__ hard-codes 64/128/256/512 planes and the ImageNet stem, so
        # set the attributes its `_make_layer` reads and build the stages with it directly.
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.groups = 1
        self.base_width = int(width_per_group)
        self.dilation = 1
        self.inplanes = int(planes[0])
        if stem == "cifar":
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        elif stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            raise ParameterError(f"unknown ResNet stem {stem!r}; use 'cifar' or 'imagenet'", key="stem")
        self.stem = stem
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, int(planes[0]), layers[0])
        self.layer2 = self._make_layer(block, int(planes[1]), layers[1], stride=2)
        self.layer3 = self._make_layer(block, int(planes[2]), layers[2], stride=2)
        self.layer4 = self._make_layer(block, int(planes[3]), layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dim = int(planes[3]) * block.expansion
        self.classifier = nn.Linear(self.feature_dim, num_classes, bias=True)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features `[B, feature_dim]` (after global average pooling)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
