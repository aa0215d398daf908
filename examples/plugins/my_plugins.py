"""Example ncbench plug-ins: a loss and a model, named in experiments.toml as "my_plugins:NAME".

ncbench imports this module from the folder of the experiments.toml that names it (and from
sys.path), in the manager and in every worker: no PYTHONPATH needed. See docs/plugins.md.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MulticlassHinge(nn.Module):
    """Crammer-Singer multi-class hinge loss: mean of max(0, margin + max_{j != y} z_j - z_y)."""

    def __init__(self, num_classes: int, margin: float = 1.0):
        super().__init__()
        self.num_classes, self.margin = num_classes, float(margin)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        true = logits.gather(1, target.unsqueeze(1)).squeeze(1)
        others = logits.masked_fill(F.one_hot(target, self.num_classes).bool(), float("-inf"))
        return F.relu(self.margin + others.max(dim=1).values - true).mean()


def make_hinge(num_classes: int, margin: float = 1.0) -> nn.Module:
    """Loss factory: called as make_hinge(num_classes=K, **loss_params)."""
    return MulticlassHinge(num_classes, margin)


class TinyMLP(nn.Module):
    """Flatten -> Linear -> ReLU (`features`, d = hidden) -> `classifier` Linear(hidden, K)."""

    def __init__(self, in_features: int, num_classes: int, hidden: int):
        super().__init__()
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden), nn.ReLU())
        self.classifier = nn.Linear(hidden, num_classes, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def make_tiny_mlp(num_classes: int, width: float, input_shape, hidden: int = 64) -> nn.Module:
    """Model factory: called as make_tiny_mlp(num_classes, width, input_shape, **model_params);
    `width` scales the hidden size."""
    n_in = 1
    for d in input_shape:
        n_in *= int(d)
    return TinyMLP(n_in, num_classes, max(1, round(hidden * width)))
