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

__all__ = ["MAX_PARAMETERS", "MAX_DEPTH", "parameter_count", "check_size", "check_depth"]

#: The largest model ncbench builds: 2·10^9 parameters (8 GB of float32 weights alone).
MAX_PARAMETERS = 2_000_000_000
#: The most hidden layers an `mlp` may have.
MAX_DEPTH = 1000

_DEFAULT_IMAGE_SHAPE = (3, 32, 32)
_RESNET = {"wrn50": ("bottleneck", (3, 4, 6, 3)), "wrn18": ("basic", (2, 2, 2, 2)),
           "resnet18": ("basic", (2, 2, 2, 2))}


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
