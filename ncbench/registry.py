"""Small name -> factory registries (timm-style), with helpful errors for unknown names.

A registry only holds names declared for it in `ncbench.names` (`Registry("loss",
declared=names.LOSSES)`): registering any other name fails when the module that registers it is
imported, so the declaration (which the torch-free config checks against) and the factories
cannot drift apart. Any other name is usable as "package.module:callable" (`is_import_path`):
the module is imported from the plug-in folders (`plugin_dirs`, see `add_plugin_dir`; the folder
of the experiments.toml naming it, recorded in each run's `RunSpec.plugin_dir`) and `sys.path`.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from ncbench.errors import ParameterError, UnknownNameError, did_you_mean

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """Name -> factory for one `kind` ("loss", "model", "dataset"); only `declared` names."""

    def __init__(self, kind: str, *, declared: Iterable[str]):
        self.kind = kind
        self.declared: tuple[str, ...] = tuple(declared)
        self._entries: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator registering a factory under `name`, which must be declared (else
        ValueError, at import time of the registering module: declare it in ncbench.names)."""
        if name not in self.declared:
            raise ValueError(f"{self.kind} '{name}' is not declared: add it to the {self.kind} "
                             f"names in ncbench/names.py (declared: {', '.join(self.declared)})")

        def deco(fn: F) -> F:
            self._entries[name] = fn
            return fn

        return deco

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries or is_import_path(name)

    def get(self, name: str) -> F:
        if name in self._entries:
            return self._entries[name]
        if is_import_path(name):
            return import_callable(name, self.kind)
        raise UnknownNameError(self.kind, name, self.names())


def is_import_path(name: str) -> bool:
    """True for a "package.module:callable" name (resolved by importing it)."""
    return isinstance(name, str) and ":" in name and not name.startswith(":")


#: How each registry kind calls a "package.module:callable" factory (the contract documented in
#: ncbench.losses, ncbench.models and ncbench.data.base): positional arguments, keyword
#: arguments, and the call as shown in messages. `import_callable` checks the factory's
#: signature against it before anything calls the factory.
CONTRACTS: dict[str, tuple[tuple, dict, str]] = {
    "loss": ((), {"num_classes": 10}, "f(num_classes=K, **loss_params)"),
    "model": ((10, 1.0, (3, 32, 32)), {}, "f(num_classes, width, input_shape, **model_params)"),
    "dataset": (("data",), {"download": False}, "f(root, download=False, **dataset_params)"),
}


#: Folders searched for "package.module:callable" plug-ins (before `sys.path`); see add_plugin_dir.
_PLUGIN_DIRS: list[str] = []


def add_plugin_dir(folder: str | os.PathLike | None) -> None:
    """Make plug-in modules in `folder` importable (it is put at the front of `sys.path`, once).
    `ncbench.preflight` and `ncbench.train.train_run` call it with each run's `plugin_dir` (the
    folder of the experiments.toml), so workers started from any cwd, or on a Slurm node, find the
    plug-ins the manager checked. None is a no-op."""
    if not folder:
        return
    folder = os.path.abspath(os.fspath(folder))
    if folder not in _PLUGIN_DIRS:
        _PLUGIN_DIRS.append(folder)
    if folder not in sys.path:
        sys.path.insert(0, folder)
        importlib.invalidate_caches()


def plugin_dirs() -> list[str]:
    """The plug-in folders added so far (`add_plugin_dir`), in order."""
    return list(_PLUGIN_DIRS)


def _searched() -> str:
    # In search order: the latest plug-in folder is at the front of sys.path (add_plugin_dir).
    shown = list(reversed(_PLUGIN_DIRS)) + [p or os.getcwd() for p in sys.path
                                         if (p or os.getcwd()) not in _PLUGIN_DIRS
                                         and os.path.isdir(p or os.getcwd())]
    head = ", ".join(shown[:4])
    return head + (f" and {len(shown) - 4} more on sys.path" if len(shown) > 4 else "")


def _missing_module(module_name: str) -> str | None:
    """The (top-most) missing module of `module_name`, or None if it can be found."""
    parts = module_name.split(".")
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except (ImportError, ValueError):
            return name
    return None


def _public_callables(obj) -> list[str]:
    return sorted(n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None)))


def import_callable(path: str, kind: str) -> Callable:
    """Resolve "package.module:callable"; errors name the path and reason. A module that
    cannot be found: UnknownNameError naming the module and the folders searched. A missing
    attribute: UnknownNameError with did-you-mean over the module's public callables. For the
    kinds of `CONTRACTS`, the callable must also be callable the way that kind's factories are
    (checked with `inspect.signature`, without calling it): else ParameterError "'x:y' is not a
    <kind> factory: ..." (key: the kind)."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = _missing_module(module_name) or getattr(exc, "name", None) or module_name
        if missing == module_name or module_name.startswith(missing + "."):
            raise UnknownNameError(kind, path, [], detail=(
                f"module '{missing}' not found (searched: {_searched()}); put "
                f"{missing.split('.')[0]}.py (or the package folder) beside the "
                "experiments.toml, or install it")) from None
        raise ParameterError(f"{kind} '{path}': importing module '{module_name}' fails: "
                             f"{type(exc).__name__}: {exc}", key=kind) from None
    except Exception as exc:  # the module itself fails on import: name it, no traceback
        raise ParameterError(f"{kind} '{path}': importing module '{module_name}' fails: "
                             f"{type(exc).__name__}: {exc}", key=kind) from None
    obj = module
    where = module_name
    for part in attr.split("."):
        if not part or not hasattr(obj, part):
            names = _public_callables(obj)
            hint = did_you_mean(part, names) if part else ""
            shown = hint or (f"; its public callables: {', '.join(names[:12])}" if names else
                             "; it defines no public callables")
            raise UnknownNameError(kind, path, names, detail=f"'{where}' has no attribute "
                                                             f"'{part}'{shown}")
        obj = getattr(obj, part)
        where = f"{where}.{part}" if where != module_name else f"{module_name}:{part}"
    if not callable(obj):
        raise ParameterError(f"'{path}' is not a {kind} factory: it is a "
                             f"{type(obj).__name__}, not a callable", key=kind)
    check_factory(obj, path, kind)
    return obj


def check_factory(obj: Callable, path: str, kind: str) -> None:
    """ParameterError unless `obj` can be called as `CONTRACTS[kind]` says (no-op for other
    kinds). A callable whose signature cannot be read (a builtin such as `builtins:dict`) is not
    accepted: nothing says it follows the contract."""
    if kind not in CONTRACTS:
        return
    args, kwargs, shown = CONTRACTS[kind]
    what = f"'{path}' is not a {kind} factory"
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        raise ParameterError(f"{what}: its signature cannot be read (a built-in?); a {kind} "
                             f"factory is called as {shown}", key=kind) from None
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        raise ParameterError(f"{what}: it is called as {shown}, but its signature is "
                             f"{path.partition(':')[2]}{sig} ({exc})", key=kind) from None
    ret = sig.return_annotation
    if isinstance(ret, type) and ret in (type(None), bool, int, float, str, bytes, list, tuple,
                                         dict, set):
        raise ParameterError(f"{what}: it is annotated to return {ret.__name__}", key=kind)
