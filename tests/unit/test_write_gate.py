"""The gate HTTP writes pass: a few at a time, none once closed, the close waits for the rest."""

from __future__ import annotations

import asyncio

import pytest

from retention.daemon.write_gate import GateClosedError, WriteGate


def test_no_more_than_the_slots_run_at_once() -> None:
    """Ten writes through a gate of three: never more than three inside at once."""

    async def scenario() -> int:
        gate, inside, most = WriteGate(3), 0, 0

        async def write() -> None:
            nonlocal inside, most
            async with gate.slot():
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0.01)
                inside -= 1

        await asyncio.gather(*(write() for _ in range(10)))
        return most

    assert asyncio.run(scenario()) == 3


def test_close_waits_for_writes_in_flight_and_refuses_the_rest() -> None:
    """Closing waits for the writes inside; those queued for a slot and those that come later
    are refused."""

    async def scenario() -> list[str]:
        gate, order = WriteGate(1), []
        release = asyncio.Event()

        async def inside() -> None:
            async with gate.slot():
                await release.wait()
                order.append("inside done")

        async def queued() -> None:
            with pytest.raises(GateClosedError):
                async with gate.slot():
                    order.append("queued ran")

        tasks = [asyncio.create_task(inside()), asyncio.create_task(queued())]
        await asyncio.sleep(0.01)
        closing = asyncio.create_task(gate.close())
        await asyncio.sleep(0.01)
        assert not closing.done()
        release.set()
        await closing
        order.append("closed")
        await asyncio.gather(*tasks)
        with pytest.raises(GateClosedError):
            async with gate.slot():
                order.append("late ran")
        return order

    assert asyncio.run(scenario()) == ["inside done", "closed"]
