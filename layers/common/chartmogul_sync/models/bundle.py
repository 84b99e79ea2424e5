"""The upload message payload: one customer's desired state in ChartMogul (docs/architecture.md "Contracts between the
stages", docs/formats.md).

The transform builds it; the uploader diffs it against ChartMogul and writes only what is missing or changed.
Everything is keyed by external id, so applying the same bundle twice writes nothing the second time.
"""

from collections import Counter
from collections.abc import Iterable
from typing import Self

from pydantic import Field, model_validator

from .chartmogul import (
    Cancellation,
    Customer,
    Invoice,
    OneTimeLineItem,
    Plan,
    SubscriptionEvent,
)
from .common import NonEmptyStr, OutboundModel, UtcDatetime, lists_beside_the_customer


class SkippedRecord(OutboundModel):
    """A source object deliberately not imported, with the reason a user can act on (a draft invoice, say)."""

    source_object_id: NonEmptyStr
    reason: NonEmptyStr


class CustomerBundle(OutboundModel):
    mapping_version: NonEmptyStr
    source: NonEmptyStr = "stripe"
    # The snapshot's time: the uploader skips a bundle older than the last one it applied for this customer.
    snapshot_time: UtcDatetime
    customer: Customer
    deleted_in_source: bool = False
    # The customer alone, from a backfill's head start (docs/architecture.md "Customer heads"): the upload creates
    # the customer if ChartMogul lacks it and writes nothing else; the bundle of the full snapshot follows.
    customer_only: bool = False
    plans: list[Plan] = Field(default_factory=list)
    invoices: list[Invoice] = Field(default_factory=list)
    # Invoices that must not exist in ChartMogul any more (voided after they were imported while open).
    removed_invoice_external_ids: list[NonEmptyStr] = Field(default_factory=list)
    cancellations: list[Cancellation] = Field(default_factory=list)
    subscription_events: list[SubscriptionEvent] = Field(default_factory=list)
    skipped: list[SkippedRecord] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.customer_only:
            others = lists_beside_the_customer(self)
            if others or self.deleted_in_source:
                raise ValueError(
                    "a customer_only bundle carries the customer alone, not " + ", ".join(others or ["a deletion"])
                )
        _refuse_duplicates("plan external_id", (plan.external_id for plan in self.plans))
        _refuse_duplicates("invoice external_id", (invoice.external_id for invoice in self.invoices))
        _refuse_duplicates(
            "line item external_id",
            (
                line.external_id
                for invoice in self.invoices
                for line in invoice.line_items
                if line.external_id is not None
            ),
        )
        _refuse_duplicates(
            "transaction external_id",
            (txn.external_id for invoice in self.invoices for txn in invoice.transactions),
        )
        known_plans = {plan.external_id for plan in self.plans}
        for invoice in self.invoices:
            for line in invoice.line_items:
                if not isinstance(line, OneTimeLineItem) and line.plan_external_id not in known_plans:
                    raise ValueError(
                        f"invoice {invoice.external_id}: line {line.external_id or '?'} refers to plan "
                        f"{line.plan_external_id!r}, which is not among the bundle's plans"
                    )
        kept_and_removed = {i.external_id for i in self.invoices} & set(self.removed_invoice_external_ids)
        if kept_and_removed:
            raise ValueError(f"invoices both imported and removed: {sorted(kept_and_removed)}")
        return self

    def subscription_external_ids(self) -> set[str]:
        return {
            line.subscription_external_id
            for invoice in self.invoices
            for line in invoice.line_items
            if not isinstance(line, OneTimeLineItem)
        }


def _refuse_duplicates(what: str, values: Iterable[str]) -> None:
    repeated = sorted(value for value, count in Counter(values).items() if count > 1)
    if repeated:
        raise ValueError(f"duplicate {what}: {', '.join(repeated)}")
