"""Network architectures, reachable by name: `make_model("wrn50", num_classes=10, width=2)`.

Every model built here holds
- `features(x) -> [B, d]`: the penultimate ("last-layer") features h that Neural Collapse is
  measured on (after global average pooling for the ResNets, after the last hidden
  BatchNorm+ReLU for the MLP);
- `classifier`: `nn.Linear(d, K, bias=True)`, the final linear classifier (W, b);
- `feature_dim`: d (int);
- `forward(x) = classifier(features(x))` (logits `[B, K]`).

Models (width X scales them as stated; see docs/models-data.md):
- `wrn50`: the paper code's WideResNet-50 — torchvision's ResNet with `Bottleneck` blocks in the
  [3, 4, 6, 3] layout, CIFAR stem (3×3 stride-1 first conv, BN, ReLU, no max-pool), width X
  multiplies only the bottleneck's inner channels (`width_per_group = round(64·X)`, so X = 2 is
  torchvision's `wide_resnet50_2`), block outputs keep 4·planes channels: d = 2048 at every X.
- `wrn18`: basic-block ResNet-18 ([2, 2, 2, 2]) whose channels all scale with X
  (round(64X), round(128X), round(256X), round(512X)); d = round(512X). Same CIFAR stem; used for
  miniImageNet (84×84: global average pooling makes any input size work; `stem="imagenet"`
  gives torchvision's 7×7/2 conv + max-pool stem instead, 16× cheaper at 84 px).
- `resnet18`: the standard CIFAR ResNet-18 (= `wrn18` at X = 1 unless a width is given).
- `mlp`: flattens its input; `depth` hidden layers (default 3) of round(256X) units, each
  Linear → BatchNorm1d → ReLU; d = round(256X).
- `cnn1d`: for 1-D signals (C, L) (MNIST-1D): three blocks Conv1d(k=3, stride 2, pad 1) →
  BatchNorm1d → ReLU of round(32X), round(64X), round(128X) channels (L → ⌈L/2⌉ each), flatten,
  then one hidden Linear → BatchNorm1d → ReLU of round(256X) units; d = round(256X).

`input_shape` is what one sample looks like to the model: (C, H, W) for images, (C, L) for 1-D
signals or (D,) for vectors (`SplitDataset.input_shape`), so the pipeline calls
`make_model(name, ds.num_classes, width, input_shape=ds.input_shape)`.
Extra models: name `"package.module:callable"`, a factory `(num_classes, width, input_shape,
**kw)`; a new built-in is declared in `ncbench.names.MODELS`, then `@MODELS.register("name")`.
torchvision's own `vgg11_bn`, `vgg13_bn`, `resnet34`, `resnet50` and `densenet121` come from
`ncbench.models_tv` (registered here). `check_contract` checks any model against the contract
above (the run's pre-flight runs it, with a meta-device forward pass, on every model).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ncbench.errors import ParameterError
from ncbench import names
from ncbench.model_size import check_depth, cnn1d_layout_error
from ncbench.registry import Registry

ModelFactory = Callable[..., nn.Module]
MODELS: Registry[ModelFactory] = Registry("model", declared=names.MODELS)

#: input shape assumed when none is given: CIFAR images.
DEFAULT_IMAGE_SHAPE: tuple[int, int, int] = (3, 32, 32)


def make_model(name: str, num_classes: int, width: float = 1.0, *,
               input_shape: Sequence[int] | None = None, in_channels: int | None = None,
               **kw) -> nn.Module:
    """Build model `name` for `num_classes` classes at width multiplier `width`.

    `input_shape`: one sample's shape, (C, H, W), (C, L) or (D,); defaults to (3, 32, 32) for the conv
    nets (which accept any spatial size thanks to global average pooling). `in_channels`
    overrides C for the conv nets. Other keyword arguments go to the model (e.g. `depth` for
    `mlp`). Unknown names raise `UnknownNameError` listing the known ones; bad widths, shapes or
    model options raise `ParameterError` whose `key` names the setting.
    """
    factory = MODELS.get(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ParameterError(f"num_classes must be a positive integer, got {num_classes!r}",
                             key="num_classes")
    try:
        width = float(width)
    except (TypeError, ValueError):
        raise ParameterError(f"width must be a positive number, got {width!r}", key="width") from None
    if not math.isfinite(width) or width <= 0:
        raise ParameterError(f"width must be a positive number, got {width!r}", key="width")
    shape = tuple(int(s) for s in input_shape) if input_shape is not None else None
    if shape is not None and (len(shape) not in (1, 2, 3) or any(s < 1 for s in shape)):
        raise ParameterError(f"input_shape must be (C, H, W), (C, L) or (D,) with positive sizes, "
                             f"got {tuple(input_shape)}", key="input_shape")
    if in_channels is not None:
        kw["in_channels"] = int(in_channels)
    from ncbench.data import check_keywords

    check_keywords(factory, kw, f"model '{name}'", skip=("num_classes", "width", "input_shape"))
    model = factory(num_classes, width, shape, **kw)
    if not isinstance(model, nn.Module):
        raise ParameterError(f"'{name}' is not a model factory: it returned "
                             f"{type(model).__name__}, not a torch.nn.Module", key="model")
    check_contract(model, name, num_classes, forward=False)  # cheap; the forward: preflight
    return model


def model_names() -> list[str]:
    """The registered model names."""
    return MODELS.names()


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not) in `model`."""
    return sum(p.numel() for p in model.parameters())


#: The batch size of the contract check's forward pass.
_PROBE_BATCH = 2


def check_contract(model: nn.Module, name: str, num_classes: int,
                   input_shape: Sequence[int] | None = None, *, forward: bool = True) -> int:
    """ParameterError (key "model") naming what is wrong unless `model` follows the model
    contract: a `classifier` that is an `nn.Linear(d, K)` with K = `num_classes`, a callable
    `features`, `feature_dim` (if it has one) equal to d, and — with `forward` — `features(x)`
    of a batch of 2 samples of `input_shape` (zeros on the model's device, in eval mode: on the
    meta device no compute at all) shaped [2, d] and `model(x)` shaped [2, K]. Returns d.

    A forward pass that fails raises ParameterError with its first line — except, on the meta
    device, an operation that meta tensors cannot run (`.item()`, data-dependent shapes): that
    error is raised as it is (NotImplementedError / RuntimeError), so that the caller can check
    a real build instead."""
    what = f"model '{name}' does not follow the model contract"
    clf = getattr(model, "classifier", None)
    if clf is None:
        raise ParameterError(f"{what}: it has no `classifier` (the final nn.Linear(d, K) whose "
                             f"weight and bias the NC metrics read)", key="model")
    if not isinstance(clf, nn.Linear):
        raise ParameterError(f"{what}: its `classifier` is a {type(clf).__name__}, not an "
                             f"nn.Linear(d, K)", key="model")
    if clf.out_features != num_classes:
        raise ParameterError(f"{what}: its classifier has {clf.out_features} outputs, but there "
                             f"are K = {num_classes} classes", key="model")
    if not callable(getattr(model, "features", None)):
        raise ParameterError(f"{what}: it has no `features` method (features(x) -> [B, d], the "
                             f"penultimate features the classifier takes)", key="model")
    d = int(clf.in_features)
    fd = getattr(model, "feature_dim", None)
    if fd is not None and (isinstance(fd, bool) or not isinstance(fd, numbers.Integral)
                           or int(fd) != d):
        raise ParameterError(f"{what}: its feature_dim is {fd!r}, but its classifier takes "
                             f"d = {d} inputs", key="model")
    if not forward:
        return d
    shape = tuple(int(s) for s in (input_shape or DEFAULT_IMAGE_SHAPE))
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros((_PROBE_BATCH, *shape), device=device)
    batch = list(x.shape)
    was = model.training
    model.eval()
    try:
        h = _probe(model.features, x, name, "features(x)", batch)
        if not isinstance(h, torch.Tensor) or tuple(h.shape) != (_PROBE_BATCH, d):
            got = list(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
            raise ParameterError(f"{what}: features(x) of a batch of shape {batch} gives {got}; "
                                 f"it must be [B, d] = [{_PROBE_BATCH}, {d}] (d = "
                                 f"classifier.in_features)", key="model")
        out = _probe(model, x, name, "forward(x)", batch)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (_PROBE_BATCH, num_classes):
            got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ParameterError(f"{what}: forward(x) of a batch of shape {batch} gives {got}, "
                                 f"not the logits [B, K] = [{_PROBE_BATCH}, {num_classes}]",
                                 key="model")
    finally:
        model.train(was)
    return d


def _probe(fn: Callable, x: torch.Tensor, name: str, step: str, batch: list[int]):
    """`fn(x)` without gradients; its failure as a ParameterError with the first line of the
    message (see `check_contract` for the meta device's own refusals, raised as they are)."""
    try:
        with torch.no_grad():
            return fn(x)
    except Exception as exc:  # noqa: BLE001 - the user's code, in its own words
        text = str(exc).strip()
        if x.device.type == "meta" and (isinstance(exc, NotImplementedError) or "meta" in text.lower()):
            raise
        first = (text.splitlines() or [""])[0]
        raise ParameterError(f"model '{name}': {step} fails on a batch of shape {batch}: "
                             f"{type(exc).__name__}" + (f": {first}" if first else ""),
                             key="model") from None


def scaled(channels: int, width: float, what: str = "channels") -> int:
    """round(channels · width), which must be ≥ 1 (else ParameterError naming `width`)."""
    n = int(round(channels * width))
    if n < 1:
        raise ParameterError(f"width {width} gives {channels}·{width} → {n} {what}; "
                             f"use a width ≥ {0.5 / channels:.3g}", key="width")
    return n


# --------------------------------------------------------------------------------------------
# ResNets: torchvision's blocks and layer builder, CIFAR stem, separate `features`/`classifier`.
# The class lives in ncbench/_resnet.py, imported on first use: importing torchvision takes
# seconds, which every worker process would pay even for the MLP.
# --------------------------------------------------------------------------------------------


def __getattr__(name: str):
    """`CifarResNet`, `BasicBlock`, `Bottleneck`, `ResNet`: from ncbench._resnet, lazily."""
    if name in ("CifarResNet", "BasicBlock", "Bottleneck", "ResNet"):
        from ncbench import _resnet

        return getattr(_resnet, name)
    raise AttributeError(f"module 'ncbench.models' has no attribute {name!r}")



def _image_channels(name: str, input_shape: tuple[int, ...] | None, in_channels: int | None) -> int:
    if in_channels is not None:
        return int(in_channels)
    shape = input_shape or DEFAULT_IMAGE_SHAPE
    if len(shape) == 2:
        raise ParameterError(f"model '{name}' is a 2-D convolutional network and needs image "
                             f"inputs (C, H, W), but the dataset gives 1-D signals of shape (C, L) "
                             f"= {shape}; use model 'cnn1d' (or 'mlp') for 1-D signals", key="model")
    if len(shape) != 3:
        raise ParameterError(f"model '{name}' is a convolutional network and needs image inputs "
                             f"(C, H, W), but the dataset gives vectors of shape {shape}; use model "
                             f"'mlp' for vector data", key="model")
    return int(shape[0])


@MODELS.register("wrn50")
def wrn50(num_classes: int, width: float = 1.0, input_shape: tuple[int, ...] | None = None, *,
          in_channels: int | None = None, zero_init_residual: bool = False,
          stem: str = "cifar") -> CifarResNet:
    """The paper code's WideResNet-50-X: Bottleneck [3, 4, 6, 3], CIFAR stem, GAP, d = 2048.

    X multiplies only the bottleneck's inner (3×3) channels: `width_per_group = round(64·X)`
    (X = 2 → 128, torchvision's `wide_resnet50_2`). Widths whose 64·X is not an integer are
    rounded to the nearest integer width_per_group (e.g. X = 0.3 → 19); inner channels are then
    torchvision's `int(planes · width_per_group / 64)`.
    """
    from ncbench._resnet import Bottleneck, CifarResNet

    c = _image_channels("wrn50", input_shape, in_channels)
    wpg = scaled(64, width, "width_per_group")
    model = CifarResNet(Bottleneck, [3, 4, 6, 3], [64, 128, 256, 512], num_classes,
                        width_per_group=wpg, in_channels=c, zero_init_residual=zero_init_residual,
                        stem=stem)
    model.width = width
    return model


def _basic_resnet18(name: str, num_classes: int, width: float, input_shape, in_channels,
                    zero_init_residual: bool, stem: str) -> CifarResNet:
    from ncbench._resnet import BasicBlock, CifarResNet

    c = _image_channels(name, input_shape, in_channels)
    planes = [scaled(p, width) for p in (64, 128, 256, 512)]
    model = CifarResNet(BasicBlock, [2, 2, 2, 2], planes, num_classes, in_channels=c,
                        zero_init_residual=zero_init_residual, stem=stem)
    model.width = width
    return model


@MODELS.register("wrn18")
def wrn18(num_classes: int, width: float = 1.0, input_shape: tuple[int, ...] | None = None, *,
          in_channels: int | None = None, zero_init_residual: bool = False,
          stem: str = "cifar") -> CifarResNet:
    """WideResNet-18-X: BasicBlock [2, 2, 2, 2] with all channels × X, CIFAR stem, d = round(512X)."""
    return _basic_resnet18("wrn18", num_classes, width, input_shape, in_channels, zero_init_residual, stem)


@MODELS.register("resnet18")
def resnet18(num_classes: int, width: float = 1.0, input_shape: tuple[int, ...] | None = None, *,
             in_channels: int | None = None, zero_init_residual: bool = False,
             stem: str = "cifar") -> CifarResNet:
    """Standard CIFAR ResNet-18 (3×3 stride-1 stem, no max-pool); width scales channels as wrn18."""
    return _basic_resnet18("resnet18", num_classes, width, input_shape, in_channels, zero_init_residual, stem)


# torchvision's own architectures by name (vgg11_bn, vgg13_bn, resnet34, resnet50, densenet121):
# ncbench/models_tv.py, which imports torchvision only when one is built.
from ncbench import models_tv as _tv  # noqa: E402

for _name in _tv.TV_MODELS:
    MODELS.register(_name)(getattr(_tv, _name))


# --------------------------------------------------------------------------------------------
# MLP
# --------------------------------------------------------------------------------------------


class BodyClassifier(nn.Module):
    """A model that is `body` (input → features `[B, d]`) then `classifier` (`nn.Linear(d, K)`):
    `features(x) = body(x)`, `forward(x) = classifier(body(x))`. Subclasses build the body and
    call `_finish(body, d, num_classes)`."""

    def _finish(self, body: nn.Module, feature_dim: int, num_classes: int) -> None:
        self.body = body
        self.feature_dim = int(feature_dim)
        self.classifier = nn.Linear(self.feature_dim, num_classes, bias=True)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate (last hidden layer's) activations `[B, d]`."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x))


class MLP(BodyClassifier):
    """Flatten → `depth` × (Linear → BatchNorm1d → ReLU) → `classifier`.

    Holds `body` (the hidden layers, an `nn.Sequential` starting with `nn.Flatten`),
    `classifier` (`nn.Linear(hidden, num_classes)`), `in_features`, `hidden`, `depth` and
    `feature_dim` (= hidden). Features are the last hidden layer's post-ReLU activations.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: int, depth: int = 3):
        super().__init__()
        if depth < 1:
            raise ParameterError(f"mlp depth must be ≥ 1, got {depth}", key="depth")
        self.in_features, self.hidden, self.depth = int(in_features), int(hidden), int(depth)
        layers: list[nn.Module] = [nn.Flatten(1)]
        d_in = self.in_features
        for _ in range(self.depth):
            layers += [nn.Linear(d_in, self.hidden), nn.BatchNorm1d(self.hidden), nn.ReLU(inplace=True)]
            d_in = self.hidden
        self._finish(nn.Sequential(*layers), self.hidden, num_classes)


@MODELS.register("mlp")
def mlp(num_classes: int, width: float = 1.0, input_shape: tuple[int, ...] | None = None, *,
        depth: int = 3, in_features: int | None = None, in_channels: int | None = None) -> MLP:
    """MLP with `depth` hidden layers of round(256·width) units; input size = prod(input_shape)."""
    if in_features is None:
        shape = input_shape or DEFAULT_IMAGE_SHAPE
        if in_channels is not None and len(shape) == 3:
            shape = (int(in_channels), *shape[1:])
        in_features = math.prod(shape)
    model = MLP(int(in_features), num_classes, scaled(256, width, "hidden units"), depth=check_depth(depth))
    model.width = width
    return model


# --------------------------------------------------------------------------------------------
# 1-D CNN (MNIST-1D)
# --------------------------------------------------------------------------------------------


class CNN1D(BodyClassifier):
    """3 × (Conv1d k=3, stride 2, pad 1 → BatchNorm1d → ReLU) → flatten → Linear → BN → ReLU.

    Holds `body` (an `nn.Sequential`: the conv blocks, `nn.Flatten`, the hidden layer),
    `classifier` (`nn.Linear(hidden, num_classes)`), `in_channels`, `length`, `channels` (the
    three conv widths), `hidden` and `feature_dim` (= hidden). Each block halves the length
    (L → ⌈L/2⌉); the flattened `channels[-1] · L₃` values feed the hidden layer, whose post-ReLU
    activations are the features. Convolutions have no bias (BatchNorm follows), as in the ResNets.
    """

    def __init__(self, in_channels: int, length: int, num_classes: int,
                 channels: Sequence[int], hidden: int):
        super().__init__()
        self.in_channels, self.length = int(in_channels), int(length)
        self.channels, self.hidden = tuple(int(c) for c in channels), int(hidden)
        layers: list[nn.Module] = []
        c_in, n = self.in_channels, self.length
        for c in self.channels:
            layers += [nn.Conv1d(c_in, c, kernel_size=3, stride=2, padding=1, bias=False),
                       nn.BatchNorm1d(c), nn.ReLU(inplace=True)]
            c_in, n = c, (n + 1) // 2
        layers += [nn.Flatten(1), nn.Linear(c_in * n, self.hidden), nn.BatchNorm1d(self.hidden),
                   nn.ReLU(inplace=True)]
        self._finish(nn.Sequential(*layers), self.hidden, num_classes)


@MODELS.register("cnn1d")
def cnn1d(num_classes: int, width: float = 1.0, input_shape: tuple[int, ...] | None = None) -> CNN1D:
    """1-D CNN for (C, L) signals: conv channels round(32X), round(64X), round(128X), d = round(256X)."""
    if input_shape is None or len(input_shape) != 2:
        raise cnn1d_layout_error(input_shape)
    channels = [scaled(c, width) for c in (32, 64, 128)]
    model = CNN1D(input_shape[0], input_shape[1], num_classes, channels,
                  scaled(256, width, "hidden units"))
    model.width = width
    return model
