"""Ledger calls block (SQLite waits up to 30 s for its write lock): keep them off the event loop.

Every `Ledger` call runs `check()` first. On a thread that runs an asyncio event loop it logs
`ledger.blocking_call_on_loop` once per call site, and in asyncio debug mode
(`PYTHONASYNCIODEBUG=1`, `python -X dev`) it raises, which is how tests make the rule strict.
Async code calls the ledger through `off_loop()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from retention.logs import get_logger

P = ParamSpec("P")
T = TypeVar("T")
log = get_logger("retention.ledger")
_INNER = frozenset({"contextlib", __name__, "retention.ledger.ledger"})
_reported: set[str] = set()


class BlockingCallError(RuntimeError):
    """A ledger call was made on the event loop's thread (raised in asyncio debug mode)."""


def check(call: str) -> None:
    """Report a ledger call made on a thread that runs an event loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # a worker thread, or no loop at all: as it should be
        return
    site = _caller()
    if site not in _reported:
        _reported.add(site)
        log.error("ledger.blocking_call_on_loop", call=call, site=site)
    if loop.get_debug():
        raise BlockingCallError(f"ledger {call} on the event loop, from {site}")


def _caller() -> str:
    """`module:function:line` of the first frame outside the ledger and contextlib."""
    frame = sys._getframe(2)
    while frame.f_back is not None and frame.f_globals.get("__name__") in _INNER:
        frame = frame.f_back
    return f"{frame.f_globals.get('__name__')}:{frame.f_code.co_name}:{frame.f_lineno}"


async def off_loop(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` in a worker thread. A thread cannot be stopped, so a cancel waits
    for it to end before it propagates: what the call writes lands before whatever the
    canceller writes next."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():  # a second cancel waits too: the thread cannot be stopped
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(task)
        raise
