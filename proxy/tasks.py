"""Stopping background tasks for sure.

A cancellation that lands inside a redis-py command can be swallowed (seen with redis-py
8.1: the command completes and returns), and a loop then carries on as if nothing had
happened. So cancel, wait a little, and cancel again, until every task has ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


def cancel_requested() -> bool:
    """True when the running task was asked to stop, even if the CancelledError was lost."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def cancel_all(tasks: Iterable[asyncio.Task[object]], *, rounds: int = 50, wait_s: float = 0.1) -> None:
    """Cancel ``tasks`` until all are done (at most ``rounds`` x ``wait_s``); never raises."""
    pending = [task for task in tasks if not task.done()]
    for _ in range(rounds):
        if not pending:
            break
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=wait_s)
        pending = [task for task in pending if not task.done()]
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: never "exception was never retrieved" at exit
