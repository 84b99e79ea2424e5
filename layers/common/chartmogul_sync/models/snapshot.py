"""The raw message payload: everything needed to build one Stripe customer's ChartMogul state (contract 1).

Objects are kept as the Stripe API JSON of the pinned API version, untouched, so a snapshot can be replayed
through any later mapping version. The transform parses them into typed views (`chartmogul_sync.models.stripe`).
"""

from typing import Annotated, Any, Self

from pydantic import AfterValidator, Field, model_validator

from ..config import STRIPE_API_VERSION
from .common import InboundModel, lists_beside_the_customer

StripeJson = dict[str, Any]


def _has_id(obj: StripeJson) -> StripeJson:
    if not isinstance(obj.get("id"), str) or not obj["id"]:
        raise ValueError(f"a Stripe object without an 'id' (object type {obj.get('object', '?')!r})")
    return obj


StripeObject = Annotated[StripeJson, AfterValidator(_has_id)]


def _pinned_api_version(version: str) -> str:
    # Shapes differ between API versions (lines, periods, discounts moved in basil and clover): a snapshot rendered
    # in another one would map silently wrong (lines as one-time charges, MRR 0), so it is refused.
    if version != STRIPE_API_VERSION:
        raise ValueError(
            f"the snapshot is rendered in Stripe API version {version!r}; this mapping reads only "
            f"{STRIPE_API_VERSION!r} (the version the export pins): export it again with this release"
        )
    return version


class CustomerSnapshot(InboundModel):
    # The Stripe-Version the objects are rendered in: the pinned one, nothing else.
    api_version: Annotated[str, AfterValidator(_pinned_api_version)]
    customer: StripeObject
    # A customer deleted in Stripe: `customer` is then Stripe's `{"id":…, "deleted": true}` stub, enriched with
    # what the exporter still knew (its last `customer.deleted` event payload) where it had it.
    deleted: bool = False
    # A backfill's head start (docs/architecture.md "Customer heads"): the customer object alone, sent as soon as
    # its page of customers is listed, so that ChartMogul's customers are created while the export lists the rest.
    # The full snapshot follows; a head never stands for it (no other objects, never deleted).
    customer_only: bool = False
    subscriptions: list[StripeObject] = Field(default_factory=list)
    # Finalized invoices (never drafts is the exporter's promise; the transform still checks), each with every
    # line in `lines.data` (`lines.has_more` false: lines past the first page are fetched).
    invoices: list[StripeObject] = Field(default_factory=list)
    invoice_items: list[StripeObject] = Field(default_factory=list)
    invoice_payments: list[StripeObject] = Field(default_factory=list)
    charges: list[StripeObject] = Field(default_factory=list)
    refunds: list[StripeObject] = Field(default_factory=list)
    credit_notes: list[StripeObject] = Field(default_factory=list)
    prices: list[StripeObject] = Field(default_factory=list)
    products: list[StripeObject] = Field(default_factory=list)

    @model_validator(mode="after")
    def _head_is_the_customer_alone(self) -> Self:
        if self.customer_only:
            others = lists_beside_the_customer(self)
            if others or self.deleted:
                raise ValueError(
                    "a customer_only snapshot carries the customer object alone, not "
                    + ", ".join(others or ["deleted"])
                )
        return self

    @property
    def customer_id(self) -> str:
        return str(self.customer["id"])
