"""When a model is reconciled: one reconcile at a time per model, requests coalesced, echoes of the
operator's own status writes recognised (a child's echo never gets here: `controller.informer` drops
it). What the reconcile does (observe, decide, execute) is not its business.

Every trigger (a model's watch event, a child's, the resync round) asks for a turn; a turn that a
reconcile started after the asking has already answered is skipped. What the queue remembers of a model
(when its last reconcile started, the state it left) is forgotten in one place when a reconcile fails,
so that the next resync visits it again, at rest or not (`reset`).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

Key = tuple[str, str]  # (namespace, name) of a model


class WorkQueue:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._locks: defaultdict[Key, asyncio.Lock] = defaultdict(asyncio.Lock)
        # When each model's last reconcile started: a request made before it has been answered.
        self._started: dict[Key, float] = {}
        # Models with a reconcile requested and not started yet, and when the latest request came.
        self._requested: dict[Key, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Each model as its last reconcile left it (a fingerprint of what it read, with the status it
        # wrote): the watch event of that state is the echo of the operator's own write.
        self._models: dict[Key, str] = {}

    # ------------------------------------------------------------------------------------ echoes

    def is_echo(self, key: Key, fingerprint: str) -> bool:
        """Whether a model's event carries exactly the state its last reconcile left."""
        return self._models.get(key) == fingerprint

    # ------------------------------------------------------------------------------------- turns

    @asynccontextmanager
    async def turn(
        self, key: Key, asked_at: float | None = None, echo: str | None = None
    ) -> AsyncIterator[bool]:
        """Hold the model's turn: True to reconcile now, False when a reconcile that started after
        `asked_at` (a request, a listing) has already seen what it was asked for, or when the model's
        event that asks (its fingerprint `echo`) carries exactly the state the last reconcile left —
        checked here, once the turn comes, since the event of a reconcile's own status write usually
        arrives while that reconcile is still finishing. A skipped turn does not count as started."""
        async with self._locks[key]:
            if asked_at is not None and self._started.get(key, -1.0) > asked_at:
                yield False
                return
            if echo is not None and self._models.get(key) == echo:
                yield False
                return
            self._started[key] = self._clock()
            yield True

    def done(self, key: Key, fingerprint: str) -> None:
        """The turn's reconcile converged and left the model in this state."""
        self._models[key] = fingerprint

    def reset(self, key: Key) -> None:
        """The turn's reconcile did not converge (or found the model gone): forget when it ran and what
        it left, so that the next resync visits the model, at rest or not."""
        self._started.pop(key, None)
        self._models.pop(key, None)

    def last_started(self, key: Key) -> float | None:
        return self._started.get(key)

    def forget(self, key: Key) -> None:
        """Drop what is kept of a model once it is deleted."""
        self.reset(key)
        lock = self._locks.get(key)
        if lock is not None and not lock.locked():
            del self._locks[key]

    # ---------------------------------------------------------------------------------- requests

    def request(self, key: Key, delay_s: float, answer: Callable[[float], Awaitable[None]]) -> None:
        """Call `answer(asked_at)` after `delay_s`, once however many requests come meanwhile (each moves
        `asked_at` forward: one apply round makes several child events)."""
        queued = key in self._requested
        self._requested[key] = self._clock()
        if queued:
            return
        task = asyncio.create_task(self._answer(key, delay_s, answer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, key: Key, delay_s: float, answer: Callable[[float], Awaitable[None]]) -> None:
        try:
            await asyncio.sleep(delay_s)
        finally:
            asked_at = self._requested.pop(key)
        await answer(asked_at)

    async def close(self) -> None:
        """Cancel the requests not answered yet (on shutdown)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
