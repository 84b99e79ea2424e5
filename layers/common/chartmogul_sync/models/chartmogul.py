"""ChartMogul Import API objects, as we send them.

Field names and rules follow ChartMogul's Import API (each comment cites its entry in docs/sources.md). Objects refer
to each other by external id (as ChartMogul's bulk JSON import does, docs/sources.md#cm-bulk-import); the uploader
resolves external ids to ChartMogul uuids for the per-object API.
"""

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from .common import Cents, CurrencyCode, NonEmptyStr, NonNegativeCents, OutboundModel, UtcDatetime


class IntervalUnit(StrEnum):
    # docs/sources.md#cm-plans: ChartMogul has no week unit; a Stripe weekly price becomes day × 7.
    DAY = "day"
    MONTH = "month"
    YEAR = "year"


class DataSource(OutboundModel):
    name: NonEmptyStr  # docs/sources.md#cm-data-sources: required and unique per account


class CustomAttributeType(StrEnum):
    STRING = "String"
    INTEGER = "Integer"
    DECIMAL = "Decimal"
    TIMESTAMP = "Timestamp"
    BOOLEAN = "Boolean"


class CustomAttribute(OutboundModel):
    type: CustomAttributeType
    key: NonEmptyStr
    value: str | int | float | bool
    source: str = "chartmogul-sync"

    @model_validator(mode="after")
    def _value_fits_type(self) -> Self:
        # docs/sources.md#cm-customers: String values are at most 255 characters.
        if self.type is CustomAttributeType.STRING and (not isinstance(self.value, str) or len(self.value) > 255):
            raise ValueError(f"custom attribute {self.key!r}: a String value is text of at most 255 characters")
        return self


class CustomerAttributes(OutboundModel):
    tags: list[NonEmptyStr] = Field(default_factory=list)
    custom: list[CustomAttribute] = Field(default_factory=list)


class Customer(OutboundModel):
    """docs/sources.md#cm-customers POST /customers. `data_source_uuid` is added by the uploader."""

    external_id: NonEmptyStr
    name: str = ""
    email: str = ""
    company: str = ""
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = None  # ISO 3166-1 alpha-2
    state: str | None = None
    city: str | None = None
    zip: str | None = None
    lead_created_at: UtcDatetime | None = None
    free_trial_started_at: UtcDatetime | None = None
    attributes: CustomerAttributes = Field(default_factory=CustomerAttributes)


class Plan(OutboundModel):
    """docs/sources.md#cm-plans POST /plans."""

    external_id: NonEmptyStr
    name: NonEmptyStr
    interval_count: Annotated[int, Field(gt=0, strict=True)]
    interval_unit: IntervalUnit


class _LineItemBase(OutboundModel):
    external_id: NonEmptyStr | None = None
    amount_in_cents: Cents  # docs/sources.md#cm-invoice-import: after discounts and taxes; negative for credits
    quantity: Annotated[int, Field(strict=True)] = 1
    discount_amount_in_cents: NonNegativeCents = 0
    discount_code: str | None = None
    discount_description: str | None = None
    tax_amount_in_cents: Cents = 0
    transaction_fees_in_cents: NonNegativeCents = 0
    transaction_fees_currency: CurrencyCode | None = None
    event_order: int | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _quantity_not_zero(self) -> Self:
        if self.quantity == 0:  # docs/sources.md#cm-invoice-import: "Can be any non-zero integer"
            raise ValueError("quantity must be a non-zero integer")
        return self


class _PeriodLineItem(_LineItemBase):
    """Fields shared by subscription and trial lines (docs/sources.md#cm-invoice-import "Subscription (and trial) line
    items")."""

    subscription_external_id: NonEmptyStr
    subscription_set_external_id: NonEmptyStr | None = None
    plan_external_id: NonEmptyStr
    service_period_start: UtcDatetime
    service_period_end: UtcDatetime
    prorated: bool = False
    proration_type: Literal["differential", "differential_mrr", "full"] | None = None
    cancelled_at: UtcDatetime | None = None

    @model_validator(mode="after")
    def _period_in_order(self) -> Self:
        if self.service_period_start >= self.service_period_end:
            raise ValueError(
                f"service_period_start {self.service_period_start.isoformat()} must be before "
                f"service_period_end {self.service_period_end.isoformat()}"
            )
        return self


class SubscriptionLineItem(_PeriodLineItem):
    type: Literal["subscription"] = "subscription"


class TrialLineItem(_PeriodLineItem):
    type: Literal["trial"] = "trial"


class OneTimeLineItem(_LineItemBase):
    type: Literal["one_time"] = "one_time"


LineItem = Annotated[SubscriptionLineItem | TrialLineItem | OneTimeLineItem, Field(discriminator="type")]


class TransactionType(StrEnum):
    PAYMENT = "payment"
    REFUND = "refund"


class TransactionResult(StrEnum):
    SUCCESSFUL = "successful"
    FAILED = "failed"


class Transaction(OutboundModel):
    """docs/sources.md#cm-invoice-import inline transaction, or #cm-transactions added to an existing invoice."""

    external_id: NonEmptyStr
    type: TransactionType
    result: TransactionResult
    date: UtcDatetime
    # Left out, ChartMogul takes the full invoice amount; we always send it so partial payments stay exact.
    amount_in_cents: NonNegativeCents | None = None


class Invoice(OutboundModel):
    """docs/sources.md#cm-invoice-import invoice."""

    external_id: NonEmptyStr
    date: UtcDatetime
    currency: CurrencyCode
    due_date: UtcDatetime | None = None
    collection_method: Literal["automatic", "manual"] | None = None
    line_items: Annotated[list[LineItem], Field(min_length=1)]
    transactions: list[Transaction] = Field(default_factory=list)

    @property
    def total_in_cents(self) -> int:
        return sum(line.amount_in_cents for line in self.line_items)


class Cancellation(OutboundModel):
    """docs/sources.md#cm-subscriptions: the full cancellation history of one subscription (`cancellation_dates`
    replaces it whole)."""

    subscription_external_id: NonEmptyStr
    cancellation_dates: list[UtcDatetime]


class SubscriptionEventType(StrEnum):
    # docs/sources.md#cm-subscription-events
    SUBSCRIPTION_START = "subscription_start"
    SUBSCRIPTION_START_SCHEDULED = "subscription_start_scheduled"
    SCHEDULED_SUBSCRIPTION_START_RETRACTED = "scheduled_subscription_start_retracted"
    SUBSCRIPTION_UPDATED = "subscription_updated"
    SUBSCRIPTION_UPDATE_SCHEDULED = "subscription_update_scheduled"
    SCHEDULED_SUBSCRIPTION_UPDATE_RETRACTED = "scheduled_subscription_update_retracted"
    SUBSCRIPTION_CANCELLED = "subscription_cancelled"
    SUBSCRIPTION_CANCELLATION_SCHEDULED = "subscription_cancellation_scheduled"
    SCHEDULED_SUBSCRIPTION_CANCELLATION_RETRACTED = "scheduled_subscription_cancellation_retracted"
    SUBSCRIPTION_EVENT_RETRACTED = "subscription_event_retracted"


_EVENTS_NEEDING_PRICE = {
    SubscriptionEventType.SUBSCRIPTION_START,
    SubscriptionEventType.SUBSCRIPTION_START_SCHEDULED,
    SubscriptionEventType.SUBSCRIPTION_UPDATED,
    SubscriptionEventType.SUBSCRIPTION_UPDATE_SCHEDULED,
}


class SubscriptionEvent(OutboundModel):
    """docs/sources.md#cm-subscription-events POST /subscription_events (used for committed MRR: scheduled cancellations
    and updates)."""

    external_id: NonEmptyStr
    customer_external_id: NonEmptyStr
    subscription_external_id: NonEmptyStr
    subscription_set_external_id: NonEmptyStr | None = None
    event_type: SubscriptionEventType
    event_date: UtcDatetime
    effective_date: UtcDatetime
    plan_external_id: NonEmptyStr | None = None
    currency: CurrencyCode | None = None
    amount_in_cents: Cents | None = None
    quantity: int | None = None
    tax_amount_in_cents: Cents | None = None
    retracted_event_id: str | None = None
    event_order: int | None = None

    @model_validator(mode="after")
    def _required_by_type(self) -> Self:
        if self.event_type in _EVENTS_NEEDING_PRICE:
            missing = [
                name
                for name in ("plan_external_id", "currency", "amount_in_cents", "quantity")
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"{self.event_type.value} events need {', '.join(missing)}")
        if self.event_type is SubscriptionEventType.SUBSCRIPTION_EVENT_RETRACTED and not self.retracted_event_id:
            raise ValueError("subscription_event_retracted needs retracted_event_id")
        return self
