"""``paddle_mnist.serve.limits.Gate``: cheapest first, within the budget, a slot kept for small charges."""

from __future__ import annotations

import asyncio

import pytest

from paddle_mnist.serve.limits import Gate, Limits


def test_the_cheapest_waiting_charge_goes_first_and_the_budget_holds():
    async def scenario():
        gate, order = Gate(budget=100, small=1), []
        await gate.enter(80)  # fits at once

        async def wait(cost):
            await gate.enter(cost)
            order.append(cost)

        tasks = [asyncio.create_task(wait(c)) for c in (60, 30, 50)]
        await asyncio.sleep(0.01)
        assert order == [] and gate.in_flight == 80  # none of 30, 50, 60 fits beside 80
        gate.leave(80)
        await asyncio.sleep(0.01)
        assert order == [30, 50] and gate.in_flight == 80  # cheapest first, as many as fit
        gate.leave(30)
        gate.leave(50)
        await asyncio.gather(*tasks)
        assert order == [30, 50, 60] and gate.peak == 80

    asyncio.run(scenario())


def test_small_charges_always_fit_and_keep_a_slot():
    async def scenario():
        gate = Gate(budget=100, small=5, slots=2)
        await gate.enter(100)
        with pytest.raises(asyncio.TimeoutError):
            await gate.enter(50, timeout=0.05)  # a second big one: the other slot is kept for small ones
        await gate.enter(5, timeout=0.05)  # a small one: over the budget, yet admitted
        assert (gate.in_flight, gate.running, gate._waiting) == (105, 2, [])

    asyncio.run(scenario())


def test_a_timed_out_wait_leaves_the_queue():
    async def scenario():
        gate = Gate(budget=10, small=0)
        await gate.enter(10)
        with pytest.raises(asyncio.TimeoutError):
            await gate.enter(5, timeout=0.01)
        gate.leave(10)
        assert gate.in_flight == 0 and gate.running == 0  # the abandoned 5 was not admitted behind its back
        await gate.enter(10, timeout=0.01)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "bounds, message",
    [
        (dict(image_budget=300 << 20), "per image <= per request <= all in flight"),
        (dict(body_budget=30 << 20), "at least one largest upload"),
    ],
)
def test_contradicting_limits_are_refused(bounds, message):
    with pytest.raises(ValueError, match=message):
        Limits(**bounds).check()
