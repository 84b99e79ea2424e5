"""Which customer a Stripe event is about.

An event is only a notice that "something of customer X changed": its payload is rendered in the API version of
its creation, not ours (docs/sources.md#stripe-events), so the exporter re-fetches the whole
customer instead of reading the payload. This module only reads the stable id fields (`object`, `id`,
`customer`, `invoice`, `charge`) of `data.object`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...models.snapshot import StripeJson

# Objects that belong to no single customer: a change to them changes no customer's history. A renamed
# product reaches ChartMogul with the next snapshot of a customer on that plan.
CATALOG_OBJECTS = frozenset({"price", "product", "plan", "coupon", "promotion_code", "tax_rate"})


@dataclass(frozen=True)
class CustomerChanged:
    customer_id: str


@dataclass(frozen=True)
class CustomerDeleted:
    customer_id: str
    # `data.object` of the `customer.deleted` event, plus `deleted_at` (the event's time): what Stripe last knew
    # about the customer. A deleted customer retrieves as a bare `{"id", "deleted": true}` stub, so this is kept
    # for the snapshot (docs/mapping-decisions.md "Subscriptions": the deletion time).
    last_known: StripeJson


@dataclass(frozen=True)
class NeedsLookup:
    """The object names no customer, only its parent (an invoice payment's invoice, a refund's charge)."""

    parent_kind: str  # "invoices" or "charges"
    parent_id: str


EventTarget = CustomerChanged | CustomerDeleted | NeedsLookup | None


def _id_of(value: Any) -> str | None:
    """A reference field is an id, or the object itself when expanded."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def event_target(event: StripeJson) -> EventTarget:
    """The customer an event is about, a lookup to find it, or None when it concerns no customer."""
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        return None
    kind = obj.get("object")
    if kind == "customer":
        customer_id = _id_of(obj.get("id"))
        if customer_id is None:
            return None
        if event.get("type") == "customer.deleted":
            return CustomerDeleted(customer_id, {**obj, "deleted_at": event.get("created")})
        return CustomerChanged(customer_id)
    if kind in CATALOG_OBJECTS:
        return None
    customer_id = _id_of(obj.get("customer"))
    if customer_id is not None:
        return CustomerChanged(customer_id)
    # An invoice payment or a refund carries no customer field (docs/sources.md#stripe-versions, "Payments").
    invoice_id = _id_of(obj.get("invoice"))
    if invoice_id is not None:
        return NeedsLookup("invoices", invoice_id)
    charge_id = _id_of(obj.get("charge"))
    if charge_id is not None:
        return NeedsLookup("charges", charge_id)
    return None
