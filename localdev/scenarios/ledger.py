"""The generator's intent-level ledger: what it meant to bill, independent of Stripe's JSON shapes.

The biller writes one entry per line it bills (price, quantity, the discount and tax it applied, the service
period, whether it is a proration), per transaction and per cancellation, next to the Stripe records it makes.
The ground truth (`truth.py`) is computed from this ledger alone, so the audit it feeds never depends on the
project's transform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

InvoiceState = Literal["draft", "open", "paid", "void", "uncollectible"]


@dataclass(slots=True)
class BilledLine:
    line_id: str
    kind: Literal["subscription", "one_time"]
    price_id: str
    subscription_id: str | None
    item_id: str | None
    quantity: int
    period_start: int
    period_end: int
    gross: int  # before discount; includes inclusive tax, excludes exclusive tax
    discount: int
    discount_code: str | None
    tax: int
    tax_inclusive: bool
    prorated: bool
    description: str

    @property
    def charged(self) -> int:
        """What the customer pays for the line: after discount, including tax."""
        return self.gross - self.discount + (0 if self.tax_inclusive else self.tax)


@dataclass(slots=True)
class BilledTransaction:
    external_id: str
    type: Literal["payment", "refund"]
    result: Literal["successful", "failed"]
    date: int
    amount: int


@dataclass(slots=True)
class BilledInvoice:
    invoice_id: str
    created: int
    currency: str
    lines: list[BilledLine]
    collection_method: Literal["charge_automatically", "send_invoice"] = "charge_automatically"
    state: InvoiceState = "draft"
    finalized_at: int | None = None
    due_date: int | None = None
    transactions: list[BilledTransaction] = field(default_factory=list)


@dataclass(slots=True)
class BilledSubscription:
    subscription_id: str
    item_ids: list[str]
    trial_start: int | None = None
    ended_at: int | None = None


@dataclass(slots=True)
class CustomerLedger:
    customer_id: str
    name: str
    email: str
    country: str
    created: int
    scenarios: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    invoices: list[BilledInvoice] = field(default_factory=list)
    subscriptions: list[BilledSubscription] = field(default_factory=list)
    deleted_at: int | None = None

    def invoice(self, invoice_id: str) -> BilledInvoice:
        for billed in reversed(self.invoices):  # the invoice being worked on is almost always the latest
            if billed.invoice_id == invoice_id:
                return billed
        raise KeyError(invoice_id)
