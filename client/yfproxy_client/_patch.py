"""Wrapping ``request`` on the HTTP session classes yfinance may use.

yfinance (0.2.40 through 1.7) sends everything through ``session.get``/``post``, which
both libraries route through ``Session.request``; ``yf.download`` swaps its singleton
session back, so the class (not an instance) is what has to carry the redirect. The
wrapper reads the current target at call time: re-installing with another URL only
swaps the target, and a wrapper left inside someone else's wrapper after
``uninstall()`` passes everything through untouched.
"""

from __future__ import annotations

import functools
import sys
import threading
from types import ModuleType
from typing import Any, Callable, NamedTuple

from . import _hook
from ._headers import with_forwarded_host
from ._url import Target, parse_target, rewrite

# Module -> its session classes. The public package modules are watched (not e.g.
# curl_cffi.requests.session) because they are stable across versions and, once
# executed, hold fully built classes.
SESSION_CLASSES: dict[str, tuple[str, ...]] = {
    "curl_cffi.requests": ("Session", "AsyncSession"),
    "requests": ("Session",),
}
METHOD = "request"


class _Saved(NamedTuple):
    """What ``uninstall`` needs to undo one class's patch exactly."""

    had_own: bool  # False: ``request`` was inherited, so undoing means deleting ours
    original: Any  # the class's own ``request`` before patching (when had_own)
    wrapper: Any  # what we set, to tell whether someone replaced it since


class _CallShape(NamedTuple):
    """Positions of ``url`` and ``headers`` among the arguments after ``self``.

    They differ between libraries (requests: method, url, params, data, headers;
    curl_cffi puts json, and lately content, before headers), so they are read from the
    wrapped function's signature once, at patch time.
    """

    url: int
    headers: int | None

    @classmethod
    def of(cls, func: Callable[..., Any]) -> _CallShape:
        import inspect  # here, not at the top: it would double the cost of activation at start-up

        try:
            params = list(inspect.signature(func).parameters.values())[1:]  # drop self
        except (TypeError, ValueError):
            return cls(1, None)
        positional = []
        for param in params:
            if param.kind not in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
                break
            positional.append(param.name)
        url = positional.index("url") if "url" in positional else 1  # (method, url, ...) everywhere
        headers = positional.index("headers") if "headers" in positional else None
        return cls(url, headers)


_lock = threading.RLock()
_target: Target | None = None
_patched: dict[type, _Saved] = {}


class _Arguments:
    """A mutable copy of one call's arguments, addressed by name or position."""

    def __init__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.args = list(args)
        self.kwargs = dict(kwargs)

    def get(self, name: str, position: int | None) -> Any:
        if name in self.kwargs:
            return self.kwargs[name]
        if position is not None and position < len(self.args):
            return self.args[position]
        return None

    def set(self, name: str, position: int | None, value: Any) -> None:
        if name not in self.kwargs and position is not None and position < len(self.args):
            self.args[position] = value
        else:
            self.kwargs[name] = value


def _redirect(
    shape: _CallShape, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call's arguments with a Yahoo URL moved to the target; others come back as they were."""
    target = _target
    if target is None:
        return args, kwargs
    call = _Arguments(args, kwargs)
    moved = rewrite(call.get("url", shape.url), target)
    if moved is None:
        return args, kwargs
    url, host = moved
    call.set("url", shape.url, url)
    call.set("headers", shape.headers, with_forwarded_host(call.get("headers", shape.headers), host))
    return tuple(call.args), call.kwargs


def _make_wrapper(original: Callable[..., Any]) -> Callable[..., Any]:
    import inspect  # see _CallShape.of

    shape = _CallShape.of(original)
    if inspect.iscoroutinefunction(original):  # curl_cffi's AsyncSession

        @functools.wraps(original)
        async def request_async(self: Any, *args: Any, **kwargs: Any) -> Any:
            args, kwargs = _redirect(shape, args, kwargs)
            return await original(self, *args, **kwargs)

        return request_async

    @functools.wraps(original)
    def request(self: Any, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = _redirect(shape, args, kwargs)
        return original(self, *args, **kwargs)

    return request


def _patch_class(cls: type) -> None:
    saved = _patched.get(cls)
    if saved is not None and cls.__dict__.get(METHOD) is saved.wrapper:
        return  # already ours: never wrap twice
    original = getattr(cls, METHOD, None)
    if not callable(original):
        return
    wrapper = _make_wrapper(original)
    _patched[cls] = _Saved(METHOD in cls.__dict__, cls.__dict__.get(METHOD), wrapper)
    setattr(cls, METHOD, wrapper)


def _patch_module(module: ModuleType) -> None:
    for class_name in SESSION_CLASSES.get(module.__name__, ()):
        cls = getattr(module, class_name, None)
        if isinstance(cls, type):
            _patch_class(cls)


def _on_import(module: ModuleType) -> None:
    with _lock:
        if _target is not None:
            _patch_module(module)


def install(base_url: str) -> None:
    """Send every request for ``yahoo.com``/``*.yahoo.com`` to the yfproxy at ``base_url``.

    Same path and query, the base URL's scheme, host, port and path prefix, and the
    original host in ``X-Forwarded-Host``. Patches ``request`` on curl_cffi's
    ``Session``/``AsyncSession`` and requests' ``Session`` now if imported, else as soon
    as they are imported. Idempotent; calling again with another URL switches target.
    Raises ValueError (and changes nothing) if ``base_url`` is not an http(s) URL with a host.
    """
    target = parse_target(base_url)
    global _target
    with _lock:
        _target = target
        for name in SESSION_CLASSES:
            module = sys.modules.get(name)
            if module is not None:
                _patch_module(module)
        _hook.watch(SESSION_CLASSES, _on_import)


def uninstall() -> None:
    """Undo ``install``: original methods back, import hook gone. Safe to call anytime."""
    global _target
    with _lock:
        _target = None
        _hook.unwatch()
        for cls, saved in _patched.items():
            if cls.__dict__.get(METHOD) is not saved.wrapper:
                continue  # someone wrapped over us since: keep theirs; ours now passes through
            if saved.had_own:
                setattr(cls, METHOD, saved.original)
            else:
                delattr(cls, METHOD)
        _patched.clear()


def installed_url() -> str | None:
    """The base URL Yahoo traffic currently goes to (normalised), or None."""
    target = _target
    return None if target is None else target.url
