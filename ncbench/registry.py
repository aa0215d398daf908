"""Small name -> factory registries (timm-style), with helpful errors for unknown names."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar

from ncbench.errors import UnknownNameError

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        def deco(fn: F) -> F:
            self._entries[name] = fn
            return fn

        return deco

    def names(self) -> list[str]:
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
