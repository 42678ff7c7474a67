"""ActivityRecorder: in-process counting, batched flushes, the bounded buffer and the flush loop."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Iterable, Mapping

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from structlog.testing import capture_logs

from proxy.activity import ActivityRecorder
from proxy.registry import TrackedRegistry
from proxy.series import SeriesKey

T0 = 1_700_000_000.0
AAPL = SeriesKey("AAPL", "1d", False)
MSFT = SeriesKey("MSFT", "1h", False)
IBM = SeriesKey("IBM", "1d", False)


def _keys(n: int) -> list[SeriesKey]:
    return [SeriesKey(f"S{i:05d}", "1m", False) for i in range(n)]


class Sink:
    """Records each record_activity call; may fail the first ``fail`` calls or wait on ``gate``."""

    def __init__(self, fail: int = 0, gate: asyncio.Event | None = None) -> None:
        self.calls: list[tuple[dict[SeriesKey, tuple[int, float]], dict[SeriesKey, float]]] = []
        self.fail = fail
        self.gate = gate
        self.entered = asyncio.Event()

    async def record_activity(
        self, counts: Mapping[SeriesKey, tuple[int, float]], bumps: Iterable[SeriesKey]
    ) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail > 0:
            self.fail -= 1
            raise RedisConnectionError("redis is down")
        assert isinstance(bumps, Mapping)
        self.calls.append((dict(counts), dict(bumps)))


async def _until(condition: object, limit_s: float = 2.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def test_note_and_bump_are_plain_synchronous_calls_without_a_registry() -> None:
    assert not inspect.iscoroutinefunction(ActivityRecorder.note)
    assert not inspect.iscoroutinefunction(ActivityRecorder.bump)
    recorder = ActivityRecorder()  # no registry, no event loop running in this test
    for i in range(1000):
        recorder.note(AAPL, T0 + i)
    recorder.bump(AAPL, T0)
    assert recorder.pending == 1 and recorder.dropped == 0


async def test_flush_hands_all_series_to_the_registry_in_one_call() -> None:
    recorder, sink = ActivityRecorder(), Sink()
    keys = _keys(500)
    for i, key in enumerate(keys):
        recorder.note(key, T0 + i)
    recorder.note(keys[0], T0 + 999)
    recorder.note(keys[0], T0 + 5)  # out of order: the latest time wins
    recorder.bump(MSFT, T0 + 9)
    recorder.bump(MSFT, T0 + 3)  # the earliest bump wins
    assert await recorder.flush(sink) == 501
    assert len(sink.calls) == 1
    counts, bumps = sink.calls[0]
    assert counts[keys[0]] == (3, T0 + 999)
    assert counts[keys[499]] == (1, T0 + 499) and len(counts) == 500
    assert bumps == {MSFT: T0 + 3}
    assert recorder.pending == 0
    assert await recorder.flush(sink) == 0
    assert len(sink.calls) == 1  # nothing gathered: no call


async def test_requests_noted_during_a_flush_go_to_the_next_one() -> None:
    gate = asyncio.Event()
    recorder, sink = ActivityRecorder(), Sink(gate=gate)
    recorder.note(AAPL, T0)
    flushing = asyncio.create_task(recorder.flush(sink))
    await sink.entered.wait()
    recorder.note(AAPL, T0 + 1)
    recorder.note(MSFT, T0 + 1)
    gate.set()
    assert await flushing == 1
    await recorder.flush(sink)
    assert [call[0] for call in sink.calls] == [{AAPL: (1, T0)}, {AAPL: (1, T0 + 1), MSFT: (1, T0 + 1)}]


async def test_buffer_holds_at_most_max_keys_distinct_series() -> None:
    recorder, sink = ActivityRecorder(max_keys=3), Sink()
    for key in _keys(10):
        recorder.note(key, T0)
        recorder.bump(key, T0)
    recorder.note(_keys(1)[0], T0 + 1)  # a series already waiting is still counted
    assert recorder.dropped == 14
    await recorder.flush(sink)
    counts, bumps = sink.calls[0]
    assert counts == {k: (1, T0) for k in _keys(3)} | {_keys(1)[0]: (2, T0 + 1)}
    assert set(bumps) == set(_keys(3))
    recorder.note(AAPL, T0)  # room again after a flush
    assert recorder.pending == 1 and recorder.dropped == 14


async def test_a_failed_flush_keeps_its_batch_for_the_next_one() -> None:
    gate = asyncio.Event()
    recorder, sink = ActivityRecorder(max_keys=3), Sink(fail=1, gate=gate)
    recorder.note(AAPL, T0)
    recorder.note(MSFT, T0)
    for key in (AAPL, MSFT, IBM):
        recorder.bump(key, T0 + 2)
    flushing = asyncio.create_task(recorder.flush(sink))
    await sink.entered.wait()
    # Arriving while the failing flush is in flight:
    recorder.note(AAPL, T0 + 5)
    recorder.bump(AAPL, T0 + 1)
    for key in _keys(2):
        recorder.note(key, T0)  # fills the count buffer: MSFT's count cannot come back
    recorder.bump(_keys(1)[0], T0)  # leaves room for one of the two other bumps
    gate.set()
    with pytest.raises(RedisConnectionError):
        await flushing
    assert recorder.dropped == 2  # MSFT's count and IBM's bump
    await recorder.flush(sink)
    counts, bumps = sink.calls[0]
    assert counts == {AAPL: (2, T0 + 5), **{k: (1, T0) for k in _keys(2)}}
    assert bumps == {AAPL: T0 + 1, _keys(1)[0]: T0, MSFT: T0 + 2}


async def test_run_flushes_periodically_and_once_more_when_cancelled() -> None:
    recorder, sink = ActivityRecorder(), Sink()
    task = asyncio.create_task(recorder.run(sink, every_s=0.01))
    recorder.note(AAPL, T0)
    await _until(lambda: len(sink.calls) == 1)
    recorder.note(MSFT, T0 + 1)
    await _until(lambda: len(sink.calls) == 2)
    recorder.note(AAPL, T0 + 2)
    recorder.bump(AAPL, T0 + 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [call[0] for call in sink.calls] == [{AAPL: (1, T0)}, {MSFT: (1, T0 + 1)}, {AAPL: (1, T0 + 2)}]
    assert sink.calls[2][1] == {AAPL: T0 + 2}


async def test_run_survives_redis_errors_and_delivers_later() -> None:
    recorder, sink = ActivityRecorder(), Sink(fail=3)
    with capture_logs() as logs:
        task = asyncio.create_task(recorder.run(sink, every_s=0.01))
        recorder.note(AAPL, T0)
        await _until(lambda: len(sink.calls) == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert sink.calls == [({AAPL: (1, T0)}, {})]
    failures = [e for e in logs if e["event"].startswith("activity flush failed")]
    assert len(failures) == 3 and all(e["log_level"] == "warning" for e in failures)


async def test_cancel_with_redis_down_logs_and_does_not_raise_redis_errors() -> None:
    recorder, sink = ActivityRecorder(), Sink(fail=100)
    task = asyncio.create_task(recorder.run(sink, every_s=60))
    await asyncio.sleep(0)
    recorder.note(AAPL, T0)
    with capture_logs() as logs:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [e["event"] for e in logs] == ["activity flush failed; kept for the next one"]
    assert recorder.pending == 1


async def test_final_flush_is_bounded_in_time() -> None:
    recorder, sink = ActivityRecorder(), Sink(gate=asyncio.Event())  # a registry that never answers
    task = asyncio.create_task(recorder.run(sink, every_s=60, final_flush_limit_s=0.05))
    await asyncio.sleep(0)
    recorder.note(AAPL, T0)
    started = time.monotonic()
    with capture_logs() as logs:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert time.monotonic() - started < 1.0
    assert logs[0]["event"] == "activity flush on shutdown timed out" and logs[0]["pending"] == 1


async def test_dropped_requests_are_reported_once_per_flush() -> None:
    recorder, sink = ActivityRecorder(max_keys=1), Sink()
    task = asyncio.create_task(recorder.run(sink, every_s=0.01))
    with capture_logs() as logs:
        for key in _keys(4):
            recorder.note(key, T0)
        await _until(lambda: len(sink.calls) == 1)
        await _until(lambda: any(e["event"].startswith("activity buffer full") for e in logs))
        recorder.note(_keys(1)[0], T0)
        await _until(lambda: len(sink.calls) == 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    full = [e for e in logs if e["event"].startswith("activity buffer full")]
    assert [e["dropped"] for e in full] == [3]


async def test_flush_into_the_real_registry_is_one_batch(redis_client: aioredis.Redis) -> None:
    registry = TrackedRegistry(redis_client, "yfp", clock=lambda: T0)
    recorder = ActivityRecorder()
    keys = _keys(1000)
    for key in keys:
        recorder.note(key, T0 - 10)
        recorder.note(key, T0 - 1)
    recorder.bump(keys[7], T0 - 5)
    before = await redis_client.info("commandstats")
    await recorder.flush(registry)
    after = await redis_client.info("commandstats")
    evals = after["cmdstat_evalsha"]["calls"] - before.get("cmdstat_evalsha", {"calls": 0})["calls"]
    assert evals <= 3  # 1,000 series in scripts of at most 500, plus the bump
    tracked = {t.key: t for t in await registry.all()}
    assert len(tracked) == 1000 and tracked[keys[3]].requests == 2 and tracked[keys[3]].last_request == T0 - 1
    assert [t.key for t in await registry.due(T0, 1)] == [keys[7]]
