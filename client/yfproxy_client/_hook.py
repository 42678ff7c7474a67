"""A post-import hook: run a callback right after a watched module has executed.

Why a meta-path finder rather than importing curl_cffi and requests when the ``.pth``
file runs: that file runs at the start of every Python process of the environment
(pip, pytest, linters...). Importing both HTTP stacks there would cost each of them
tens of milliseconds and their import side effects, and would happen before the
program's own ``sys.path`` set-up. The finder instead costs one dict lookup per import
and patches a library the moment it is first imported, before any caller can hold one
of its sessions; a library that is already imported is patched on the spot by the
caller. The alternatives are worse: wrapping ``builtins.__import__`` taxes every import
and misses ``importlib.import_module``; polling ``sys.modules`` is racy.

The finder does not locate modules itself: it asks the finders behind it and wraps the
loader of the spec they return, so any import mechanism (zip, editable installs) keeps
working, and it hands the real loader back to the module before executing it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any, Callable

from ._log import warn

Callback = Callable[[ModuleType], None]


class _NotifyingLoader:
    """Delegates to the real loader, then calls back once the module body has run."""

    def __init__(self, loader: Any, callback: Callback) -> None:
        self._loader = loader
        self._callback = callback

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        # Put the real loader back first: importlib.resources, pkgutil and reload() then
        # never see this wrapper, and a second import of the module needs no special case.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        try:
            self._callback(module)
        except Exception as exc:  # the user's import must succeed whatever happens here
            warn(f"could not patch {module.__name__}: {exc!r}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _PostImportFinder:
    """A ``sys.meta_path`` entry that only ever wraps loaders of the watched module names."""

    def __init__(self) -> None:
        self.callbacks: dict[str, Callback] = {}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        callback = self.callbacks.get(fullname)
        if callback is None:
            return None
        spec = self._find_elsewhere(fullname, path, target)
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return None  # let the import system go its ordinary way (and fail its ordinary way)
        spec.loader = _NotifyingLoader(spec.loader, callback)
        return spec

    def _find_elsewhere(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None
    ) -> ModuleSpec | None:
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if finder is self or find_spec is None:
                continue
            spec: ModuleSpec | None = find_spec(fullname, path, target)
            if spec is not None:
                return spec
        return None


_finder = _PostImportFinder()


def watch(names: Iterable[str], callback: Callback) -> None:
    """Call ``callback(module)`` whenever one of ``names`` is imported (or reloaded) from now on."""
    _finder.callbacks = dict.fromkeys(names, callback)
    if not any(entry is _finder for entry in sys.meta_path):
        # First place: the path finders behind it would otherwise answer without us.
        sys.meta_path.insert(0, _finder)


def unwatch() -> None:
    """Remove the finder; imports are entirely back to normal."""
    _finder.callbacks = {}
    sys.meta_path[:] = [entry for entry in sys.meta_path if entry is not _finder]


def watching() -> bool:
    return any(entry is _finder for entry in sys.meta_path)
