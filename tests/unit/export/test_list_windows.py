"""A list's windows of creation time: the request each asks, and cuts that leave nothing out and nothing twice."""

from __future__ import annotations

from chartmogul_sync.sources.stripe.client import Page
from chartmogul_sync.sources.stripe.windows import ListWindow


def covers(windows: list[ListWindow], second: int) -> list[ListWindow]:
    """The windows whose part still to read holds objects created at `second`."""
    return [
        w
        for w in windows
        if (w.created_gte is None or second >= w.created_gte)
        and (w.created_lt is None or second < w.created_lt)
        and (w.last_created is None or second <= w.last_created)
    ]


def test_a_cut_window_keeps_its_cursor_and_newer_half_and_every_older_second_is_in_exactly_one_window() -> None:
    window = ListWindow().after(
        Page(data=[{"id": "in_9", "created": 2_000}, {"id": "in_8", "created": 1_600}], has_more=True)
    )

    newer, older = window.cut(2, floor=1_000)

    assert newer.starting_after == "in_8" and newer.last_created == 1_600 and newer.created_gte == 1_300
    assert older.starting_after is None and older.created_lt == 1_300 and older.created_gte is None
    # Every second down to long before the guessed floor (the oldest window has no lower bound) is one window's.
    assert all(len(covers([newer, older], second)) == 1 for second in range(0, 1_601))


def test_a_bounded_window_cuts_within_its_bounds_and_a_window_too_narrow_to_cut_stays_whole() -> None:
    window = ListWindow(created_gte=100, created_lt=500, starting_after="ch_1", last_created=400, pages_read=3)

    pieces = window.cut(2, floor=0)

    assert [(w.created_gte, w.created_lt) for w in pieces] == [(250, 500), (100, 250)]
    assert all(len(covers(pieces, second)) == 1 for second in range(100, 401))
    assert covers(pieces, 99) == [] and covers(pieces, 401) == []  # the read part and what is outside stay out
    narrow = ListWindow(created_gte=399, starting_after="ch_1", last_created=400)
    assert narrow.cut(2, floor=0) == [narrow]


def test_a_window_asks_for_its_bounds_inside_the_steps_own_filter_and_after_its_cursor() -> None:
    window = ListWindow(created_gte=1_000, created_lt=5_000, starting_after="in_7")
    step_filter = {"status": "all", "created": {"gte": 2_000}}  # a bounded backfill's range

    assert window.query(step_filter) == {
        "status": "all",
        "created": {"gte": 2_000, "lt": 5_000},
        "starting_after": "in_7",
    }
    restarted = ListWindow(created_lt=5_000, starting_after="in_7", last_created=4_321).restarted()
    assert restarted.query({}) == {"created": {"lt": 5_000, "lte": 4_321}}


def test_the_pages_a_window_has_left_are_estimated_from_how_dense_its_read_pages_were() -> None:
    window = ListWindow(created_gte=0, top_created=10_000, last_created=9_000, pages_read=2)

    assert window.pages_left(floor=0) == 18.0  # 2 pages per 1,000 s, 9,000 s to go
    assert ListWindow().pages_left(floor=0) is None  # nothing read: no estimate, no cut
