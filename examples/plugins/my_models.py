"""Example ncbench model plug-ins, named in experiments.toml as "my_models:NAME".

The model contract (docs/plugins.md): a factory called as
`f(num_classes, width, input_shape, **model_params)` returns an `nn.Module` with

- `features(x) -> [B, d]`: the penultimate ("last-layer") features the Neural Collapse metrics
  are measured on;
- `classifier`: the final `nn.Linear(d, K)` (with bias: NC3 and NC4 read its weight and bias);
- `forward(x) = classifier(features(x))`, the logits [B, K];
- optionally `feature_dim = d`.

`ncbench run` checks all of it before any worker starts: it builds the model on PyTorch's meta
device (no memory) and runs `features` and `forward` on a batch of 2 samples of the dataset's
`input_shape`. ncbench imports this module from the folder of the experiments.toml that names it.
"""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Two 3×3 conv blocks → global average pooling → one hidden layer (the features) → classifier."""

    def __init__(self, in_channels: int, num_classes: int, channels: int, hidden: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * channels), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
            nn.Linear(2 * channels, hidden), nn.BatchNorm1d(hidden), nn.ReLU())
        self.feature_dim = hidden
        self.classifier = nn.Linear(hidden, num_classes, bias=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden layer's post-ReLU activations, [B, hidden]."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def make_small_cnn(num_classes: int, width: float, input_shape, channels: int = 16,
                   hidden: int = 64) -> SmallCNN:
    """Model factory: `width` scales the conv channels and the hidden units; the input channels
    come from `input_shape` (C, H, W), so grey and colour images both work."""
    if input_shape is None or len(input_shape) != 3:
        raise ValueError(f"make_small_cnn needs images (C, H, W), got input shape {input_shape}")
    return SmallCNN(int(input_shape[0]), num_classes, max(1, round(channels * width)),
                    max(1, round(hidden * width)))


class Wrapped(nn.Module):
    """Any network whose last layer is a Linear, split into `features` (all but that layer)
    and `classifier` (that layer)."""

    def __init__(self, body: nn.Module, classifier: nn.Linear):
        super().__init__()
        self.body, self.classifier = body, classifier
        self.feature_dim = classifier.in_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))


def make_mobilenet_v3_small(num_classes: int, width: float, input_shape) -> Wrapped:
    """Another torchvision model in the contract: MobileNet-V3-Small (width = its `width_mult`),
    its first conv taking the dataset's channels; the head's last Linear is the classifier and
    the head's earlier layers (Linear → Hardswish → Dropout) belong to the features."""
    from torchvision.models import mobilenet_v3_small

    net = mobilenet_v3_small(weights=None, num_classes=num_classes, width_mult=width)
    first = net.features[0][0]
    if input_shape[0] != first.in_channels:
        net.features[0][0] = nn.Conv2d(int(input_shape[0]), first.out_channels, 3, stride=2,
                                       padding=1, bias=False)
    classifier = net.classifier[-1]
    net.classifier = net.classifier[:-1]
    return Wrapped(net, classifier)
