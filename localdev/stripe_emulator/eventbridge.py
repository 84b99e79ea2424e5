"""The emulator's event destination of type Amazon EventBridge: every new event, put on a partner event bus.

What Stripe does (docs.stripe.com/event-destinations/eventbridge, "Event structure"; stripe-python 16.1.0
`stripe/_webhook.py` `maybe_extract_from_cloud_provider_envelope` reads `detail`): each event of the account is
delivered to the partner event bus of the destination as an EventBridge event with `source` = the partner event
source (`aws.partner/stripe.com/ed_…`), `detail-type` = the Stripe event type and `detail` = the Stripe event as
the events API renders it (a snapshot event). Delivery is asynchronous: a background thread here publishes what
the account emitted since its last look, every `poll_interval_s`, in the order the events were emitted.

The destination publishes every event (a destination with `enabled_events: ["*"]`); the stack's rule decides
which ones reach the queue, as in the cloud.

Stripe sends through the partner API (PutPartnerEvents). moto's `put_partner_events` delivers to the account's
default bus instead of the partner bus (moto/events/models.py, `put_partner_events` calls `put_events` without an
`EventBusName`), so this sends the same entry with PutEvents to the partner bus by name: what reaches the rule
and the queue is what Stripe's delivery gives.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime
from typing import Any, Protocol

from localdev.stripe_emulator import render
from localdev.stripe_emulator.store import StripeStore

logger = logging.getLogger(__name__)

# PutEvents takes at most 10 entries a call (EventBridge API reference, PutEvents).
MAX_ENTRIES_PER_CALL = 10


class EmulatorLike(Protocol):
    lock: threading.RLock

    @property
    def store(self) -> StripeStore: ...


class EventBridgeDestination:
    """Publishes the emulator's new events to the partner event bus named after `event_source_name`."""

    def __init__(self, events_client: Any, event_source_name: str, *, poll_interval_s: float = 0.05) -> None:
        if not event_source_name.startswith("aws.partner/stripe.com/"):
            raise ValueError(f"{event_source_name!r} is not a Stripe partner event source name")
        self._events = events_client
        self.event_source_name = event_source_name
        self._poll_interval_s = poll_interval_s
        self._emulator: EmulatorLike | None = None
        self._store: StripeStore | None = None
        self._published = 0
        self.published_total = 0
        self.failed_total = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def attach(self, emulator: EmulatorLike) -> None:
        """Deliver what the account emits from now on (an event destination created now sees no history)."""
        with emulator.lock:
            self._emulator = emulator
            self._store = emulator.store
            self._published = len(emulator.store.events)
        self._thread = threading.Thread(target=self._run, name="stripe-eventbridge-destination", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def publish_pending(self) -> int:
        """Publish the events emitted since the last call; returns how many were delivered."""
        emulator = self._emulator
        if emulator is None:
            return 0
        with emulator.lock:
            store = emulator.store
            if store is not self._store:  # the account was reset: its regenerated history is not new
                self._store, self._published = store, len(store.events)
                return 0
            new = store.events.added_since(self._published)
            self._published += len(new)
            entries = [self._entry(store, event) for event in new]
        delivered = 0
        for start in range(0, len(entries), MAX_ENTRIES_PER_CALL):
            chunk = entries[start : start + MAX_ENTRIES_PER_CALL]
            answer = self._events.put_events(Entries=chunk)
            failed = int(answer.get("FailedEntryCount", 0))
            if failed:
                # Stripe retries a failed delivery for days; here a refused entry is a bug worth seeing at once.
                logger.error("EventBridge refused %d of %d Stripe events: %s", failed, len(chunk), answer["Entries"])
            self.failed_total += failed
            delivered += len(chunk) - failed
        self.published_total += delivered
        return delivered

    def _entry(self, store: StripeStore, event: Any) -> dict[str, Any]:
        detail = render.event(store, event, event.created)
        return {
            "EventBusName": self.event_source_name,  # the partner bus has its event source's name
            "Source": self.event_source_name,
            "DetailType": event.type,
            "Detail": json.dumps(detail),
            "Time": datetime.fromtimestamp(event.created, UTC),
            "Resources": [],
        }

    def _run(self) -> None:
        # Bounded by stop(): the emulator stops its destinations when it stops.
        while not self._stop.wait(self._poll_interval_s):
            try:
                self.publish_pending()
            except Exception:  # a delivery thread must not die silently
                logger.exception("publishing Stripe events to EventBridge failed")
