"""The incremental cursor never moves back: its stored position orders later cursors higher."""

from chartmogul_sync.sources.stripe.incremental import EventCursor


def test_a_later_second_or_more_events_in_the_same_second_is_a_later_position() -> None:
    first = EventCursor(created=1_700_000_000, event_ids=frozenset({"evt_1"}))
    same_second_more = EventCursor(created=1_700_000_000, event_ids=frozenset({"evt_1", "evt_2"}))
    next_second = EventCursor(created=1_700_000_001, event_ids=frozenset({"evt_3"}))
    much_later = EventCursor(created=17_000_000_000)

    positions = [c.position() for c in (first, same_second_more, next_second, much_later)]

    assert positions == sorted(positions) and len(set(positions)) == 4


def test_a_cursor_survives_its_round_trip_through_the_state_table() -> None:
    cursor = EventCursor(created=1_700_000_000, event_ids=frozenset({"evt_1", "evt_2"}))

    assert EventCursor.model_validate_json(cursor.model_dump_json()) == cursor
