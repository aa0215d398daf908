"""Small name -> factory registries (timm-style), with helpful errors for unknown names.

A registry only holds names declared for it in `ncbench.names` (`Registry("loss",
declared=names.LOSSES)`): registering any other name fails when the module that registers it is
imported, so the declaration (which the torch-free config checks against) and the factories
cannot drift apart. Any other name is usable as "package.module:callable" (`is_import_path`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from ncbench.errors import UnknownNameError

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


def import_callable(path: str, kind: str) -> Callable:
    """Resolve "package.module:callable"; errors name the path and reason."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownNameError(kind, path, []) from exc
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UnknownNameError(kind, path, [])
        obj = getattr(obj, part)
    if not callable(obj):
        raise UnknownNameError(kind, path, [])
    return obj
