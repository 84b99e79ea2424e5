"""The emulated Stripe account's state, as compact typed records with their history.

The records are the generator's ledger and the emulator's store at once. They keep *when* each state change
happened (status transitions, price changes, cancellation requests...), so `render.py` can draw any object as it
was at any instant: the current object for the API and the object at the time of each event for
`event.data.object` (Stripe renders an event's object as of the event, docs/sources.md#stripe-events). Keeping history
instead of one JSON snapshot per event is what lets a 10,000-customer account fit in memory.

All times are Unix seconds (UTC), amounts integer minor units, as in the Stripe API.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

T = TypeVar("T")

SubscriptionStatus = Literal[
    "incomplete", "trialing", "active", "past_due", "unpaid", "canceled", "paused", "incomplete_expired"
]


def state_at(changes: list[tuple[int, T]], at: int, before_first: T) -> T:
    """The value of a history (time-ordered `(time, value)` changes) at instant `at`."""
    value = before_first
    for changed_at, new_value in changes:
        if changed_at > at:
            break
        value = new_value
    return value


@dataclass(slots=True)
class Customer:
    id: str
    created: int
    name: str
    email: str
    country: str
    invoice_prefix: str
    currency: str | None = None
    deleted_at: int | None = None
    balance: int = 0
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Product:
    id: str
    created: int
    name: str


@dataclass(slots=True)
class Price:
    id: str
    created: int
    product: str
    currency: str
    unit_amount: int
    type: Literal["recurring", "one_time"] = "recurring"
    interval: Literal["day", "week", "month", "year"] = "month"  # recurring prices only
    interval_count: int = 1
    usage_type: Literal["licensed", "metered"] = "licensed"
    tax_behavior: Literal["inclusive", "exclusive", "unspecified"] = "unspecified"
    nickname: str | None = None


@dataclass(slots=True)
class TaxRate:
    id: str
    created: int
    display_name: str
    percentage: float
    inclusive: bool
    country: str


@dataclass(slots=True)
class Coupon:
    id: str
    created: int
    name: str
    duration: Literal["once", "repeating", "forever"]
    duration_in_months: int | None = None
    percent_off: float | None = None
    amount_off: int | None = None
    currency: str | None = None


@dataclass(slots=True)
class Discount:
    """A coupon applied to a subscription, or to one of its items (Stripe's `di_` object, reachable through
    `expand` only). An item's discount sits on `subscription_item.discounts` and on its invoice lines' `discounts`;
    a subscription's on `subscription.discounts` and `invoice.discounts` (stripe/_discount.py,
    stripe/_invoice_line_item.py: "Line item discounts are applied before invoice discounts")."""

    id: str
    coupon: str
    customer: str
    subscription: str | None
    start: int
    end: int | None = None  # repeating coupons end after `duration_in_months`
    removed_at: int | None = None  # `once` coupons leave the subscription after the first invoice
    subscription_item: str | None = None  # set: an item-level discount

    @property
    def created(self) -> int:
        return self.start


@dataclass(slots=True)
class ItemState:
    start: int
    price: str
    quantity: int | None  # None for metered prices (no quantity on the item)


@dataclass(slots=True)
class SubscriptionItem:
    id: str
    created: int
    subscription: str
    history: list[ItemState]
    deleted_at: int | None = None
    discounts: list[str] = field(default_factory=list)  # item-level discounts (`di_` ids)

    def at(self, instant: int) -> ItemState:
        current = self.history[0]
        for state in self.history:
            if state.start > instant:
                break
            current = state
        return current


@dataclass(slots=True)
class Subscription:
    id: str
    created: int
    customer: str
    currency: str
    collection_method: Literal["charge_automatically", "send_invoice"]
    items: list[str]
    start_date: int
    billing_cycle_anchor: int
    periods: list[tuple[int, int]] = field(default_factory=list)  # billing periods, in order
    statuses: list[tuple[int, SubscriptionStatus]] = field(default_factory=list)
    cancel_at_period_end_changes: list[tuple[int, bool]] = field(default_factory=list)
    pause_collection_changes: list[tuple[int, str | None]] = field(default_factory=list)
    latest_invoice_changes: list[tuple[int, str | None]] = field(default_factory=list)
    discounts: list[str] = field(default_factory=list)
    default_tax_rates: list[str] = field(default_factory=list)
    days_until_due: int | None = None
    trial_start: int | None = None
    trial_end: int | None = None
    canceled_at: int | None = None
    ended_at: int | None = None
    cancellation_reason: str | None = None
    schedule: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def status_at(self, instant: int) -> SubscriptionStatus:
        return state_at(self.statuses, instant, self.statuses[0][1])

    @property
    def status(self) -> SubscriptionStatus:
        return self.statuses[-1][1]

    def period_at(self, instant: int) -> tuple[int, int]:
        current = self.periods[0]
        for period in self.periods:
            if period[0] > instant:
                break
            current = period
        return current


@dataclass(slots=True)
class TaxAmount:
    tax_rate: str
    amount: int
    inclusive: bool
    taxable_amount: int


@dataclass(slots=True)
class Line:
    """An invoice line (`il_`): a subscription item's charge or an invoice item (prorations, one-offs)."""

    id: str
    invoice: str
    currency: str
    price: str
    quantity: int
    amount: int  # gross: before discounts; includes inclusive tax, excludes exclusive tax (as Stripe)
    period_start: int
    period_end: int
    description: str
    subscription: str | None = None
    subscription_item: str | None = None
    invoice_item: str | None = None  # set => parent.type = invoice_item_details
    proration: bool = False
    discountable: bool = True
    # Every discount's amount, the line's own first, then the invoice's.
    discount_amounts: list[tuple[str, int]] = field(default_factory=list)
    discounts: list[str] = field(default_factory=list)  # the line's own (item-level) discounts
    taxes: list[TaxAmount] = field(default_factory=list)

    @property
    def discount_total(self) -> int:
        return sum(amount for _, amount in self.discount_amounts)

    @property
    def exclusive_tax(self) -> int:
        return sum(tax.amount for tax in self.taxes if not tax.inclusive)

    @property
    def inclusive_tax(self) -> int:
        return sum(tax.amount for tax in self.taxes if tax.inclusive)


@dataclass(slots=True)
class Invoice:
    id: str
    created: int
    customer: str
    currency: str
    billing_reason: str
    collection_method: Literal["charge_automatically", "send_invoice"]
    period_start: int
    period_end: int
    lines: list[Line] = field(default_factory=list)
    subscription: str | None = None
    discounts: list[str] = field(default_factory=list)
    number: str | None = None
    due_date: int | None = None
    finalized_at: int | None = None
    paid_at: int | None = None
    voided_at: int | None = None
    marked_uncollectible_at: int | None = None
    attempts: list[int] = field(default_factory=list)  # payment attempt times, failed and successful
    payment_intent: str | None = None
    credit_notes: list[str] = field(default_factory=list)
    auto_advance: bool = True

    @property
    def subtotal(self) -> int:
        return sum(line.amount for line in self.lines)

    @property
    def discount_total(self) -> int:
        return sum(line.discount_total for line in self.lines)

    @property
    def exclusive_tax(self) -> int:
        return sum(line.exclusive_tax for line in self.lines)

    @property
    def inclusive_tax(self) -> int:
        return sum(line.inclusive_tax for line in self.lines)

    @property
    def total(self) -> int:
        """Stripe's `invoice.total`: lines after discounts, plus exclusive tax."""
        return self.subtotal - self.discount_total + self.exclusive_tax

    def status_at(self, instant: int) -> str:
        """Latest transition at `instant` wins (an uncollectible invoice can still be paid later)."""
        transitions = [
            (self.finalized_at, "open"),
            (self.marked_uncollectible_at, "uncollectible"),
            (self.voided_at, "void"),
            (self.paid_at, "paid"),
        ]
        status, latest = "draft", -1
        for at, name in transitions:
            if at is not None and latest <= at <= instant:
                status, latest = name, at
        return status

    @property
    def status(self) -> str:
        return self.status_at(2**62)


@dataclass(slots=True)
class InvoiceItem:
    id: str
    created: int
    customer: str
    currency: str
    price: str
    quantity: int
    amount: int
    period_start: int
    period_end: int
    description: str
    invoice: str | None = None
    subscription: str | None = None
    subscription_item: str | None = None
    proration: bool = False


@dataclass(slots=True)
class PaymentIntent:
    id: str
    created: int
    customer: str
    amount: int
    currency: str
    charges: list[str] = field(default_factory=list)
    succeeded_at: int | None = None
    canceled_at: int | None = None


@dataclass(slots=True)
class Charge:
    id: str
    created: int
    customer: str
    payment_intent: str
    amount: int
    currency: str
    succeeded: bool
    failure_code: str | None = None
    refunds: list[str] = field(default_factory=list)


@dataclass(slots=True)
class InvoicePayment:
    id: str
    created: int
    invoice: str
    payment_intent: str
    currency: str
    amount_requested: int
    paid_at: int | None = None
    canceled_at: int | None = None

    def status_at(self, instant: int) -> str:
        if self.paid_at is not None and self.paid_at <= instant:
            return "paid"
        if self.canceled_at is not None and self.canceled_at <= instant:
            return "canceled"
        return "open"


@dataclass(slots=True)
class Refund:
    id: str
    created: int
    customer: str
    charge: str
    payment_intent: str
    amount: int
    currency: str
    reason: str | None = None


@dataclass(slots=True)
class CreditNoteLine:
    id: str
    invoice_line_item: str
    amount: int
    quantity: int
    description: str


@dataclass(slots=True)
class CreditNote:
    id: str
    created: int
    customer: str
    invoice: str
    currency: str
    number: str
    type: Literal["pre_payment", "post_payment"]
    reason: str
    lines: list[CreditNoteLine] = field(default_factory=list)
    refund: str | None = None  # post-payment credit paid back to the card
    memo: str | None = None

    @property
    def amount(self) -> int:
        return sum(line.amount for line in self.lines)


@dataclass(slots=True)
class SchedulePhase:
    start: int
    end: int | None
    items: list[tuple[str, int | None]]  # (price, quantity)


@dataclass(slots=True)
class SubscriptionSchedule:
    id: str
    created: int
    customer: str
    subscription: str
    phases: list[SchedulePhase]
    released_at: int | None = None


@dataclass(slots=True)
class Event:
    id: str
    created: int
    type: str
    resource: str  # the store collection of the object, e.g. "invoices"
    object_id: str
    previous_attributes: dict[str, Any] | None = None


Record = (
    Customer
    | Product
    | Price
    | TaxRate
    | Coupon
    | Discount
    | Subscription
    | SubscriptionItem
    | Invoice
    | InvoiceItem
    | PaymentIntent
    | Charge
    | InvoicePayment
    | Refund
    | CreditNote
    | SubscriptionSchedule
    | Event
)
