"""Typed views of the Stripe objects the mapping reads, in the shapes of API version 2026-10-28.endive.

Only the fields the transform uses are declared; everything else is ignored (InboundModel), so Stripe adding a
field never breaks parsing. Field names and nesting follow the resource classes of stripe==16.1.0
(`stripe/_invoice.py`, `_invoice_line_item.py`, `_subscription.py`, …) and
docs/sources.md#stripe-versions (the basil/clover shape changes). Timestamps stay Unix seconds, amounts integer
minor units, exactly as Stripe sends them; the mapping converts. Both are strict (docs/mapping-decisions.md,
"What is refused"): times are plausible Unix seconds, amounts and counts JSON integers, never booleans or floats.

Expandable fields (`ExpandableField[...]` in stripe-python) arrive either as an id or as the expanded object;
`expandable_id()` reads both.
"""

from typing import Any

from pydantic import Field, field_validator

from .common import InboundModel, StrictInt, UnixSeconds


def _none_as_empty(value: Any) -> Any:
    # Stripe sends `null` for several optional lists (`taxes`, `discount_amounts`) and metadata maps.
    return [] if value is None else value


class _HasId(InboundModel):
    id: str


def expandable_id(value: "str | _HasId | dict[str, Any] | None") -> str | None:
    """The id of an expandable field, whether Stripe sent the id or the expanded object."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        found = value.get("id")
        return found if isinstance(found, str) else None
    return value.id


class StripeList(InboundModel):
    has_more: bool = False


class Period(InboundModel):
    start: UnixSeconds
    end: UnixSeconds


# ---------------------------------------------------------------- products, prices, coupons, discounts


class StripeProduct(_HasId):
    name: str = ""
    deleted: bool = False


class Recurring(InboundModel):
    interval: str  # day | week | month | year
    interval_count: StrictInt = Field(default=1, ge=1)
    usage_type: str = "licensed"  # licensed | metered
    meter: str | None = None


class StripePrice(_HasId):
    product: str | StripeProduct
    nickname: str | None = None
    recurring: Recurring | None = None
    type: str = "recurring"  # one_time | recurring
    currency: str = ""

    @property
    def product_id(self) -> str:
        return self.product if isinstance(self.product, str) else self.product.id


class StripeCoupon(_HasId):
    name: str | None = None
    duration: str | None = None  # forever | once | repeating


class DiscountSource(InboundModel):
    # Since clover 2025-09-30 the coupon sits under `source` (docs/sources.md#stripe-versions).
    type: str = "coupon"
    coupon: str | StripeCoupon | None = None


class StripeDiscount(_HasId):
    source: DiscountSource | None = None
    promotion_code: str | _HasId | None = None

    @property
    def coupon(self) -> StripeCoupon | str | None:
        return self.source.coupon if self.source is not None else None


# ---------------------------------------------------------------- customers


class Address(InboundModel):
    city: str | None = None
    country: str | None = None
    postal_code: str | None = None
    state: str | None = None


class StripeCustomer(_HasId):
    created: UnixSeconds | None = None
    name: str | None = None
    individual_name: str | None = None
    business_name: str | None = None
    email: str | None = None
    address: Address | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    deleted: bool = False
    # Not a Stripe field: the exporter adds the `customer.deleted` event's time to a deleted customer's stub.
    deleted_at: UnixSeconds | None = None

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_or_empty(cls, value: Any) -> Any:
        return {} if value is None else value


# ---------------------------------------------------------------- subscriptions


class StripeSubscriptionItem(_HasId):
    price: StripePrice
    quantity: StrictInt | None = None
    subscription: str | None = None
    # Since basil the periods live on the item (docs/sources.md#stripe-versions).
    current_period_start: UnixSeconds | None = None
    current_period_end: UnixSeconds | None = None


class SubscriptionItemList(StripeList):
    data: list[StripeSubscriptionItem] = Field(default_factory=list)


class PauseCollection(InboundModel):
    behavior: str
    resumes_at: UnixSeconds | None = None


class StripeSubscription(_HasId):
    customer: str | _HasId | None = None
    status: str  # active | canceled | incomplete | incomplete_expired | past_due | paused | trialing | unpaid
    created: UnixSeconds
    items: SubscriptionItemList = Field(default_factory=SubscriptionItemList)
    trial_start: UnixSeconds | None = None
    trial_end: UnixSeconds | None = None
    cancel_at_period_end: bool = False
    cancel_at: UnixSeconds | None = None
    # `canceled_at` is when cancellation was *requested*; `ended_at` is when the subscription ended
    # (docs/sources.md#stripe-object-mapping).
    canceled_at: UnixSeconds | None = None
    ended_at: UnixSeconds | None = None
    pause_collection: PauseCollection | None = None
    latest_invoice: str | _HasId | None = None


# ---------------------------------------------------------------- invoices and their lines


class LineTax(InboundModel):
    amount: StrictInt
    tax_behavior: str  # inclusive | exclusive


class LineDiscountAmount(InboundModel):
    amount: StrictInt
    discount: str | StripeDiscount


class PriceDetails(InboundModel):
    price: str | StripePrice
    product: str | None = None

    @property
    def price_id(self) -> str:
        return self.price if isinstance(self.price, str) else self.price.id


class Pricing(InboundModel):
    type: str = "price_details"
    price_details: PriceDetails | None = None


class SubscriptionItemDetails(InboundModel):
    subscription: str | None = None
    subscription_item: str
    proration: bool = False
    invoice_item: str | None = None


class InvoiceItemDetails(InboundModel):
    invoice_item: str
    proration: bool = False
    subscription: str | None = None


class LineParent(InboundModel):
    type: str  # subscription_item_details | invoice_item_details
    subscription_item_details: SubscriptionItemDetails | None = None
    invoice_item_details: InvoiceItemDetails | None = None


class StripeInvoiceLine(_HasId):
    amount: StrictInt
    currency: str = ""
    description: str | None = None
    discount_amounts: list[LineDiscountAmount] = Field(default_factory=list)
    discounts: list[str | StripeDiscount] = Field(default_factory=list)
    parent: LineParent | None = None
    period: Period
    pricing: Pricing | None = None
    quantity: StrictInt | None = None
    taxes: list[LineTax] = Field(default_factory=list)

    _empty_lists = field_validator("discount_amounts", "discounts", "taxes", mode="before")(_none_as_empty)

    @property
    def price_id(self) -> str | None:
        if self.pricing is None or self.pricing.price_details is None:
            return None
        return self.pricing.price_details.price_id


class InvoiceLineList(StripeList):
    data: list[StripeInvoiceLine] = Field(default_factory=list)


class StatusTransitions(InboundModel):
    finalized_at: UnixSeconds | None = None
    paid_at: UnixSeconds | None = None
    voided_at: UnixSeconds | None = None
    marked_uncollectible_at: UnixSeconds | None = None


class InvoiceSubscriptionDetails(InboundModel):
    subscription: str | _HasId


class InvoiceParent(InboundModel):
    type: str
    subscription_details: InvoiceSubscriptionDetails | None = None


class PaymentReference(InboundModel):
    type: str  # charge | payment_intent | payment_record
    payment_intent: str | _HasId | None = None
    charge: str | _HasId | None = None


class PaymentStatusTransitions(InboundModel):
    paid_at: UnixSeconds | None = None
    canceled_at: UnixSeconds | None = None


class StripeInvoicePayment(_HasId):
    invoice: str | _HasId
    amount_paid: StrictInt | None = None
    amount_requested: StrictInt = 0
    created: UnixSeconds | None = None
    status: str  # open | paid | canceled
    status_transitions: PaymentStatusTransitions = Field(default_factory=PaymentStatusTransitions)
    payment: PaymentReference


class InvoicePaymentList(StripeList):
    data: list[StripeInvoicePayment] = Field(default_factory=list)


class StripeInvoice(_HasId):
    customer: str | _HasId | None = None
    currency: str
    status: str | None  # draft | open | paid | uncollectible | void
    created: UnixSeconds
    due_date: UnixSeconds | None = None
    collection_method: str | None = None  # charge_automatically | send_invoice
    status_transitions: StatusTransitions = Field(default_factory=StatusTransitions)
    lines: InvoiceLineList
    parent: InvoiceParent | None = None
    discounts: list[str | StripeDiscount] = Field(default_factory=list)
    total: StrictInt
    amount_paid: StrictInt = 0
    # Includable list (`expand[]=payments`, docs/sources.md#stripe-expand); the snapshot also carries them separately.
    payments: InvoicePaymentList | None = None

    _empty_lists = field_validator("discounts", mode="before")(_none_as_empty)

    @property
    def subscription_id(self) -> str | None:
        if self.parent is None or self.parent.subscription_details is None:
            return None
        return expandable_id(self.parent.subscription_details.subscription)


class StripeInvoiceItemSubscriptionDetails(InboundModel):
    subscription: str
    subscription_item: str | None = None


class StripeInvoiceItemParent(InboundModel):
    type: str = "subscription_details"
    subscription_details: StripeInvoiceItemSubscriptionDetails | None = None


class StripeInvoiceItem(_HasId):
    customer: str | _HasId | None = None
    invoice: str | _HasId | None = None
    parent: StripeInvoiceItemParent | None = None
    proration: bool = False


# ---------------------------------------------------------------- money movements


class StripeCharge(_HasId):
    customer: str | _HasId | None = None
    status: str  # failed | pending | succeeded
    created: UnixSeconds
    amount: StrictInt = 0
    payment_intent: str | _HasId | None = None
    failure_code: str | None = None
    failure_message: str | None = None


class StripeRefund(_HasId):
    amount: StrictInt
    created: UnixSeconds
    charge: str | _HasId | None = None
    payment_intent: str | _HasId | None = None
    status: str | None = None  # pending | requires_action | succeeded | failed | canceled


class CreditNoteRefund(InboundModel):
    amount_refunded: StrictInt
    refund: str | StripeRefund | None = None
    type: str | None = None


class StripeCreditNote(_HasId):
    customer: str | _HasId | None = None
    invoice: str | _HasId
    type: str  # pre_payment | post_payment | mixed
    status: str = "issued"  # issued | void
    created: UnixSeconds
    total: StrictInt = 0
    pre_payment_amount: StrictInt = 0
    post_payment_amount: StrictInt = 0
    out_of_band_amount: StrictInt | None = None
    refunds: list[CreditNoteRefund] = Field(default_factory=list)

    _empty_lists = field_validator("refunds", mode="before")(_none_as_empty)
