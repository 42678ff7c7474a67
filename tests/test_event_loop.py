"""server.event_loop: which loop a server process runs, and what happens without uvloop."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from proxy.cli import new_event_loop, resolve_event_loop


@pytest.mark.parametrize(("kind", "expected"), [("auto", uvloop.Loop), ("uvloop", uvloop.Loop)])
def test_uvloop_where_it_is_installed(kind: str, expected: type) -> None:
    loop = new_event_loop(kind)
    try:
        assert isinstance(loop, expected)
        assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
    finally:
        loop.close()


def test_auto_resolves_to_uvloop_where_installed() -> None:
    assert [resolve_event_loop(k) for k in ("auto", "uvloop", "asyncio")] == ["uvloop", "uvloop", "asyncio"]


def test_asyncio_when_asked_even_with_uvloop_installed() -> None:
    loop = new_event_loop("asyncio")
    try:
        assert not isinstance(loop, uvloop.Loop) and isinstance(loop, asyncio.BaseEventLoop)
    finally:
        loop.close()


def test_without_uvloop_auto_falls_back_and_uvloop_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    loop = new_event_loop("auto")
    try:
        assert not isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
    assert resolve_event_loop("auto") == "asyncio"  # what the benchmark then runs its ceiling on
    with pytest.raises(SystemExit, match="uvloop is not installed"):
        new_event_loop("uvloop")
