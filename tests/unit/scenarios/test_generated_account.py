"""Invariants of the generated Stripe account, checked on the objects as the emulator's API renders them."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections import Counter, defaultdict
from typing import Any

import pytest

from localdev.scenarios import PROFILES, Account, generate_account
from localdev.stripe_emulator import records as r
from localdev.stripe_emulator.render import render


@pytest.fixture(scope="module")
def account() -> Account:
    return generate_account()  # the default: 200 customers, 24 months, seed 7


def rendered(account: Account, resource: str) -> list[dict[str, Any]]:
    store = account.store
    return [render(store, resource, record, store.now) for record in store.collection(resource).newest_first()]


def test_the_same_seed_gives_the_same_account_byte_for_byte() -> None:
    first = generate_account(customers=60, months=12, seed=3).dump()
    again = generate_account(customers=60, months=12, seed=3).dump()
    other = generate_account(customers=60, months=12, seed=4).dump()
    assert first == again
    assert first != other


def test_the_account_does_not_depend_on_the_process() -> None:
    """No set order, hash seed or wall clock leaks in: two interpreters with different hash seeds agree."""
    script = (
        "import hashlib; from localdev.scenarios import generate_account; "
        "a = generate_account(customers=45, months=10, seed=9); a.apply_step({'kind': 'advance', 'days': 3}); "
        "print(hashlib.sha256(a.dump()).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        for hash_seed in ("1", "2")
    }
    assert len(digests) == 1


def test_the_default_account_runs_every_profile(account: Account) -> None:
    covered = {name for names in account.scenarios.values() for name in names}
    assert covered == set(PROFILES)


def test_the_default_account_shows_every_case_of_section_4_4(account: Account) -> None:
    assert_every_case_of_section_4_4(account)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_smallest_covering_account_shows_every_case(seed: int) -> None:
    """One customer per profile over nine months is enough (the README promises it)."""
    assert_every_case_of_section_4_4(generate_account(customers=len(PROFILES), months=9, seed=seed))


def assert_every_case_of_section_4_4(account: Account) -> None:
    """What an exporter sees through the API, case by case (docs/sources.md#stripe-scenarios)."""
    invoices = rendered(account, "invoices")
    subscriptions = rendered(account, "subscriptions")
    lines = [line for invoice in invoices for line in invoice["lines"]["data"]]
    prices = {p["id"]: p for p in rendered(account, "prices")}
    statuses = Counter(invoice["status"] for invoice in invoices)
    assert {"draft", "open", "paid", "void", "uncollectible"} <= set(statuses)
    assert {"active", "canceled", "paused", "unpaid"} <= {s["status"] for s in subscriptions}
    assert any(s["trial_start"] is not None and s["status"] != "paused" for s in subscriptions)  # trial → paid
    assert any(s["cancel_at_period_end"] and s["status"] == "active" for s in subscriptions)  # pending cancel
    assert any(s["status"] == "canceled" and s["ended_at"] > s["canceled_at"] for s in subscriptions)  # at end
    assert any(s["status"] == "canceled" and s["ended_at"] == s["canceled_at"] for s in subscriptions)  # now
    assert any(len(s["items"]["data"]) > 1 for s in subscriptions)  # multi-item
    assert any(invoice["lines"]["has_more"] for invoice in invoices)  # lines past the embedded page
    assert any(s["schedule"] for s in subscriptions)
    assert any(s["pause_collection"] for s in subscriptions) or any(
        e.type == "customer.subscription.updated" and (e.previous_attributes or {}).keys() == {"pause_collection"}
        for e in account.store.events.values()
    )
    proration_parents = {line["parent"]["type"] for line in lines if _is_proration(line)}
    # prorations arrive as invoice items (docs/sources.md#stripe-object-mapping)
    assert proration_parents == {"invoice_item_details"}
    assert {"subscription_update", "subscription_cycle", "subscription_create"} <= {
        invoice["billing_reason"] for invoice in invoices
    }
    assert any(_is_proration(line) and line["amount"] < 0 for line in lines)  # unused-time credit
    intervals = {(p["recurring"]["interval"], p["recurring"]["interval_count"]) for p in _line_prices(lines, prices)}
    assert {("week", 1), ("month", 1), ("month", 3), ("year", 1)} <= intervals
    assert any(p["recurring"]["usage_type"] == "metered" for p in _line_prices(lines, prices))
    assert any(prices[_price_of(line)]["type"] == "one_time" for line in lines)
    assert {"inclusive", "exclusive"} <= {tax["tax_behavior"] for line in lines for tax in line["taxes"]}
    coupons = {d.coupon for d in account.store.discounts.values()}
    assert {"ONCE20", "REPEAT25X3", "FOREVER10", "FREE100"} <= coupons
    assert any(invoice["total"] == 0 and invoice["discounts"] for invoice in invoices)  # 100 % coupon
    # An item-level coupon: on the line's own `discounts` (and in its `discount_amounts`), not the invoice's.
    item_discounts = {d.id for d in account.store.discounts.values() if d.subscription_item is not None}
    item_lines = [
        (invoice, line)
        for invoice in invoices
        for line in invoice["lines"]["data"]
        if set(line["discounts"]) & item_discounts
    ]
    assert item_lines and all(not set(invoice["discounts"]) & item_discounts for invoice, _ in item_lines)
    assert all({d["discount"] for d in line["discount_amounts"]} & item_discounts for _, line in item_lines)
    assert len({invoice["currency"] for invoice in invoices}) >= 4
    assert any(quantity_changed for quantity_changed in _seat_changes(account))
    charges = rendered(account, "charges")
    assert any(c["status"] == "failed" for c in charges)
    assert any(c["refunded"] for c in charges) and any(0 < c["amount_refunded"] < c["amount"] for c in charges)
    notes = rendered(account, "credit_notes")
    assert {"pre_payment", "post_payment"} <= {note["type"] for note in notes}
    assert any(c.deleted_at is not None for c in account.store.customers.values())
    paid_late = [i for i in invoices if i["status"] == "paid" and i["collection_method"] == "send_invoice"]
    assert any(i["status_transitions"]["paid_at"] > i["status_transitions"]["finalized_at"] for i in paid_late)
    failed_then_paid = [i for i in invoices if i["status"] == "paid" and i["attempt_count"] > 1]
    assert failed_then_paid


def _is_proration(line: dict[str, Any]) -> bool:
    parent = line["parent"]
    details = parent["invoice_item_details"] or parent["subscription_item_details"]
    return bool(details["proration"])


def _price_of(line: dict[str, Any]) -> str:
    return str(line["pricing"]["price_details"]["price"])


def _line_prices(lines: list[dict[str, Any]], prices: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [prices[_price_of(line)] for line in lines if prices[_price_of(line)]["type"] == "recurring"]


def _seat_changes(account: Account) -> list[bool]:
    return [len({state.quantity for state in item.history}) > 1 for item in account.store.subscription_items.values()]


def test_invoice_totals_equal_the_lines_plus_tax_minus_discounts(account: Account) -> None:
    store = account.store
    for invoice in store.invoices.values():
        shown = render(store, "invoices", invoice, store.now)
        all_lines = [render(store, "invoices", invoice, store.now)["lines"]["data"]]
        assert shown["lines"]["has_more"] == (len(invoice.lines) > 10)
        lines = invoice.lines
        discounts = sum(amount for line in lines for _, amount in line.discount_amounts)
        exclusive = sum(t.amount for line in lines for t in line.taxes if not t.inclusive)
        assert shown["subtotal"] == sum(line.amount for line in lines)
        assert shown["total"] == shown["subtotal"] - discounts + exclusive, invoice.id
        assert shown["total"] == shown["subtotal"] - sum(d["amount"] for d in shown["total_discount_amounts"]) + sum(
            t["amount"] for t in shown["total_taxes"] if t["tax_behavior"] == "exclusive"
        )
        assert shown["amount_due"] == shown["total"] - shown["pre_payment_credit_notes_amount"]
        if shown["status"] == "paid":
            assert shown["amount_paid"] == shown["amount_due"]
        assert all_lines


def test_paid_invoices_match_their_successful_payment(account: Account) -> None:
    store = account.store
    for payment in store.invoice_payments.values():
        invoice = store.invoices.get(payment.invoice)
        assert invoice is not None
        shown = render(store, "invoices", invoice, store.now)
        if payment.paid_at is not None:
            assert shown["status"] == "paid"
            assert payment.amount_requested == shown["amount_paid"]
            assert payment.paid_at == shown["status_transitions"]["paid_at"]


def test_service_periods_are_contiguous(account: Account) -> None:
    """Each item's regular (non-proration) lines tile time without gaps or overlaps, across all its invoices."""
    periods: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for invoice in account.store.invoices.values():
        for line in invoice.lines:
            if line.subscription_item is not None and not line.proration:
                periods[line.subscription_item].append((line.period_start, line.period_end))
    assert periods
    for item_id, spans in periods.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start == end, f"{item_id}: gap or overlap at {end} → {start}"
    for sub in account.store.subscriptions.values():
        for (_, end), (start, _) in zip(sub.periods, sub.periods[1:], strict=False):
            assert start == end, sub.id


def test_prorations_cover_the_rest_of_the_period_they_change(account: Account) -> None:
    for invoice in account.store.invoices.values():
        prorations = [line for line in invoice.lines if line.proration]
        for line in prorations:
            item = account.store.invoiceitems.get(line.invoice_item or "")
            assert item is not None and item.subscription_item is not None
            sub = account.store.subscriptions.get(item.subscription or "")
            assert sub is not None
            assert any(start <= line.period_start < end == line.period_end for start, end in sub.periods)
        if prorations:
            assert sum(line.amount for line in prorations) != 0 or len(prorations) % 2 == 0


def test_every_object_s_last_event_shows_its_final_state(account: Account) -> None:
    store = account.store
    last_event: dict[str, r.Event] = {}
    types_by_object: dict[str, set[str]] = defaultdict(set)
    for event in reversed(store.events.newest_first()):  # oldest first, equal seconds in emission order
        last_event[event.object_id] = event
        types_by_object[event.object_id].add(event.type)
        assert event.created <= store.now
    for resource, field in (("invoices", "status"), ("subscriptions", "status"), ("charges", "amount_refunded")):
        for record in store.collection(resource).values():
            last = last_event.get(record.id)
            assert last is not None, f"{record.id} has no event"
            then = render(store, resource, record, last.created)
            final = render(store, resource, record, store.now)
            assert then[field] == final[field], f"{record.id}: last event {last.type} shows {then[field]}"
    for invoice in store.invoices.values():
        seen = types_by_object[invoice.id]
        assert "invoice.created" in seen
        expected = {"paid": "invoice.paid", "void": "invoice.voided", "uncollectible": "invoice.marked_uncollectible"}
        if invoice.status in expected:
            assert expected[invoice.status] in seen
        if invoice.status != "draft":
            assert "invoice.finalized" in seen
    for sub in store.subscriptions.values():
        assert "customer.subscription.created" in types_by_object[sub.id]
        if sub.status == "canceled":
            assert last_event[sub.id].type == "customer.subscription.deleted"
    for customer in store.customers.values():
        assert "customer.created" in types_by_object[customer.id]
        if customer.deleted_at is not None:
            assert last_event[customer.id].type == "customer.deleted"


def test_every_event_renders_its_object_as_of_the_event(account: Account) -> None:
    """`data.object` is the object at the event's time (docs/sources.md#stripe-events): an invoice's first event is a
    draft."""
    store = account.store
    first_seen: dict[str, str] = {}
    for event in reversed(store.events.newest_first()):
        if event.resource == "invoices" and event.object_id not in first_seen:
            shown = render(store, "events", event, store.now)
            first_seen[event.object_id] = shown["data"]["object"]["status"]
            assert shown["data"]["object"]["id"] == event.object_id
    assert set(first_seen.values()) <= {"draft", "open"}
    assert "draft" in set(first_seen.values())
