"""The shell's work queue: one reconcile at a time per model, requests coalesced and answered once,
echoes recognised, and what is remembered of a model forgotten on failure."""

from __future__ import annotations

import asyncio

import pytest

from nlpmodel_operator.controller.workqueue import WorkQueue

A, B = ("ml", "a"), ("ml", "b")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_requests_coalesce_into_one_answer_asked_at_the_latest() -> None:
    clock = Clock()
    answers: list[float] = []

    async def scenario() -> None:
        queue = WorkQueue(clock)
        answered = asyncio.Event()

        async def answer(asked_at: float) -> None:
            answers.append(asked_at)
            answered.set()

        for at in (100.0, 101.0, 102.0):
            clock.now = at
            queue.request(A, 0.0, answer)
        await answered.wait()
        answered.clear()
        clock.now = 103.0
        queue.request(A, 0.0, answer)  # after the answer: answered anew
        await answered.wait()
        await queue.close()

    asyncio.run(scenario())
    assert answers == [102.0, 103.0]


def test_a_request_is_skipped_once_a_later_reconcile_started() -> None:
    clock = Clock()
    turns: list[bool] = []

    async def scenario() -> None:
        queue = WorkQueue(clock)
        asked_at = clock.now
        clock.now += 1
        async with queue.turn(A) as due:  # an event's reconcile, after the request
            turns.append(due)
        async with queue.turn(A, asked_at) as due:  # the request: answered already
            turns.append(due)
        async with queue.turn(A, clock.now + 1) as due:  # asked after that reconcile started
            turns.append(due)

    asyncio.run(scenario())
    assert turns == [True, False, True]


def test_the_echo_of_a_status_write_is_skipped_when_its_turn_comes_and_counts_as_no_reconcile() -> None:
    clock = Clock()
    turns: list[bool] = []

    async def scenario() -> None:
        queue = WorkQueue(clock)
        async with queue.turn(A, echo="created") as due:  # the model's first event
            turns.append(due)
        queue.done(A, "left")  # ... its reconcile wrote a status: the model is now "left"
        clock.now += 1
        child_asked_at = clock.now  # a child's change, queued meanwhile
        clock.now += 1
        async with queue.turn(A, echo="left") as due:  # the echo of that status write
            turns.append(due)
        async with queue.turn(A, child_asked_at) as due:  # not answered by the skipped echo
            turns.append(due)
        async with queue.turn(A, echo="changed") as due:  # the user's change
            turns.append(due)

    asyncio.run(scenario())
    assert turns == [True, False, True, True]


def test_one_turn_at_a_time_per_model() -> None:
    order: list[str] = []

    async def reconcile(queue: WorkQueue, key: tuple[str, str], name: str, gate: asyncio.Event) -> None:
        async with queue.turn(key):
            order.append(f"{name} starts")
            await gate.wait()
            order.append(f"{name} ends")

    async def scenario() -> None:
        queue = WorkQueue(Clock())
        gate = asyncio.Event()
        first = asyncio.create_task(reconcile(queue, A, "a1", gate))
        second = asyncio.create_task(reconcile(queue, A, "a2", gate))
        other = asyncio.create_task(reconcile(queue, B, "b", gate))
        for _ in range(3):
            await asyncio.sleep(0)
        order.append("open")
        gate.set()
        await asyncio.gather(first, second, other)

    asyncio.run(scenario())
    assert order.index("a1 starts") < order.index("open") < order.index("a1 ends") < order.index("a2 starts")
    assert order.index("b starts") < order.index("open")  # another model is not held up


def test_a_turn_that_fails_releases_the_model() -> None:
    async def scenario() -> bool:
        queue = WorkQueue(Clock())
        with pytest.raises(RuntimeError):
            async with queue.turn(A):
                raise RuntimeError("boom")
        queue.reset(A)
        async with queue.turn(A) as due:
            return due

    assert asyncio.run(scenario()) is True


def test_the_echo_of_the_operators_own_write_is_recognised_until_a_reset() -> None:
    async def scenario() -> list[bool]:
        queue = WorkQueue(Clock())
        seen = [queue.is_echo(A, "left")]
        async with queue.turn(A):
            queue.done(A, "left")
        seen += [queue.is_echo(A, "left"), queue.is_echo(A, "changed"), queue.is_echo(B, "left")]
        queue.reset(A)  # a failed reconcile: the next event and resync act
        seen += [queue.is_echo(A, "left"), queue.last_started(A) is not None]
        return seen

    assert asyncio.run(scenario()) == [False, True, False, False, False, False]


def test_forget_drops_a_deleted_model() -> None:
    async def scenario() -> tuple[bool, float | None]:
        queue = WorkQueue(Clock())
        async with queue.turn(A):
            queue.done(A, "left")
        queue.forget(A)
        return queue.is_echo(A, "left"), queue.last_started(A)

    assert asyncio.run(scenario()) == (False, None)
