"""The emulator's object store: one collection per Stripe resource, kept in Stripe's list order.

Stripe lists newest first (docs/sources.md#stripe-pagination). A collection sorts its records by `(created, insertion
order)` descending, lazily, and keeps per-field indexes (customer, invoice, subscription...) so that a filtered page of
a 300,000-invoice account costs a lookup and a bisect, not a scan.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from localdev.stripe_emulator import records as r

R = TypeVar("R", bound=r.Record)

# Fields that list filters select on by equality, per collection (docs/sources.md#stripe-lists).
INDEXED_FIELDS: dict[str, tuple[str, ...]] = {
    "customers": (),
    "products": (),
    "prices": ("product",),
    "tax_rates": (),
    "coupons": (),
    "discounts": (),
    "subscriptions": ("customer",),
    "subscription_items": ("subscription",),
    "subscription_schedules": ("customer",),
    "invoices": ("customer", "subscription"),
    "invoiceitems": ("customer", "invoice"),
    "invoice_payments": ("invoice", "payment_intent"),
    "payment_intents": ("customer",),
    "charges": ("customer", "payment_intent"),
    "refunds": ("charge", "payment_intent"),
    "credit_notes": ("customer", "invoice"),
    "events": ("type",),
}


class DuplicateIdError(ValueError):
    pass


class Collection(Generic[R]):
    """The records of one resource, by id and in newest-first order, with equality indexes."""

    def __init__(self, name: str, indexed_fields: tuple[str, ...]) -> None:
        self.name = name
        self._indexed_fields = indexed_fields
        self._by_id: dict[str, R] = {}
        self._seq: dict[str, int] = {}
        self._newest_first: list[R] | None = None
        self._indexes: dict[str, dict[str, list[R]]] | None = None

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, record: R) -> R:
        if record.id in self._by_id:
            raise DuplicateIdError(f"{self.name}: duplicate id {record.id}")
        self._seq[record.id] = len(self._seq)
        self._by_id[record.id] = record
        self._newest_first = None
        self._indexes = None
        return record

    def invalidate(self) -> None:
        """Call after changing a record's `created` or an indexed field (an invoice item being invoiced)."""
        self._newest_first = None
        self._indexes = None

    def get(self, object_id: str) -> R | None:
        return self._by_id.get(object_id)

    def __iter__(self) -> Iterable[R]:
        return iter(self._by_id.values())

    def added_since(self, count: int) -> list[R]:
        """Records added after the first `count` (insertion order): what a step just created."""
        return list(itertools.islice(self._by_id.values(), count, None))

    def values(self) -> list[R]:
        """Records in insertion order."""
        return list(self._by_id.values())

    def sort_key(self, record: R) -> tuple[int, int]:
        """Ascending along the newest-first order: bisect works on lists in that order."""
        return (-record.created, -self._seq[record.id])

    def newest_first(self) -> list[R]:
        if self._newest_first is None:
            self._newest_first = sorted(self._by_id.values(), key=self.sort_key)
        return self._newest_first

    def indexed(self, field: str, value: str) -> list[R] | None:
        """Records whose `field` equals `value`, newest first; None when the field has no index."""
        if field not in self._indexed_fields:
            return None
        if self._indexes is None:
            indexes: dict[str, dict[str, list[R]]] = {name: {} for name in self._indexed_fields}
            for record in self.newest_first():
                for name in self._indexed_fields:
                    key = getattr(record, name)
                    if key is not None:
                        indexes[name].setdefault(key, []).append(record)
            self._indexes = indexes
        return self._indexes[field].get(value, [])

    def position_after(self, view: list[R], record: R) -> int:
        """Index in `view` of the first record older than `record` (works when `record` is not in `view`)."""
        return bisect.bisect_right(view, self.sort_key(record), key=self.sort_key)

    def position_of(self, view: list[R], record: R) -> int:
        """Index in `view` of `record`, or of where it would be."""
        return bisect.bisect_left(view, self.sort_key(record), key=self.sort_key)

    def first_created_before(self, view: list[R], bound: int, inclusive: bool) -> int:
        """Index of the first record with `created < bound` (`<=` when inclusive), views being newest first."""
        key: Callable[[R], int] = lambda record: -record.created  # noqa: E731 - ascending along the view
        return (bisect.bisect_right if not inclusive else bisect.bisect_left)(view, -bound, key=key)


class StripeStore:
    """Every collection of one emulated account, plus the account's clock and mode."""

    def __init__(self, now: int, livemode: bool = False) -> None:
        self.now = now
        self.livemode = livemode
        self.customers: Collection[r.Customer] = self._collection("customers")
        self.products: Collection[r.Product] = self._collection("products")
        self.prices: Collection[r.Price] = self._collection("prices")
        self.tax_rates: Collection[r.TaxRate] = self._collection("tax_rates")
        self.coupons: Collection[r.Coupon] = self._collection("coupons")
        self.discounts: Collection[r.Discount] = self._collection("discounts")
        self.subscriptions: Collection[r.Subscription] = self._collection("subscriptions")
        self.subscription_items: Collection[r.SubscriptionItem] = self._collection("subscription_items")
        self.subscription_schedules: Collection[r.SubscriptionSchedule] = self._collection("subscription_schedules")
        self.invoices: Collection[r.Invoice] = self._collection("invoices")
        self.invoiceitems: Collection[r.InvoiceItem] = self._collection("invoiceitems")
        self.invoice_payments: Collection[r.InvoicePayment] = self._collection("invoice_payments")
        self.payment_intents: Collection[r.PaymentIntent] = self._collection("payment_intents")
        self.charges: Collection[r.Charge] = self._collection("charges")
        self.refunds: Collection[r.Refund] = self._collection("refunds")
        self.credit_notes: Collection[r.CreditNote] = self._collection("credit_notes")
        self.events: Collection[r.Event] = self._collection("events")
        self.invoice_lines: dict[str, r.Line] = {}  # line id -> line, for credit notes and tests

    def _collection(self, name: str) -> Collection[R]:
        return Collection(name, INDEXED_FIELDS[name])

    def collection(self, name: str) -> Collection[r.Record]:
        found = getattr(self, name, None)
        if not isinstance(found, Collection):
            raise KeyError(name)
        return found

    def add_invoice(self, invoice: r.Invoice) -> r.Invoice:
        self.invoices.add(invoice)
        for line in invoice.lines:
            self.invoice_lines[line.id] = line
        return invoice

    def counts(self) -> dict[str, int]:
        return {name: len(self.collection(name)) for name in INDEXED_FIELDS}
