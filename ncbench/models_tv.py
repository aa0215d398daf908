"""torchvision's ImageNet architectures by name (VGG-11/13-BN, ResNet-34/50, DenseNet-121) in ncbench's model contract.

Each is built with torchvision's own constructors (`weights=None`: never pretrained) and wrapped
as a `TorchvisionNet`: `net` is the torchvision model with its final Linear taken out (so
`net(x)` returns the penultimate features), `classifier` is that Linear (d → K, with bias),
`features(x) = net(x)`, `forward(x) = classifier(features(x))`, `feature_dim` = d.

- `resnet34` / `resnet50`: `torchvision.models.resnet34/50`; features after global average
  pooling (d = 512 / 2048). Width X: `resnet50` takes `width_per_group = round(64·X)` (X = 2 is
  `wide_resnet50_2`); `resnet34`'s BasicBlocks have no width knob in torchvision: X ≠ 1 is an
  error (use `wrn18` for a basic-block ResNet whose channels scale).
- `vgg11_bn` / `vgg13_bn`: torchvision's `VGG` over `make_layers(cfg, batch_norm=True)`. The
  `classifier` is the head's last Linear(4096, K); the earlier head layers (Linear → ReLU →
  Dropout, twice) are part of `features`, so d = 4096 (round(4096·X)). Width X multiplies every
  conv channel and the head's hidden units. Needs inputs of at least 32×32 (five max-pools).
- `densenet121`: torchvision's `DenseNet` with growth rate 32, blocks (6, 12, 24, 16) and 64
  initial features; features after the final BN-ReLU and global average pooling (d = 1024 at
  X = 1). Width X scales the growth rate, round(32·X), and the initial features with it (2·growth,
  the DenseNet-BC rule densenet121 follows).

`stem = "imagenet"` is torchvision's network as is (7×7 stride-2 conv + max-pool for ResNet and
DenseNet; VGG's 7×7 adaptive pool before a Linear(512·7·7, 4096)). `stem = "cifar"` (the
default, as for ncbench's own ResNets) fits 32-px inputs: ResNet and DenseNet get a 3×3 stride-1
first conv and no max-pool; VGG pools its last conv map globally (1×1, which is what a 32-px
image leaves anyway) into a Linear(512, 4096) instead of copying it 49 times. The first conv
takes the dataset's channels (`input_shape[0]`; grey images work). Replaced layers get
torchvision's initialisation for their family; at `stem = "imagenet"`, X = 1 and 3 channels the
weights equal torchvision's model built from the same seed.

This module imports torchvision only inside the builders (importing torchvision costs seconds,
which every worker would pay even for the MLP); `ncbench.models` registers its factories.
Sizes, widths and configurations come from `ncbench.model_size` (torch-free), which also counts
their parameters by arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ncbench import model_size as size
from ncbench.errors import ParameterError

__all__ = ["TV_MODELS", "TorchvisionNet", "vgg11_bn", "vgg13_bn", "resnet34", "resnet50",
           "densenet121"]

#: The torchvision models of this module (their names are declared in `ncbench.names.MODELS`).
TV_MODELS: tuple[str, ...] = ("densenet121", "resnet34", "resnet50", "vgg11_bn", "vgg13_bn")


class TorchvisionNet(nn.Module):
    """A torchvision model in ncbench's contract: `net` (the model without its last Linear:
    `net(x)` is the penultimate features [B, d]) and `classifier` (that Linear, d → K)."""

    def __init__(self, net: nn.Module, classifier: nn.Linear, *, arch: str, stem: str,
                 width: float):
        super().__init__()
        self.net = net
        self.classifier = classifier
        self.arch, self.stem, self.width = arch, stem, width
        self.feature_dim = int(classifier.in_features)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features `[B, feature_dim]`."""
        return self.net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.net(x))


def _channels(name: str, input_shape: Sequence[int] | None, in_channels: int | None) -> int:
    if in_channels is not None:
        return int(in_channels)
    shape = tuple(input_shape) if input_shape is not None else (3, 32, 32)
    if len(shape) != 3:
        raise ParameterError(f"model '{name}' is a convolutional network and needs image inputs "
                             f"(C, H, W), but the dataset gives vectors of shape {shape}; use model "
                             f"'mlp' for vector data", key="model")
    return int(shape[0])


def _kaiming(conv: nn.Conv2d, mode: str) -> nn.Conv2d:
    if mode == "fan_out":
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    else:  # torchvision's DenseNet: kaiming_normal_ with its defaults (fan_in)
        nn.init.kaiming_normal_(conv.weight)
    if conv.bias is not None:
        nn.init.constant_(conv.bias, 0)
    return conv


# --------------------------------------------------------------------------------------------
# ResNet-34 / ResNet-50
# --------------------------------------------------------------------------------------------


def _resnet(name: str, num_classes: int, width: float, input_shape, in_channels, stem: str,
            zero_init_residual: bool) -> TorchvisionNet:
    from torchvision import models as tvm

    size.check_stem(stem)
    c = _channels(name, input_shape, in_channels)
    kw = {}
    wpg = size.tv_resnet_width_per_group(name, width)
    if wpg is not None:
        kw["width_per_group"] = wpg
    net = getattr(tvm, name)(weights=None, num_classes=num_classes,
                             zero_init_residual=bool(zero_init_residual), **kw)
    if stem == "cifar":
        net.conv1 = _kaiming(nn.Conv2d(c, 64, kernel_size=3, stride=1, padding=1, bias=False), "fan_out")
        net.maxpool = nn.Identity()
    elif c != 3:
        net.conv1 = _kaiming(nn.Conv2d(c, 64, kernel_size=7, stride=2, padding=3, bias=False), "fan_out")
    classifier, net.fc = net.fc, nn.Identity()
    return TorchvisionNet(net, classifier, arch=name, stem=stem, width=width)


def resnet34(num_classes: int, width: float = 1.0, input_shape: Sequence[int] | None = None, *,
             in_channels: int | None = None, stem: str = "cifar",
             zero_init_residual: bool = False) -> TorchvisionNet:
    """torchvision's ResNet-34 (BasicBlock [3, 4, 6, 3]), d = 512; width must be 1."""
    return _resnet("resnet34", num_classes, width, input_shape, in_channels, stem, zero_init_residual)


def resnet50(num_classes: int, width: float = 1.0, input_shape: Sequence[int] | None = None, *,
             in_channels: int | None = None, stem: str = "cifar",
             zero_init_residual: bool = False) -> TorchvisionNet:
    """torchvision's ResNet-50 (Bottleneck [3, 4, 6, 3]), width_per_group round(64·X), d = 2048."""
    return _resnet("resnet50", num_classes, width, input_shape, in_channels, stem, zero_init_residual)


# --------------------------------------------------------------------------------------------
# VGG-11 / VGG-13 with batch norm
# --------------------------------------------------------------------------------------------


def _vgg_init(module: nn.Module) -> None:
    """torchvision's VGG initialisation (`VGG.__init__`, init_weights=True)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            _kaiming(m, "fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.constant_(m.bias, 0)


def _vgg(name: str, num_classes: int, width: float, input_shape, in_channels, stem: str,
         dropout: float) -> TorchvisionNet:
    from torchvision.models.vgg import VGG, make_layers

    size.check_stem(stem)
    c = _channels(name, input_shape, in_channels)
    if input_shape is not None and min(int(s) for s in tuple(input_shape)[1:]) < size.VGG_MIN_SIZE:
        raise ParameterError(f"model '{name}' needs images of at least {size.VGG_MIN_SIZE}×"
                             f"{size.VGG_MIN_SIZE} (five 2×2 max-pools), but the dataset gives "
                             f"{'×'.join(map(str, tuple(input_shape)[1:]))}", key="model")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ParameterError(f"dropout must be a number in [0, 1), got {dropout!r}", key="dropout")
    cfg, hidden = size.vgg_config(name, width)
    last = [v for v in cfg if v != "M"][-1]
    side = 7 if stem == "imagenet" else 1
    features = make_layers(list(cfg), batch_norm=True)
    if c != 3:
        features[0] = nn.Conv2d(c, int(cfg[0]), kernel_size=3, padding=1)
    # torchvision's VGG (its forward: features → avgpool → flatten → classifier), its head
    # sized for this width and stem; built on the meta device first so that its fixed
    # Linear(512·7·7, 4096) is never allocated, then given real layers and torchvision's init.
    with torch.device("meta"):
        net = VGG(nn.Sequential(), num_classes=num_classes, init_weights=False, dropout=float(dropout))
    net.features = features
    net.avgpool = nn.AdaptiveAvgPool2d((side, side))
    net.classifier = nn.Sequential(
        nn.Linear(last * side * side, hidden), nn.ReLU(True), nn.Dropout(p=float(dropout)),
        nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(p=float(dropout)),
        nn.Linear(hidden, num_classes))
    _vgg_init(net)
    classifier = net.classifier[6]
    net.classifier = net.classifier[:6]
    return TorchvisionNet(net, classifier, arch=name, stem=stem, width=width)


def vgg11_bn(num_classes: int, width: float = 1.0, input_shape: Sequence[int] | None = None, *,
             in_channels: int | None = None, stem: str = "cifar",
             dropout: float = 0.5) -> TorchvisionNet:
    """torchvision's VGG-11 with batch norm (config "A"); classifier = the head's last Linear."""
    return _vgg("vgg11_bn", num_classes, width, input_shape, in_channels, stem, dropout)


def vgg13_bn(num_classes: int, width: float = 1.0, input_shape: Sequence[int] | None = None, *,
             in_channels: int | None = None, stem: str = "cifar",
             dropout: float = 0.5) -> TorchvisionNet:
    """torchvision's VGG-13 with batch norm (config "B"); classifier = the head's last Linear."""
    return _vgg("vgg13_bn", num_classes, width, input_shape, in_channels, stem, dropout)


# --------------------------------------------------------------------------------------------
# DenseNet-121
# --------------------------------------------------------------------------------------------


def densenet121(num_classes: int, width: float = 1.0, input_shape: Sequence[int] | None = None, *,
                in_channels: int | None = None, stem: str = "cifar", drop_rate: float = 0.0,
                memory_efficient: bool = False) -> TorchvisionNet:
    """torchvision's DenseNet-121: growth rate round(32·X), 2·growth initial features, d = 1024 at X = 1."""
    from torchvision.models.densenet import DenseNet

    size.check_stem(stem)
    c = _channels("densenet121", input_shape, in_channels)
    if isinstance(drop_rate, bool) or not isinstance(drop_rate, (int, float)) or not 0 <= drop_rate < 1:
        raise ParameterError(f"drop_rate must be a number in [0, 1), got {drop_rate!r}", key="drop_rate")
    growth, blocks, init = size.densenet_config("densenet121", width)
    net = DenseNet(growth_rate=growth, block_config=blocks, num_init_features=init,
                   drop_rate=float(drop_rate), num_classes=num_classes,
                   memory_efficient=bool(memory_efficient))
    if stem == "cifar":
        net.features.conv0 = _kaiming(nn.Conv2d(c, init, kernel_size=3, stride=1, padding=1, bias=False), "fan_in")
        net.features.pool0 = nn.Identity()
    elif c != 3:
        net.features.conv0 = _kaiming(nn.Conv2d(c, init, kernel_size=7, stride=2, padding=3, bias=False), "fan_in")
    classifier, net.classifier = net.classifier, nn.Identity()
    return TorchvisionNet(net, classifier, arch="densenet121", stem=stem, width=width)
