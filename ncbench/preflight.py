"""The run command's pre-flight: what only the real losses, models and datasets can judge.

`ncbench.config` checks every value's type and range and every name against `ncbench.names`
without importing torch. What needs the component itself is checked here, in the manager,
before anything is stored or any worker starts (this module imports torch and the registries,
so views never import it):

* `check_runs`: a "package.module:callable" name resolves, and every run's `loss_params` are
  accepted by its loss;
* `check_datasets`: each distinct dataset loads (or is downloaded, once), `per_class` fits its
  classes, `dataset_params` are accepted, and each distinct model is within the parameter
  budget (`ncbench.model_size`, by arithmetic: an absurd width or depth never starts a build)
  and builds (on the meta device) with its `width` and `model_params` into a model that follows
  the model contract (`ncbench.models.check_contract`, a forward pass on the meta device);
* `check_devices`: each run's `device` (`cuda`, `cuda:N`, `mps`) is available to its workers.

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
from ncbench.model_size import MAX_PARAMETERS, check_size
from ncbench.names import BUILTIN
from ncbench.registry import add_plugin_dir
from ncbench.runs import RunSpec

__all__ = ["check_runs", "check_datasets", "check_devices", "located"]

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
        add_plugin_dir(spec.plugin_dir)
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
    from ncbench import data

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
            except (TypeError, ValueError, ArithmeticError, MemoryError) as exc:
                # a dataset factory refusing its options in its own words
                raise located(_first_line(exc, f"dataset '{spec.dataset}'"), spec,
                              "dataset_params" if spec.dataset_params else "dataset",
                              config) from None
            shapes[key] = (ds.num_classes, tuple(ds.input_shape))
            del ds
        num_classes, input_shape = shapes[key]
        model_key = (spec.model, spec.width, freeze(spec.model_params), num_classes, input_shape)
        if model_key in built:
            continue
        built.add(model_key)
        try:
            # the size first, by arithmetic: an absurd width or depth never starts a build
            check_size(spec.model, num_classes, spec.width, input_shape, **spec.model_params)
            _check_model(spec, num_classes, input_shape)
        except (TypeError, ValueError, RuntimeError, ArithmeticError, MemoryError) as exc:
            k = exc.key if isinstance(exc, ParameterError) else None
            if not isinstance(exc, ParameterError):
                exc = _first_line(exc, f"model '{spec.model}'")  # torch's: C++ stack frames
            raise located(exc, spec, k if k in ("width", "model") else "model_params",
                          config) from None


def _check_model(spec: RunSpec, num_classes: int, input_shape: tuple[int, ...]) -> None:
    """Build `spec`'s model on the meta device and check the model contract with a forward
    pass there (`ncbench.models.check_contract`: no memory, no compute). A model whose forward
    meta tensors cannot run (a user model calling `.item()`, ...) is built and checked for real,
    on the CPU with a batch of 2 — if its meta build is within the parameter budget."""
    import torch

    from ncbench import models

    with torch.device("meta"):
        model = models.make_model(spec.model, num_classes, spec.width,
                                  input_shape=input_shape, **spec.model_params)
    try:
        models.check_contract(model, spec.model, num_classes, input_shape)
    except RuntimeError:  # incl. NotImplementedError: an operation meta tensors cannot run
        n = models.count_parameters(model)
        if n > MAX_PARAMETERS:
            raise ParameterError(f"model '{spec.model}' would have {n:.3g} parameters, over "
                                 f"ncbench's budget of {MAX_PARAMETERS:.0e}", key="model") from None
        del model
        with torch.device("cpu"):
            model = models.make_model(spec.model, num_classes, spec.width,
                                      input_shape=input_shape, **spec.model_params)
        models.check_contract(model, spec.model, num_classes, input_shape)


def _first_line(exc: BaseException, what: str) -> ValueError:
    """`exc` of component `what` as a one-line ValueError: its type and the first line of its
    message (torch's RuntimeErrors append C++ stack frames)."""
    text = (str(exc).strip().splitlines() or [""])[0]
    return ValueError(f"{what} failed: {type(exc).__name__}" + (f": {text}" if text else ""))


def check_devices(specs: Sequence[RunSpec], config: Config | None = None, *,
                  cuda_devices: int | None = None, mps: bool | None = None) -> None:
    """Each run's `device` is there for its worker: `cuda` needs a CUDA device, `cuda:N` needs
    N + 1 of them, `mps` needs Apple's MPS (`auto` and `cpu` always work). `cuda_devices`: the
    CUDA devices a worker sees (the local executor pins one GPU per worker; None: as many as
    torch finds here); `mps`: whether MPS is available (None: ask torch). A ConfigError naming
    the file, experiment and key `device`."""
    import torch

    if cuda_devices is None:
        try:
            cuda_devices = torch.cuda.device_count()
        except Exception:  # noqa: BLE001 - no usable CUDA
            cuda_devices = 0
    for spec in _distinct(specs, lambda s: (s.experiment, s.device)):
        device = str(spec.device)
        reason = None
        if device == "cuda" or device.startswith("cuda:"):
            index = int(device.split(":", 1)[1]) if ":" in device else 0
            if cuda_devices == 0:
                reason = (f"{device!r}: no CUDA device is visible to the workers here; use "
                          f"\"cpu\" or \"auto\" (CUDA when there is one)")
            elif index >= cuda_devices:
                reason = (f"{device!r}: each worker sees {cuda_devices} CUDA device(s) "
                          f"(indices 0..{cuda_devices - 1}); pick GPUs with --gpus and use "
                          f"\"cuda\"")
        elif device == "mps":
            available = mps
            if available is None:
                backend = getattr(torch.backends, "mps", None)
                available = bool(backend is not None and backend.is_available())
            if not available:
                reason = "'mps': Apple's MPS is not available here; use \"cpu\" or \"auto\""
        if reason is not None:
            raise located(ParameterError(reason, key="device"), spec, "device", config)


def _distinct(items: Iterable[T], key: Callable[[T], Hashable]) -> Iterator[T]:
    """`items` in order, each first one of its `key`."""
    seen: set[Hashable] = set()
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            yield item
