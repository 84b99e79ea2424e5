"""Stripe requests side by side, results in order: for work that is many independent fetches of a few requests each.

Why: Stripe takes a few hundred milliseconds to answer, so one fetch after another uses a tenth of the export's
share of the rate limit (README "The Stripe request budget"); the StripeApi's limiter keeps the requests within it
whatever the number of lanes. In order, so what a caller has taken is always a prefix of its items: an incremental
run that hands over part-way knows exactly which customers are left.

Example::

    for customer_id, fetched in in_order(fetch_snapshot, customer_ids, lanes=16, keep_asking=lambda: not late()):
        snapshot = fetched.result()  # raises what the fetch raised
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def in_order(
    work: Callable[[Item], Result],
    items: Sequence[Item],
    *,
    lanes: int,
    keep_asking: Callable[[], bool] = lambda: True,
) -> Iterator[tuple[Item, Future[Result]]]:
    """Each item with the future of `work(item)`, in the items' order, at most `lanes` at work at once.

    `keep_asking` is asked before each item's work starts, the first's excepted: once it says no, no new work
    starts, and the work already started is still handed over (its requests are spent). Closing the iterator early
    waits for the work in hand.
    """
    if lanes < 1:
        raise ValueError("at least one lane")
    with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="stripe-lane") as pool:
        started: deque[tuple[Item, Future[Result]]] = deque()
        next_index = 0
        asking = True
        for _ in range(len(items)):  # bounded: one item handed over per turn
            while asking and len(started) < lanes and next_index < len(items):
                if next_index > 0 and not keep_asking():  # the first item always starts
                    asking = False
                    break
                item = items[next_index]
                next_index += 1
                started.append((item, pool.submit(work, item)))
            if not started:
                return
            yield started.popleft()
