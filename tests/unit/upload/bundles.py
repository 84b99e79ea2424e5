"""Customer bundles for the upload tests: a small, realistic customer built the way the transform builds one.

A monthly "Pro" subscription item billed each month of 2025, paid; options add a refund, a cancellation, a
one-off line, a subscription event. Every date is in the past (ChartMogul refuses future cancellations).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from chartmogul_sync.models import (
    Cancellation,
    Customer,
    CustomerAttributes,
    CustomerBundle,
    Invoice,
    OneTimeLineItem,
    Plan,
    SubscriptionEvent,
    SubscriptionEventType,
    SubscriptionLineItem,
    Transaction,
    TransactionResult,
    TransactionType,
)
from chartmogul_sync.models.chartmogul import CustomAttribute, CustomAttributeType, IntervalUnit

SNAPSHOT_TIME = dt.datetime(2026, 1, 10, 12, 0, tzinfo=dt.UTC)
PRO_MONTHLY = Plan(external_id="price_pro_m", name="Pro (monthly)", interval_count=1, interval_unit=IntervalUnit.MONTH)
PRO_YEARLY = Plan(external_id="price_pro_y", name="Pro (yearly)", interval_count=1, interval_unit=IntervalUnit.YEAR)


def month_start(month: int, year: int = 2025) -> dt.datetime:
    return dt.datetime(year + (month - 1) // 12, (month - 1) % 12 + 1, 1, tzinfo=dt.UTC)


def monthly_invoice(
    customer: str, month: int, *, amount: int = 4900, paid: bool = True, refund: int | None = None, one_off: int = 0
) -> Invoice:
    """The invoice of `month` (1 = January 2025) for the Pro monthly item of `customer`."""
    start, end = month_start(month), month_start(month + 1)
    ids = f"{customer}_{month:02d}"
    lines: list[Any] = [
        SubscriptionLineItem(
            external_id=f"il_{ids}",
            subscription_external_id=f"si_{customer}",
            subscription_set_external_id=f"sub_{customer}",
            plan_external_id=PRO_MONTHLY.external_id,
            service_period_start=start,
            service_period_end=end,
            amount_in_cents=amount,
            tax_amount_in_cents=0,
        )
    ]
    if one_off:
        lines.append(OneTimeLineItem(external_id=f"il_{ids}_setup", amount_in_cents=one_off, description="Setup"))
    transactions = []
    if paid:
        transactions.append(
            Transaction(
                external_id=f"inpay_{ids}",
                type=TransactionType.PAYMENT,
                result=TransactionResult.SUCCESSFUL,
                date=start + dt.timedelta(hours=1),
                amount_in_cents=amount + one_off,
            )
        )
    if refund is not None:
        transactions.append(
            Transaction(
                external_id=f"re_{ids}",
                type=TransactionType.REFUND,
                result=TransactionResult.SUCCESSFUL,
                date=start + dt.timedelta(days=3),
                amount_in_cents=refund,
            )
        )
    return Invoice(
        external_id=f"in_{ids}",
        date=start,
        currency="USD",
        line_items=lines,
        transactions=transactions,
    )


def customer_bundle(
    customer: str = "cus_alice",
    *,
    months: int = 3,
    snapshot_time: dt.datetime = SNAPSHOT_TIME,
    email: str | None = None,
    invoices: list[Invoice] | None = None,
    cancelled_at: dt.datetime | None = None,
    cancellations: list[Cancellation] | None = None,
    events: list[SubscriptionEvent] | None = None,
    removed: list[str] | None = None,
    tags: list[str] | None = None,
    plans: list[Plan] | None = None,
    custom_attributes: bool = True,
) -> CustomerBundle:
    chosen = invoices if invoices is not None else [monthly_invoice(customer, m) for m in range(1, months + 1)]
    if cancellations is None:
        cancellations = (
            [Cancellation(subscription_external_id=f"si_{customer}", cancellation_dates=[cancelled_at])]
            if cancelled_at
            else []
        )
    return CustomerBundle(
        mapping_version="1.0.0",
        snapshot_time=snapshot_time,
        customer=Customer(
            external_id=customer,
            name=customer.removeprefix("cus_").title(),
            email=email or f"{customer.removeprefix('cus_')}@example.com",
            country="DE",
            lead_created_at=dt.datetime(2024, 12, 20, tzinfo=dt.UTC),
            attributes=CustomerAttributes(
                tags=tags or [],
                custom=[CustomAttribute(type=CustomAttributeType.STRING, key="channel", value="partner")]
                if custom_attributes
                else [],
            ),
        ),
        plans=plans if plans is not None else [PRO_MONTHLY],
        invoices=chosen,
        removed_invoice_external_ids=removed or [],
        cancellations=cancellations,
        subscription_events=events or [],
    )


def cancellation_event(customer: str, when: dt.datetime) -> SubscriptionEvent:
    return SubscriptionEvent(
        external_id=f"evt_{customer}_cancel",
        customer_external_id=customer,
        subscription_external_id=f"si_{customer}",
        event_type=SubscriptionEventType.SUBSCRIPTION_CANCELLATION_SCHEDULED,
        event_date=when - dt.timedelta(days=10),
        effective_date=when,
    )
