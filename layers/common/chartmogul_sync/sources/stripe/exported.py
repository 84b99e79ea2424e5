"""Per-customer export marks: when the real-time path last put a customer's snapshot on the raw queue.

The real-time path (`realtime`) and the schedule (`incremental`) read the same Stripe events. Without a mark, the
hourly run would export again every customer the real-time path exported minutes before. With it, the schedule
skips a customer whose every event in its window is older than a snapshot already sent, and the real-time path
skips an event delivered again (EventBridge and SQS deliver at least once) after its customer was exported.

State table item: pk="exported#stripe", sk="<customer id>", `started` (the snapshot's fetch start, Unix seconds,
zero-padded so that `put_if_newer` compares it as a string), `snapshot_time` (ISO, for people), `expires_at`
(TTL: after Stripe's 30-day event retention no run can read an event the mark would cover).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ...state import StateTable, key

EXPORTED_PK = key("exported", "stripe")
# A snapshot covers an event only if its fetch started at least this long after the event's `created` second:
# `created` is truncated to the second, and Stripe's clock and ours may differ by a little.
CLOCK_MARGIN_S = 1
MARK_TTL_S = 31 * 24 * 3600


def mark_exported(state: StateTable, customer_id: str, snapshot_time: datetime) -> None:
    """Record that a snapshot fetched from `snapshot_time` on is on the raw queue (never moves a mark back)."""
    started = int(snapshot_time.timestamp())
    state.put_if_newer(
        EXPORTED_PK,
        customer_id,
        "started",
        f"{started:012d}",
        {"snapshot_time": snapshot_time.isoformat(), "expires_at": started + MARK_TTL_S},
    )


def exported_from(state: StateTable, customer_id: str) -> int | None:
    """When the newest snapshot on record for the customer started to be fetched (Unix seconds), if any."""
    item = state.get(EXPORTED_PK, customer_id)
    return int(item["started"]) if item else None


def covers(snapshot_started: int | None, newest_event_created: int | None) -> bool:
    """Whether a snapshot started then already holds every change announced by events up to that second.

    An event of unknown time (a customer found by a rescan, not by an event) is never covered.
    """
    if snapshot_started is None or newest_event_created is None:
        return False
    return newest_event_created + CLOCK_MARGIN_S <= snapshot_started


def drop_covered_customers(
    state: StateTable, newest_events: Mapping[str, int | None], customers: dict[str, Any]
) -> list[str]:
    """Remove from `customers` those whose newest event (`newest_events`) a recorded snapshot covers; returns them.

    One consistent read per customer; the schedule calls it for the customers its events named.
    """
    dropped = [
        customer_id
        for customer_id in sorted(customers)
        if covers(exported_from(state, customer_id), newest_events.get(customer_id))
    ]
    for customer_id in dropped:
        del customers[customer_id]
    return dropped
