"""Work side by side, handed over in order: what the incremental run's customers go through."""

from __future__ import annotations

import threading
import time

import pytest

from chartmogul_sync.sources.stripe.lanes import in_order


def test_results_come_in_the_items_order_with_at_most_lanes_at_work_at_once() -> None:
    lock, at_work, most = threading.Lock(), [0], [0]

    def work(n: int) -> int:
        with lock:
            at_work[0] += 1
            most[0] = max(most[0], at_work[0])
        time.sleep(0.002 * (n % 3))  # later items often finish first
        with lock:
            at_work[0] -= 1
        return n * n

    results = [(n, fetched.result()) for n, fetched in in_order(work, list(range(40)), lanes=4)]

    assert results == [(n, n * n) for n in range(40)]
    assert 1 < most[0] <= 4


def test_once_told_to_stop_no_new_work_starts_and_what_was_taken_is_a_prefix_with_the_first_item_always() -> None:
    started: list[int] = []

    def work(n: int) -> int:
        started.append(n)
        return n

    answers = iter([True] * 4 + [False] * 10)  # asked before items 1, 2, ...: time runs out before item 5

    taken = [n for n, _ in in_order(work, list(range(10)), lanes=3, keep_asking=lambda: next(answers))]

    assert taken == list(range(5)) and sorted(started) == list(range(5))

    never = [n for n, _ in in_order(work, ["a", "b"], lanes=3, keep_asking=lambda: False)]
    assert never == ["a"]  # out of time from the start: one item all the same, so a chain of hand-overs moves on


def test_a_failure_is_handed_over_with_its_item() -> None:
    def work(n: int) -> int:
        if n == 2:
            raise ValueError("cus_2 refused")
        return n

    outcomes = {}
    for n, fetched in in_order(work, [1, 2, 3], lanes=2):
        try:
            outcomes[n] = fetched.result()
        except ValueError as error:
            outcomes[n] = str(error)
    assert outcomes == {1: 1, 2: "cus_2 refused", 3: 3}
    with pytest.raises(ValueError, match="at least one lane"):
        list(in_order(work, [1], lanes=0))
