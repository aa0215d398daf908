"""The run command's pre-flight: what only the real losses, models and datasets can judge.

`ncbench.config` checks every value's type and range and every name against `ncbench.names`
without importing torch. What needs the component itself is checked here, in the manager,
before anything is stored or any worker starts (this module imports torch and the registries,
so views never import it):

* `check_runs`: a "package.module:callable" name resolves, and every run's `loss_params` are
  accepted by its loss;
* `check_datasets`: each distinct dataset loads (or is downloaded, once), `per_class` fits its
  classes, `dataset_params` are accepted, and each distinct model builds (on the meta device)
  with its `width` and `model_params`.

A component refuses a setting with `ParameterError` (its `.key` names the parameter when it
knows it), `UnknownNameError`, or a TypeError/ValueError; `located` turns each into the one
ConfigError naming file (and line), experiment and key. `DatasetNotFoundError` passes through:
it already names the dataset, its expected path and the fix.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from ncbench.config import KEYS, Config, freeze
from ncbench.errors import ConfigError, NcbenchError, ParameterError
from ncbench.names import BUILTIN
from ncbench.runs import RunSpec

__all__ = ["check_runs", "check_datasets", "located"]

T = TypeVar("T")

#: The number of classes `check_runs` builds each loss for (loss parameters do not depend on it).
_PROBE_CLASSES = 10


def located(exc: BaseException, spec: RunSpec, key: str | None,
            config: Config | None = None) -> ConfigError:
    """A component's error about `spec` as a ConfigError naming `config`'s file and the line of
    `key` (when a config is given), the experiment and `key`."""
    reason = exc.reason if isinstance(exc, ParameterError) else str(exc)
    if config is not None:
        return config.error(reason, experiment=spec.experiment, key=key)
    return ConfigError(None, reason, experiment=spec.experiment, key=key)


def check_runs(specs: Sequence[RunSpec], config: Config | None = None) -> None:
    """Pre-flight check against the real registries (imports torch): every loss/model/dataset
    name that is not a declared built-in ("package.module:callable") resolves, and every run's
    loss_params are accepted by its loss. Errors are ConfigErrors naming the experiment and key
    (and the file, when `config` is given)."""
    from ncbench import data, losses, models

    registries = {"loss": losses.LOSSES, "model": models.MODELS, "dataset": data.DATASETS}
    for spec in _distinct(specs, lambda s: (s.experiment, s.loss, s.model, s.dataset,
                                           freeze(s.loss_params))):
        for kind, registry in registries.items():
            name = getattr(spec, kind)
            if name in BUILTIN[kind]:  # declared, hence registered (the registry holds to it)
                continue
            try:
                registry.get(name)
            except NcbenchError as exc:
                raise located(exc, spec, kind, config) from None
        try:
            losses.make_loss(spec.loss, _PROBE_CLASSES, **spec.loss_params)
        except (NcbenchError, TypeError, ValueError) as exc:  # ParameterError is a ValueError
            raise located(exc, spec, "loss_params", config) from None


def check_datasets(specs: Sequence[RunSpec], *, fetch: bool = True,
                   config: Config | None = None) -> None:
    """Load each distinct dataset of `specs` once through `ncbench.data.make_dataset` (imports
    torch), here in the manager, before any worker starts, and build each distinct model for it
    on PyTorch's meta device (no memory, no compute) so that bad `model_params` fail here.
    Raises DatasetNotFoundError (naming the dataset, its expected path and the fix) if one is
    absent and its runs have download off, and ConfigError (naming the file, experiment and key
    when `config` is given) for settings the data or the model refuse (`per_class` larger than
    a class, an mlp `depth` of 0, ...).

    With download on, this is where the files are fetched: once, by one process (the workers then
    find them in place), rather than by every worker of a grid at the same time into one folder;
    and on a cluster, from the submitting machine, which usually has the network that compute
    nodes lack. `fetch=False` (a dry run) downloads nothing: datasets with download on are
    skipped."""
    import torch

    from ncbench import data, models

    shapes: dict[Any, tuple[int, tuple[int, ...]]] = {}
    built: set[Any] = set()
    for spec in specs:
        if spec.download and not fetch:
            continue
        key = freeze([spec.dataset, spec.data_root, spec.dataset_params, spec.val_fraction,
                      spec.data_seed, spec.per_class])
        if key not in shapes:  # (classes, sample shape): the datasets themselves are let go
            try:
                ds = data.make_dataset(
                    spec.dataset, root=spec.data_root, download=spec.download,
                    val_fraction=spec.val_fraction, data_seed=spec.data_seed,
                    per_class=spec.per_class, **spec.dataset_params)
            except ParameterError as exc:
                k = exc.key if exc.key in KEYS else "dataset_params" if exc.key else None
                raise located(exc, spec, k, config) from None
            shapes[key] = (ds.num_classes, tuple(ds.input_shape))
            del ds
        num_classes, input_shape = shapes[key]
        model_key = (spec.model, spec.width, freeze(spec.model_params), num_classes, input_shape)
        if model_key in built:
            continue
        built.add(model_key)
        try:
            with torch.device("meta"):
                models.make_model(spec.model, num_classes, spec.width,
                                  input_shape=input_shape, **spec.model_params)
        except (TypeError, ValueError) as exc:  # ParameterError is a ValueError
            k = exc.key if isinstance(exc, ParameterError) else None
            raise located(exc, spec, "width" if k == "width" else "model_params",
                          config) from None


def _distinct(items: Iterable[T], key: Callable[[T], Hashable]) -> Iterator[T]:
    """`items` in order, each first one of its `key`."""
    seen: set[Hashable] = set()
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            yield item
