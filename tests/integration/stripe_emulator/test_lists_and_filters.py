"""Stripe's list semantics and filters, through `stripe.StripeClient` (docs/sources.md#stripe-lists,
#stripe-pagination)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import stripe

from localdev.scenarios import Account, generate_account
from localdev.stripe_emulator import RunningStripeEmulator, StripeStore, start
from localdev.stripe_emulator import records as r

from .conftest import client_for


def test_auto_paging_iter_walks_10000_objects_newest_first() -> None:
    store = StripeStore(now=2_000_000_000)
    for n in range(10_000):
        # Many share a second: the order must still be total and stable across pages.
        store.customers.add(r.Customer(f"cus_{n:014d}", 1_700_000_000 + n // 3, f"C {n}", f"c{n}@x.io", "US", "P"))
    with start(store, rate_limit=None) as emulator:
        client = client_for(emulator)
        seen = [c.id for c in client.v1.customers.list({"limit": 100}).auto_paging_iter()]
        requests = emulator.server.request_report()["routes"]
    assert len(seen) == 10_000 and len(set(seen)) == 10_000
    created = [store.customers.get(i).created for i in seen]  # type: ignore[union-attr]
    assert created == sorted(created, reverse=True)
    assert sum(Counter(requests["GET /v1/customers"]).values()) == 100  # 100 pages of 100, no extra request


def test_paging_backwards_with_ending_before(client: stripe.StripeClient) -> None:
    forward = [c.id for c in client.v1.customers.list({"limit": 100}).auto_paging_iter()]
    page = client.v1.customers.list({"limit": 7, "ending_before": forward[20]})
    assert [c.id for c in page.data] == forward[13:20]
    assert page.has_more is True
    backwards = list(client.v1.customers.list({"limit": 9, "ending_before": forward[30]}).auto_paging_iter())
    assert sorted(c.id for c in backwards) == sorted(forward[:30])


def test_list_envelope(client: stripe.StripeClient) -> None:
    page = client.v1.invoices.list({"limit": 3})
    body = page.to_dict()
    assert body["object"] == "list" and body["url"] == "/v1/invoices" and body["has_more"] is True
    assert len(body["data"]) == 3
    assert page.last_response is not None
    assert page.last_response.headers["Stripe-Version"] == stripe.api_version


def test_deleted_customers_are_not_listed_but_retrievable(account: Account, client: stripe.StripeClient) -> None:
    deleted = [c.id for c in account.store.customers.values() if c.deleted_at is not None]
    listed = {c.id for c in client.v1.customers.list({"limit": 100}).auto_paging_iter()}
    assert deleted and not set(deleted) & listed
    assert len(listed) == len(account.store.customers) - len(deleted)
    shown = client.v1.customers.retrieve(deleted[0])
    assert shown.to_dict() == {"id": deleted[0], "object": "customer", "deleted": True}


def test_subscriptions_default_omits_canceled_and_status_all_lists_them(
    account: Account, client: stripe.StripeClient
) -> None:
    default = list(client.v1.subscriptions.list({"limit": 100}).auto_paging_iter())
    every = list(client.v1.subscriptions.list({"status": "all", "limit": 100}).auto_paging_iter())
    canceled = list(client.v1.subscriptions.list({"status": "canceled", "limit": 100}).auto_paging_iter())
    assert canceled and all(s.status == "canceled" for s in canceled)
    assert all(s.status != "canceled" for s in default)
    # Only `status=canceled` returns the subscriptions of deleted customers (stripe/params/
    # _subscription_list_params.py `status`); `all` leaves them out.
    deleted = {c.id for c in account.store.customers if c.deleted_at is not None}
    of_deleted = {s.id for s in canceled if s.customer in deleted}
    assert of_deleted and not of_deleted & {s.id for s in every}
    assert len(every) == len(default) + len(canceled) - len(of_deleted)
    customer = next(iter(deleted))
    theirs = client.v1.subscriptions.list({"customer": customer, "status": "canceled"}).data
    assert theirs and client.v1.subscriptions.list({"customer": customer, "status": "all"}).data == []
    assert client.v1.subscriptions.retrieve(theirs[0].id).id == theirs[0].id  # by id, as ever


@pytest.mark.parametrize(
    ("operator", "keep"),
    [
        ("gt", lambda c, b: c > b),
        ("gte", lambda c, b: c >= b),
        ("lt", lambda c, b: c < b),
        ("lte", lambda c, b: c <= b),
    ],
)
def test_invoices_created_filters(account: Account, client: stripe.StripeClient, operator: str, keep: object) -> None:
    every = sorted({i.created for i in account.store.invoices.values()})
    # A bound near the end the filter keeps the smaller side of: a few hundred invoices to page through.
    bound = every[len(every) * 9 // 10] if operator.startswith("g") else every[len(every) // 10]
    params: Any = {"created": {operator: bound}, "limit": 100}
    found = list(client.v1.invoices.list(params).auto_paging_iter())
    expected = [i for i in account.store.invoices.values() if keep(i.created, bound)]  # type: ignore[operator]
    assert sorted(i.id for i in found) == sorted(i.id for i in expected)


def test_invoices_created_range_and_field_filters(account: Account, client: stripe.StripeClient) -> None:
    store = account.store
    sub = next(
        s
        for s in store.subscriptions.values()
        if len([i for i in store.invoices.values() if i.subscription == s.id]) > 5
    )
    by_sub = {i.id for i in client.v1.invoices.list({"subscription": sub.id, "limit": 100}).auto_paging_iter()}
    assert by_sub == {i.id for i in store.invoices.values() if i.subscription == sub.id}
    by_customer = {
        i.customer for i in client.v1.invoices.list({"customer": sub.customer, "limit": 5}).auto_paging_iter()
    }
    assert by_customer == {sub.customer}
    newest_first = store.invoices.newest_first()
    for status in ("draft", "open", "paid", "void", "uncollectible"):
        page = client.v1.invoices.list({"status": status, "limit": 100})
        expected = [i.id for i in newest_first if i.status == status]
        assert expected and [i.id for i in page.data] == expected[:100]
        assert page.has_more == (len(expected) > 100)
    created = sorted(i.created for i in store.invoices.values())
    low, high = created[100], created[300]
    window = list(client.v1.invoices.list({"created": {"gte": low, "lt": high}, "limit": 100}).auto_paging_iter())
    assert len(window) == sum(1 for c in created if low <= c < high)
    recent = created[-300]
    combined = list(
        client.v1.invoices.list({"status": "paid", "created": {"gte": recent}, "limit": 100}).auto_paging_iter()
    )
    assert {i.id for i in combined} == {
        i.id for i in store.invoices.values() if i.status == "paid" and i.created >= recent
    }


def test_related_object_filters(account: Account, client: stripe.StripeClient) -> None:
    store = account.store
    refund = next(iter(store.refunds.values()))
    intent = refund.payment_intent
    payments = client.v1.invoice_payments.list({"payment": {"payment_intent": intent, "type": "payment_intent"}})
    assert [p.payment.payment_intent for p in payments.data] == [intent]
    invoice_id = str(payments.data[0].invoice)
    assert [p.id for p in client.v1.invoice_payments.list({"invoice": invoice_id}).data] == [payments.data[0].id]
    charges = client.v1.charges.list({"payment_intent": intent}).data
    assert charges and all(c.payment_intent == intent for c in charges)
    assert [x.id for x in client.v1.refunds.list({"charge": refund.charge}).data] == [
        x.id for x in sorted((x for x in store.refunds.values() if x.charge == refund.charge), key=lambda x: -x.created)
    ]
    note = next(iter(store.credit_notes.values()))
    assert [n.id for n in client.v1.credit_notes.list({"invoice": note.invoice}).data] == [note.id]
    lines = client.v1.credit_notes.line_items.list(note.id)
    assert lines.data[0].invoice_line_item == note.lines[0].invoice_line_item
    item = next(i for i in store.invoiceitems.values() if i.invoice is not None)
    assert item.invoice is not None
    assert item.id in {x.id for x in client.v1.invoice_items.list({"invoice": item.invoice}).data}
    product = next(iter(store.products.values()))
    prices = list(client.v1.prices.list({"product": product.id, "limit": 100}).auto_paging_iter())
    assert prices and {p.product for p in prices} == {product.id}
    sub = next(iter(store.subscriptions.values()))
    items = client.v1.subscription_items.list({"subscription": sub.id})
    assert {i.id for i in items.data} == set(sub.items)


def test_a_generated_invoice_s_lines_page_past_the_embedded_ten(account: Account, client: stripe.StripeClient) -> None:
    long_invoice = next(i for i in account.store.invoices.values() if len(i.lines) > 10)
    shown = client.v1.invoices.retrieve(long_invoice.id)
    assert len(shown.lines.data) == 10 and shown.lines.has_more
    lines = list(client.v1.invoices.line_items.list(long_invoice.id, {"limit": 5}).auto_paging_iter())
    assert [line.id for line in lines] == [line.id for line in long_invoice.lines]
    assert sum(line.amount for line in lines) == shown.subtotal


def test_invoice_lines_paginate_past_the_embedded_page(emulator: RunningStripeEmulator) -> None:
    store = StripeStore(now=2_000_000_000)
    store.customers.add(r.Customer("cus_many", 1_700_000_000, "Many", "m@x.io", "US", "MANY"))
    store.products.add(r.Product("prod_a", 1_700_000_000, "A"))
    store.prices.add(r.Price("price_a", 1_700_000_000, "prod_a", "usd", 100))
    lines = [
        r.Line(f"il_{n:03d}", "in_many", "usd", "price_a", 1, 100, 1_700_000_000, 1_702_000_000, f"line {n}")
        for n in range(25)
    ]
    store.add_invoice(
        r.Invoice("in_many", 1_700_000_000, "cus_many", "usd", "manual", "charge_automatically", 0, 0, lines)
    )
    with start(store, rate_limit=None) as own:
        client = client_for(own)
        invoice = client.v1.invoices.retrieve("in_many")
        assert len(invoice.lines.data) == 10 and invoice.lines.has_more is True
        every = list(client.v1.invoices.line_items.list("in_many", {"limit": 10}).auto_paging_iter())
    assert [line.id for line in every] == [f"il_{n:03d}" for n in range(25)]  # invoice order, not newest first
    assert invoice.total == 2500


def test_events_filters_and_30_day_retention(account: Account, client: stripe.StripeClient) -> None:
    store = account.store
    cutoff = store.now - 30 * 86_400
    recent = list(client.v1.events.list({"limit": 100}).auto_paging_iter())
    assert recent and len(recent) == sum(1 for e in store.events.values() if e.created >= cutoff)
    assert all(e.created >= cutoff for e in recent)
    old = next(e for e in store.events.values() if e.created < cutoff)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.events.retrieve(old.id)
    assert caught.value.http_status == 404 and caught.value.code == "resource_missing"
    assert list(client.v1.events.list({"created": {"lt": cutoff}}).auto_paging_iter()) == []
    paid = list(client.v1.events.list({"type": "invoice.paid", "limit": 100}).auto_paging_iter())
    assert paid and {e.type for e in paid} == {"invoice.paid"}
    both = list(client.v1.events.list({"types": ["invoice.paid", "customer.deleted"], "limit": 100}).auto_paging_iter())
    assert {e.type for e in both} == {"invoice.paid", "customer.deleted"}
    wildcard = list(client.v1.events.list({"type": "customer.subscription.*", "limit": 100}).auto_paging_iter())
    assert wildcard and all(e.type.startswith("customer.subscription.") for e in wildcard)
    event = paid[0]
    assert event.api_version == stripe.api_version
    assert event.data.object.object == "invoice" and event.data.object.status == "paid"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.events.list({"types": [f"type.{n}" for n in range(21)]})


def test_an_event_list_lag_lists_each_event_late_but_retrieves_it_at_once() -> None:
    """`event_list_lag_s`: Stripe's events list is eventually consistent (README "Events")."""
    lag = 60
    account = generate_account(customers=40, months=2, seed=3)  # its own: the test moves the clock
    with start(account, rate_limit=None, event_list_lag_s=lag) as emulator:
        client = client_for(emulator)
        for _ in range(3):
            emulator.apply_step({"kind": "new_customer", "plan": "Pro", "interval": "monthly", "currency": "usd"})
        now = emulator.store.now
        recent = [e for e in account.store.events.values() if e.created > now - lag]
        assert len(recent) >= 6
        listed = {e.id for e in client.v1.events.list({"created": {"gt": now - lag}, "limit": 100}).auto_paging_iter()}
        hidden = [e for e in recent if e.id not in listed]
        assert hidden and all(client.v1.events.retrieve(e.id).id == e.id for e in hidden[:3])
        emulator.clock.advance(seconds=lag)
        later = {e.id for e in client.v1.events.list({"created": {"gt": now - lag}, "limit": 100}).auto_paging_iter()}
        assert {e.id for e in recent} <= later


def test_the_remaining_filters(account: Account, client: stripe.StripeClient) -> None:
    store = account.store
    someone = next(c for c in store.customers.values() if c.deleted_at is None)
    assert [c.id for c in client.v1.customers.list({"email": someone.email}).data] == [someone.id]
    eur = list(client.v1.prices.list({"currency": "eur", "limit": 100}).auto_paging_iter())
    assert eur and {p.currency for p in eur} == {"eur"}
    assert {p.type for p in client.v1.prices.list({"type": "one_time", "limit": 100}).data} == {"one_time"}
    metered = client.v1.prices.list({"recurring": {"usage_type": "metered"}, "limit": 100}).data
    assert metered and all(p.recurring is not None and p.recurring.usage_type == "metered" for p in metered)
    yearly = client.v1.prices.list({"recurring": {"interval": "year"}, "limit": 100}).data
    assert yearly and all(p.recurring is not None and p.recurring.interval == "year" for p in yearly)
    sub = next(s for s in store.subscriptions.values() if s.status == "active")
    by_customer = client.v1.subscriptions.list({"customer": sub.customer}).data
    assert sub.id in {s.id for s in by_customer}
    price = store.subscription_items.get(sub.items[0]).history[-1].price  # type: ignore[union-attr]
    by_price = list(client.v1.subscriptions.list({"price": price, "status": "all", "limit": 100}).auto_paging_iter())
    assert sub.id in {s.id for s in by_price}
    assert all(price in {i.price.id for i in s["items"].data} for s in by_price if s.status != "canceled")
    pending = client.v1.invoice_items.list({"pending": True, "limit": 100}).data
    assert {i.id for i in pending} == {i.id for i in store.invoiceitems.values() if i.invoice is None}
    intents = client.v1.payment_intents.list({"customer": sub.customer, "limit": 100}).data
    assert intents and {i.customer for i in intents} == {sub.customer}
    charges = client.v1.charges.list({"customer": sub.customer, "limit": 100}).data
    assert charges and {c.customer for c in charges} == {sub.customer}
    schedule = next(iter(store.subscription_schedules.values()))
    assert [s.id for s in client.v1.subscription_schedules.list({"customer": schedule.customer}).data] == [schedule.id]
    note = next(iter(store.credit_notes.values()))
    assert note.id in {n.id for n in client.v1.credit_notes.list({"customer": note.customer}).data}
    manual = client.v1.invoices.list({"collection_method": "send_invoice", "limit": 100}).data
    assert manual and {i.collection_method for i in manual} == {"send_invoice"}
    open_payments = client.v1.invoice_payments.list({"status": "open", "limit": 100}).data
    assert open_payments and {p.status for p in open_payments} == {"open"}
