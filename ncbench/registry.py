"""Small name -> factory registries (timm-style), with helpful errors for unknown names.

A registry only holds names declared for it in `ncbench.names` (`Registry("loss",
declared=names.LOSSES)`): registering any other name fails when the module that registers it is
imported, so the declaration (which the torch-free config checks against) and the factories
cannot drift apart. Any other name is usable as "package.module:callable" (`is_import_path`).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from ncbench.errors import ParameterError, UnknownNameError

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


def import_callable(path: str, kind: str) -> Callable:
    """Resolve "package.module:callable"; errors name the path and reason. For the kinds of
    `CONTRACTS`, the callable must also be callable the way that kind's factories are (checked
    with `inspect.signature`, without calling it): else ParameterError "'x:y' is not a <kind>
    factory: ..." (key: the kind)."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownNameError(kind, path, []) from exc
    except Exception as exc:  # the module itself fails on import: name it, no traceback
        raise ParameterError(f"{kind} '{path}': importing module '{module_name}' fails: "
                             f"{type(exc).__name__}: {exc}", key=kind) from None
    obj = module
    for part in attr.split("."):
        if not part or not hasattr(obj, part):
            raise UnknownNameError(kind, path, [])
        obj = getattr(obj, part)
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
