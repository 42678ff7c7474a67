"""Adding ``X-Forwarded-Host`` to whatever header shape the caller passed.

requests takes a mapping; curl_cffi also takes its ``Headers`` multi-dict, a sequence of
``(name, value)`` pairs or of ``"Name: value"`` lines. The caller's object is never
mutated (yfinance reuses its dicts between calls): a copy of the same shape is returned.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

FORWARDED_HOST = "X-Forwarded-Host"


def _name(entry: object) -> str | None:
    """Lower-case header name of a mapping key or sequence entry, None if it has none."""
    if isinstance(entry, bytes):
        entry = entry.decode("latin-1")
    if isinstance(entry, str):
        return entry.split(":", 1)[0].strip().lower()
    if isinstance(entry, (tuple, list)) and len(entry) == 2:
        return _name(entry[0])
    return None


def _is_forwarded_host(entry: object) -> bool:
    return _name(entry) == FORWARDED_HOST.lower()


def _mapping_with(headers: Mapping[Any, Any], host: str) -> Mapping[Any, Any]:
    copy = getattr(headers, "copy", None)
    # .copy() keeps the type (requests' CaseInsensitiveDict, curl_cffi's Headers, dict).
    new: MutableMapping[Any, Any] = (
        copy() if callable(copy) and isinstance(headers, MutableMapping) else dict(headers.items())
    )
    for key in [key for key in new if _is_forwarded_host(key)]:
        del new[key]
    new[FORWARDED_HOST] = host
    return new


def _sequence_with(headers: Sequence[Any], host: str) -> list[Any]:
    entries = [entry for entry in headers if not _is_forwarded_host(entry)]
    sample = headers[0]
    if isinstance(sample, str):
        entries.append(f"{FORWARDED_HOST}: {host}")
    elif isinstance(sample, bytes):
        entries.append(f"{FORWARDED_HOST}: {host}".encode("latin-1"))
    else:
        entries.append((FORWARDED_HOST, host))
    return entries


def with_forwarded_host(headers: Any, host: str) -> Any:
    """``headers`` plus ``X-Forwarded-Host: host`` (replacing any earlier one)."""
    if not headers:
        return {FORWARDED_HOST: host}
    if isinstance(headers, Mapping):
        return _mapping_with(headers, host)
    if isinstance(headers, (list, tuple)):
        return _sequence_with(headers, host)
    return headers  # a shape we do not know: better unlabelled than a broken call
