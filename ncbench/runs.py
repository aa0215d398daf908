"""`RunSpec`: one fully resolved training run, and its stable run id.

A RunSpec holds every value a worker needs to train one model (dataset, model, loss, width,
epochs, seed and the recipe) — nothing is left to look up elsewhere. `ncbench.config.expand`
builds them from experiments.toml; the worker gets one (as `spec.json`), the store registers them.

Run id
------
`spec.run_id` is the first 12 hex digits of the SHA-256 of a canonical JSON form of the spec:

* keys sorted (so the id does not depend on the order of keys in the TOML file);
* keys whose value equals their default (`RunSpec.DEFAULTS`) are left out, so adding a new key
  with a default to RunSpec later never changes the id of an existing run;
* the experiment name is included (two experiments with the same settings are distinct runs);
* the *placement* keys `device`, `data_root`, `download`, `compile`, `channels_last`,
  `plugin_dir` are left out
  (`RunSpec.PLACEMENT_KEYS`): they say where and how fast a run is computed, not what is computed,
  so moving a config to another machine, or forcing `device = "cpu"`, keeps the run ids and the
  results already stored;
* numbers inside the `*_params` tables that are integral floats are written as integers, so
  `{ gamma = 3 }` and `{ gamma = 3.0 }` give the same id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = ["RunSpec", "canonical_json"]

_PARAM_FIELDS = ("loss_params", "dataset_params", "model_params")


@dataclass(frozen=True)
class RunSpec:
    """One fully resolved run. Frozen; `*_params` are plain dicts copied at construction.

    `width` is a float, `epochs`/`seed` ints, `lr_milestones` fractions of `epochs` at which the
    learning rate is multiplied by `lr_gamma`, `grad_clip` None or 0 means no clipping,
    `per_class` None means the whole training set (else a balanced subset of n per class),
    `data_root` None means the data module's default location. `plugin_dir` is the folder
    "package.module:callable" plug-ins are imported from besides `sys.path` (the config's folder,
    set by `ncbench.config.expand`; None: `sys.path` only).
    """

    experiment: str
    dataset: str
    model: str
    loss: str
    width: float
    epochs: int
    seed: int
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grad_clip: float | None = 2.0
    eval_every: int = 5
    nc_extra: bool = True  # the extra NC measures (ncbench.nc_measures) at each evaluation
    val_fraction: float = 0.1
    loss_params: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    data_seed: int = 0
    per_class: int | None = None
    data_root: str | None = None
    download: bool = False
    dataset_params: dict[str, Any] = field(default_factory=dict)
    model_params: dict[str, Any] = field(default_factory=dict)
    lr_milestones: tuple[float, ...] = (3 / 7, 5 / 7)
    lr_gamma: float = 0.1
    precision: str = "fp32"
    compile: bool = False
    channels_last: bool = True
    plugin_dir: str | None = None

    # Filled in after the class body (needs the fields).
    DEFAULTS: ClassVar[dict[str, Any]]
    REQUIRED: ClassVar[tuple[str, ...]]
    FIELDS: ClassVar[tuple[str, ...]]
    # Keys that say where/how fast a run is computed, not what: left out of the run id.
    PLACEMENT_KEYS: ClassVar[tuple[str, ...]] = ("device", "data_root", "download", "compile",
                                                  "channels_last", "plugin_dir")

    def __post_init__(self) -> None:
        """Normalise types so that equal runs compare (and hash) equal: width 1 == 1.0, etc.

        Values are not validated here: experiments.toml is checked (with messages naming file
        and key) by `ncbench.config`, once. Only what cannot be normalised raises ValueError —
        a programmer's error when a RunSpec is built directly (a fractional epoch count, a
        `*_params` that is not a mapping)."""
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        for name in ("width", "lr", "momentum", "weight_decay", "val_fraction", "lr_gamma"):
            put(name, float(getattr(self, name)))
        for name in ("epochs", "seed", "batch_size", "eval_every", "data_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value:
                raise ValueError(f"RunSpec.{name} must be an integer, got {value!r}")
            put(name, int(value))
        if self.grad_clip is not None:
            put("grad_clip", float(self.grad_clip))
        if self.per_class is not None:
            put("per_class", int(self.per_class))
        if self.data_root is not None:
            put("data_root", str(self.data_root))
        if self.plugin_dir is not None:
            put("plugin_dir", str(self.plugin_dir))
        put("download", bool(self.download))
        put("nc_extra", bool(self.nc_extra))
        put("compile", bool(self.compile))
        put("channels_last", bool(self.channels_last))
        put("lr_milestones", tuple(float(m) for m in self.lr_milestones))
        for name in _PARAM_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise ValueError(f"RunSpec.{name} must be a mapping, got {value!r}")
            put(name, _plain(value))

    def __hash__(self) -> int:  # dict fields are not hashable; the run id identifies the run
        return hash(self.run_id)

    # -- identity ---------------------------------------------------------------------------
    @property
    def run_id(self) -> str:
        """12 hex digits of SHA-256 over `identity_json()` (see the module docstring)."""
        return hashlib.sha256(self.identity_json().encode()).hexdigest()[:12]

    def identity(self) -> dict[str, Any]:
        """The values that define the run id: non-default, non-placement keys (plus the 7 key
        columns and the experiment, always)."""
        out: dict[str, Any] = {}
        defaults = _defaults(type(self))  # of this class: a subclass may add fields
        for name, value in self.to_dict().items():
            if name in self.PLACEMENT_KEYS:
                continue
            if name in defaults and _same(value, _jsonable(defaults[name])):
                continue
            out[name] = _integral_params(value) if name in _PARAM_FIELDS else value
        return out

    def identity_json(self) -> str:
        return canonical_json(self.identity())

    # -- (de)serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready values (tuples become lists), in field order."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, strict: bool = True) -> "RunSpec":
        """Inverse of `to_dict`. Missing optional keys take their default. An unknown key raises
        ValueError when `strict`, else is ignored (e.g. a spec.json written by a newer version);
        `run_id`, if present (as in spec.json), is checked against the recomputed id."""
        data = dict(data)
        stored_id = data.pop("run_id", None)
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(fields))
        if unknown and strict:
            raise ValueError(f"unknown RunSpec key(s): {', '.join(unknown)}")
        missing = [k for k in RunSpec.REQUIRED if k not in data]
        if missing:
            raise ValueError(f"RunSpec is missing required key(s): {', '.join(missing)}")
        kwargs = {k: v for k, v in data.items() if k in fields}
        if "lr_milestones" in kwargs:
            kwargs["lr_milestones"] = tuple(kwargs["lr_milestones"])
        spec = cls(**kwargs)
        if stored_id is not None and strict and stored_id != spec.run_id:
            raise ValueError(f"run_id {stored_id!r} does not match the spec (computes {spec.run_id!r})")
        return spec

    @classmethod
    def from_json(cls, text: str, *, strict: bool = True) -> "RunSpec":
        return cls.from_dict(json.loads(text), strict=strict)

    def replace(self, **changes: Any) -> "RunSpec":
        """A copy with some fields changed (dataclasses.replace)."""
        return dataclasses.replace(self, **changes)

    @property
    def label(self) -> str:
        """A short human label, e.g. `demo/digits/mlp/ce/w0.5/e30/s0`."""
        return (f"{self.experiment}/{self.dataset}/{self.model}/{self.loss}/"
                f"w{self.width:g}/e{self.epochs}/s{self.seed}")


def _defaults(cls: type) -> dict[str, Any]:
    """Field name -> default value of a RunSpec (sub)class, for the fields that have one."""
    return {
        f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
        for f in dataclasses.fields(cls)
        if not (f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    }


RunSpec.FIELDS = tuple(f.name for f in dataclasses.fields(RunSpec))
RunSpec.REQUIRED = tuple(
    f.name for f in dataclasses.fields(RunSpec)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
)
RunSpec.DEFAULTS = _defaults(RunSpec)


def canonical_json(value: Any) -> str:
    """Compact JSON with sorted keys: the form that is hashed into a run id."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False,
                      ensure_ascii=True)


def _plain(value: Any) -> Any:
    """A deep copy as plain dicts/lists/scalars (so a frozen spec holds no shared mutables)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _integral_params(value: Any) -> Any:
    """Integral floats inside `*_params` written as ints (3.0 -> 3) for the run id."""
    if isinstance(value, dict):
        return {k: _integral_params(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_params(v) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def _same(a: Any, b: Any) -> bool:
    """Equality that tells bools from ints (True != 1) and compares floats exactly."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b
