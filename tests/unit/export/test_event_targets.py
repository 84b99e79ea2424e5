"""Which customer a Stripe event is about (the payload is read for ids only)."""

from typing import Any

from chartmogul_sync.sources.stripe.events import CustomerChanged, CustomerDeleted, NeedsLookup, event_target


def event(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": "evt_1", "object": "event", "type": event_type, "created": 1, "data": {"object": obj}}


def test_a_customer_event_names_the_customer() -> None:
    assert event_target(event("customer.updated", {"id": "cus_1", "object": "customer"})) == CustomerChanged("cus_1")


def test_a_customer_deleted_event_keeps_what_stripe_last_knew() -> None:
    customer = {"id": "cus_1", "object": "customer", "email": "a@example.com", "created": 5}

    target = event_target(event("customer.deleted", customer))

    assert target == CustomerDeleted("cus_1", {**customer, "deleted_at": 1})  # the event's time


def test_objects_with_a_customer_field_name_it_whether_expanded_or_not() -> None:
    subscription = {"id": "sub_1", "object": "subscription", "customer": "cus_2"}
    invoice = {"id": "in_1", "object": "invoice", "customer": {"id": "cus_3", "object": "customer"}}

    assert event_target(event("customer.subscription.updated", subscription)) == CustomerChanged("cus_2")
    assert event_target(event("invoice.paid", invoice)) == CustomerChanged("cus_3")


def test_invoice_payments_and_refunds_need_their_parent_to_find_the_customer() -> None:
    payment = {"id": "inpay_1", "object": "invoice_payment", "invoice": "in_9"}
    refund = {"id": "re_1", "object": "refund", "charge": "ch_9", "payment_intent": "pi_9"}

    assert event_target(event("invoice_payment.paid", payment)) == NeedsLookup("invoices", "in_9")
    assert event_target(event("refund.created", refund)) == NeedsLookup("charges", "ch_9")


def test_catalog_and_account_events_concern_no_customer() -> None:
    assert event_target(event("price.updated", {"id": "price_1", "object": "price", "product": "prod_1"})) is None
    assert event_target(event("balance.available", {"object": "balance"})) is None
    assert event_target({"id": "evt_2", "type": "customer.updated"}) is None
