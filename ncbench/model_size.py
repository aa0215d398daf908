"""How large a built-in model would be: its parameter count, computed without building it.

`parameter_count(name, num_classes, width, input_shape, **model_params)` is the exact number of
parameters (`ncbench.models.count_parameters`) of the built-in model `name` — by arithmetic, so
that an absurd `width` or `depth` is refused in a millisecond instead of building (or hanging
on) a model of 10^20 weights. `check_size` refuses a model over `MAX_PARAMETERS` (documented in
docs/experiments-toml.md) with a `ParameterError` that says how large it would be. Model
construction arguments are bounded here too (`MAX_DEPTH`). A user model
("package.module:callable") has no formula: `parameter_count` returns None for it.

Pure Python (no torch): the pre-flight calls it before the model is built on the meta device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ncbench.errors import ParameterError

__all__ = ["MAX_PARAMETERS", "MAX_DEPTH", "parameter_count", "check_size", "check_depth",
           "cnn1d_layout_error"]

#: The largest model ncbench builds: 2·10^9 parameters (8 GB of float32 weights alone).
MAX_PARAMETERS = 2_000_000_000
#: The most hidden layers an `mlp` may have.
MAX_DEPTH = 1000

_DEFAULT_IMAGE_SHAPE = (3, 32, 32)
_RESNET = {"wrn50": ("bottleneck", (3, 4, 6, 3)), "wrn18": ("basic", (2, 2, 2, 2)),
           "resnet18": ("basic", (2, 2, 2, 2))}

# torchvision's models (ncbench.models_tv): their configurations live here, torch-free, so that
# the builders and the counts below share them.
#: The widest torchvision model built (a meta-device build at an absurd width could hang).
MAX_TV_WIDTH = 64.0
#: The smallest image side a VGG takes (five 2×2 max-pools).
VGG_MIN_SIZE = 32
#: torchvision.models.vgg.cfgs "A" and "B": conv channels, "M" a 2×2 max-pool.
VGG_CFGS: dict[str, tuple] = {
    "vgg11_bn": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13_bn": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")}
TV_RESNETS = {"resnet34": ("basic", (3, 4, 6, 3)), "resnet50": ("bottleneck", (3, 4, 6, 3))}
#: name -> (growth rate, block layout) of torchvision's DenseNets (bn_size 4).
DENSENETS = {"densenet121": (32, (6, 12, 24, 16))}


def check_depth(depth: Any) -> int:
    """`depth` as an int in [1, MAX_DEPTH], else ParameterError (key "depth")."""
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_DEPTH:
        raise ParameterError(f"mlp depth must be an integer in [1, {MAX_DEPTH}], got {depth!r}",
                             key="depth")
    return depth


def _positive_int(key: str, value: Any, limit: int = 2 ** 31) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise ParameterError(f"{key} must be an integer in [1, {limit}], got {value!r}", key=key)
    return value


def _scaled(channels: int, width: float, what: str = "channels") -> int:
    """round(channels · width), as `ncbench.models.scaled` (the same message)."""
    if not math.isfinite(channels * width) or channels * width > 2 ** 62:
        raise ParameterError(f"width {width!r} gives {channels}·{width!r} {what}: too large",
                             key="width")
    n = int(round(channels * width))
    if n < 1:
        raise ParameterError(f"width {width} gives {channels}·{width} → {n} {what}; "
                             f"use a width ≥ {0.5 / channels:.3g}", key="width")
    return n


def _bn(c: int) -> int:
    return 2 * c


def _resnet_count(kind: str, layers: Sequence[int], planes: Sequence[int], num_classes: int,
                  in_channels: int, base_width: int, stem: str) -> int:
    expansion = 4 if kind == "bottleneck" else 1
    k = 7 if stem == "imagenet" else 3
    total = in_channels * planes[0] * k * k + _bn(planes[0])
    inplanes = planes[0]
    for i, (p, n) in enumerate(zip(planes, layers)):
        stride = 1 if i == 0 else 2
        for b in range(n):
            if kind == "bottleneck":
                w = int(p * (base_width / 64.0))
                total += inplanes * w + _bn(w) + w * w * 9 + _bn(w) + w * p * 4 + _bn(p * 4)
            else:
                total += inplanes * p * 9 + _bn(p) + p * p * 9 + _bn(p)
            if b == 0 and (stride != 1 or inplanes != p * expansion):
                total += inplanes * p * expansion + _bn(p * expansion)
            inplanes = p * expansion
    feature_dim = planes[3] * expansion
    return total + feature_dim * num_classes + num_classes


def cnn1d_layout_error(shape: Sequence[int] | None) -> ParameterError:
    """The error of `cnn1d` given inputs that are not 1-D signals (C, L): which model to use."""
    got = "no input_shape was given" if shape is None else (
        f"the dataset gives images of shape (C, H, W) = {tuple(shape)}; use model 'wrn18' or "
        "'resnet18' for images" if len(shape) == 3 else
        f"the dataset gives vectors of shape {tuple(shape)}; use model 'mlp' for vectors")
    return ParameterError(f"model 'cnn1d' is a 1-D convolutional network and needs 1-D signals "
                          f"(C, L), but {got}", key="model")


def _cnn1d_count(shape: tuple[int, ...] | None, num_classes: int, width: float) -> int:
    """`ncbench.models.CNN1D`: 3 bias-free Conv1d(k=3) + BN, flatten, Linear + BN, classifier."""
    if shape is None or len(shape) != 2:
        raise cnn1d_layout_error(shape)
    c_in, n = shape
    total = 0
    for c in (_scaled(32, width), _scaled(64, width), _scaled(128, width)):
        total += c_in * c * 3 + _bn(c)
        c_in, n = c, (n + 1) // 2
    h = _scaled(256, width, "hidden units")
    return total + c_in * n * h + h + _bn(h) + h * num_classes + num_classes


def check_stem(stem: Any) -> str:
    """`stem` if "cifar" or "imagenet", else ParameterError (key "stem")."""
    if stem not in ("cifar", "imagenet"):
        raise ParameterError(f"unknown stem {stem!r}; use 'cifar' or 'imagenet'", key="stem")
    return stem


def _tv_width(name: str, width: float) -> float:
    if not width <= MAX_TV_WIDTH:
        raise ParameterError(f"model '{name}' takes widths up to {MAX_TV_WIDTH:g}, got {width!r}",
                             key="width")
    return width


def tv_resnet_width_per_group(name: str, width: float) -> int | None:
    """torchvision's `width_per_group` for `resnet50` (round(64·X)); None for `resnet34`, whose
    BasicBlocks have no width knob (X ≠ 1: ParameterError)."""
    _tv_width(name, width)
    if TV_RESNETS[name][0] == "bottleneck":
        return _scaled(64, width, "width_per_group")
    if width != 1:
        raise ParameterError(f"model '{name}' has no width knob (torchvision's BasicBlock ResNets "
                             f"fix their channels): use width = 1, or 'wrn18' for a basic-block "
                             f"ResNet whose channels scale", key="width")
    return None


def vgg_config(name: str, width: float) -> tuple[tuple, int]:
    """(torchvision's VGG config with every conv channel × X, the head's hidden units round(4096·X))."""
    _tv_width(name, width)
    cfg = tuple(v if v == "M" else _scaled(v, width) for v in VGG_CFGS[name])
    return cfg, _scaled(4096, width, "hidden units")


def densenet_config(name: str, width: float) -> tuple[int, tuple[int, ...], int]:
    """(growth rate round(32·X), block layout, initial features 2·growth) of a DenseNet."""
    _tv_width(name, width)
    growth, blocks = DENSENETS[name]
    g = _scaled(growth, width, "growth rate")
    return g, blocks, 2 * g


def _tv_count(name: str, num_classes: int, width: float, c: int, stem: str) -> int:
    check_stem(stem)
    if name in TV_RESNETS:
        kind, layers = TV_RESNETS[name]
        wpg = tv_resnet_width_per_group(name, width)
        return _resnet_count(kind, layers, (64, 128, 256, 512), num_classes, c, wpg or 64, stem)
    if name in VGG_CFGS:
        cfg, h = vgg_config(name, width)
        total, c_in = 0, c
        for v in cfg:
            if v != "M":
                total += c_in * v * 9 + v + _bn(v)
                c_in = v
        side = 7 if stem == "imagenet" else 1
        return total + c_in * side * side * h + h + h * h + h + h * num_classes + num_classes
    growth, blocks, n = densenet_config(name, width)
    total = c * n * (49 if stem == "imagenet" else 9) + _bn(n)
    inner = 4 * growth  # bn_size · growth
    for i, layers in enumerate(blocks):
        for _ in range(layers):
            total += _bn(n) + n * inner + _bn(inner) + inner * growth * 9
            n += growth
        if i < len(blocks) - 1:
            total += _bn(n) + n * (n // 2)
            n //= 2
    return total + _bn(n) + n * num_classes + num_classes


def parameter_count(name: str, num_classes: int, width: float = 1.0,
                    input_shape: Sequence[int] | None = None, **kw: Any) -> int | None:
    """The exact parameter count of built-in model `name` (None for any other model). Bad
    construction arguments (a `depth` out of range, a non-integer `in_features`) raise
    ParameterError naming the key, as the factory would."""
    shape = tuple(int(s) for s in input_shape) if input_shape is not None else None
    if name == "mlp":
        depth = check_depth(kw.get("depth", 3))
        if kw.get("in_features") is not None:
            d_in = _positive_int("in_features", kw["in_features"])
        else:
            shape = shape or _DEFAULT_IMAGE_SHAPE
            if kw.get("in_channels") is not None and len(shape) == 3:
                shape = (_positive_int("in_channels", kw["in_channels"]), *shape[1:])
            d_in = math.prod(shape)
        h = _scaled(256, width, "hidden units")
        return (d_in * h + h + _bn(h)) + (depth - 1) * (h * h + h + _bn(h)) + h * num_classes + num_classes
    if name == "cnn1d":
        return _cnn1d_count(shape, num_classes, width)
    if name in TV_RESNETS or name in VGG_CFGS or name in DENSENETS:
        if kw.get("in_channels") is not None:
            c = _positive_int("in_channels", kw["in_channels"])
        elif shape is not None and len(shape) != 3:
            raise ParameterError(f"model '{name}' is a convolutional network and needs image "
                                 f"inputs (C, H, W), but the dataset gives vectors of shape "
                                 f"{shape}; use model 'mlp' for vector data", key="model")
        else:
            c = (shape or _DEFAULT_IMAGE_SHAPE)[0]
        return _tv_count(name, num_classes, width, c, kw.get("stem", "cifar"))
    if name in _RESNET:
        kind, layers = _RESNET[name]
        if kw.get("in_channels") is not None:
            c = _positive_int("in_channels", kw["in_channels"])
        else:
            c = (shape or _DEFAULT_IMAGE_SHAPE)[0]
        stem = kw.get("stem", "cifar")
        if kind == "bottleneck":
            return _resnet_count(kind, layers, (64, 128, 256, 512), num_classes, c,
                                 _scaled(64, width, "width_per_group"), stem)
        planes = [_scaled(p, width) for p in (64, 128, 256, 512)]
        return _resnet_count(kind, layers, planes, num_classes, c, 64, stem)
    return None


def check_size(name: str, num_classes: int, width: float = 1.0,
               input_shape: Sequence[int] | None = None, **kw: Any) -> int | None:
    """`parameter_count`, refused with ParameterError (key "width", or "model_params" when the
    model options make the difference) when over MAX_PARAMETERS."""
    n = parameter_count(name, num_classes, width, input_shape, **kw)
    if n is None or n <= MAX_PARAMETERS:
        return n
    plain = parameter_count(name, num_classes, width, input_shape)
    key = "width" if plain is not None and plain > MAX_PARAMETERS else "model_params"
    raise ParameterError(f"model '{name}' at width {width:g} would have {n:.3g} parameters, over "
                         f"ncbench's budget of {MAX_PARAMETERS:.0e}; use a smaller width"
                         + (" or smaller model_params" if key == "model_params" else ""), key=key)
