"""What an audit finds: differences, each with its cause, the figures per month, and the verdict.

A difference is either *by design* (ChartMogul's rules and Stripe's own view differ on purpose, or the audit
cannot compare exactly: exchange rates it was not given) or *drift* (ChartMogul does not hold what Stripe's
current data says, or holds different numbers): the audit matches only when there is no drift. Both sides round
as ChartMogul documents, so the tolerance (`TOLERANCE_CENTS_PER_SUBSCRIPTION`) is zero: every cent is listed.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

# ChartMogul rounds each line item's MRR to a cent, and so do our figures (docs/mapping-decisions.md, rule 6): a
# difference of one cent is a difference. Kept as a named constant so the rule stays visible in the report.
TOLERANCE_CENTS_PER_SUBSCRIPTION = 0


class Cause(StrEnum):
    """Why a difference exists. The first group is drift: someone has to act."""

    WAITING_IN_DLQ = "waiting in a dead-letter queue"  # the record is parked with its reason: fix and replay
    NOT_YET_SYNCED = "not yet synced"  # changed in Stripe after the last sync: the next incremental run fixes it
    MERGED_IN_CHARTMOGUL = "customer merged in ChartMogul"  # by hand: its objects now sit under another customer
    MANUAL_EDIT = "manual edit in ChartMogul"  # deleted, added or edited there by hand since we imported it
    NOT_UPLOADED = "not uploaded"  # Stripe has it, ChartMogul never got it and no queue holds it: a lost record
    # ChartMogul holds what the mapping says, but its figures differ from ChartMogul's rules applied to Stripe, by
    # exactly one of these parts of Stripe's data (audit/causes.py), or by none of them: "mapping".
    TAX = "tax"
    ONE_TIME_CHARGES = "one-time charges"
    REFUNDS = "refunds"
    PRORATION_TIMING = "proration timing"
    FREE_CUSTOMERS = "free customers"
    CHURN_DATE = "churn date"
    MAPPING = "mapping"
    UNEXPLAINED = "unexplained"
    # By design: not drift.
    FX = "exchange rates"  # the audit was given no rate for a currency: figures in it are not compared


DRIFT = frozenset(cause for cause in Cause if cause is not Cause.FX)

# What to check, per cause: one line, shown with the report (render.py) and in its JSON (`advice`).
ADVICE: dict[Cause, str] = {
    Cause.WAITING_IN_DLQ: "read the record's reason (cmsync dlq list), fix the cause, then cmsync dlq replay it",
    Cause.NOT_YET_SYNCED: "nothing, if the schedule is on: the next incremental run takes the change",
    Cause.MERGED_IN_CHARTMOGUL: "the merge was made in ChartMogul: list the merged customer under exclude.customers "
    "or undo the merge; the sync keeps following it",
    Cause.MANUAL_EDIT: "an object this sync imported was changed in ChartMogul: resync the customer "
    "(one-customer export) to restore it, or stop editing the data source by hand",
    Cause.NOT_UPLOADED: "a lost record: resync the customer (one-customer export) and look for its run's errors",
    Cause.TAX: "ChartMogul's MRR includes the tax: check that the mapping sends each line's tax in "
    "tax_amount_in_cents (docs/mapping-decisions.md)",
    Cause.ONE_TIME_CHARGES: "one-off lines are counted differently: check the mapping's handling of invoice "
    "items that bill no subscription (one_time lines)",
    Cause.REFUNDS: "refunds are counted differently: check that each Stripe refund becomes a refund transaction "
    "on its invoice, in the month Stripe made it",
    Cause.PRORATION_TIMING: "prorations are counted differently: check that proration lines are sent with "
    "prorated=true and their own service period",
    Cause.FREE_CUSTOMERS: "a customer free by a 100 % coupon shows MRR: check that discounts are sent "
    "(discount_amount_in_cents) and the account's free-customer handling",
    Cause.CHURN_DATE: "the subscription stops in another month: check the cancellation date the mapping sends "
    "(Stripe's ended_at, or the item's removal)",
    Cause.MAPPING: "ChartMogul holds what the mapping says and no single part of Stripe's data explains the "
    "figures: a transform bug, or a mapping config that departs from the documented defaults",
    Cause.UNEXPLAINED: "compare the customer in ChartMogul with `cmsync snapshot` / `cmsync transform` of it",
    Cause.FX: "give the currency's exchange rate (--rates, AuditExchangeRates) to compare its customers",
}

Check = Literal["integrity", "numbers", "ground truth"]


class Difference(BaseModel):
    check: Check
    customer: str
    problem: str  # what differs, e.g. "invoice missing in ChartMogul", "MRR"
    cause: Cause
    month: str | None = None  # YYYY-MM, for numbers
    object_id: str | None = None  # the invoice, line or transaction, for integrity
    expected: str | int | None = None  # from Stripe (or the ground truth)
    actual: str | int | None = None  # in ChartMogul
    detail: str = ""

    @property
    def is_drift(self) -> bool:
        return self.cause in DRIFT


class MonthFigures(BaseModel):
    month: str
    chartmogul_mrr: int  # cents of the account currency, /metrics/mrr at the month's last day (or today)
    stripe_mrr: int  # Σ of the audited customers' MRR derived from Stripe
    chartmogul_customers: int  # /metrics/customer-count
    stripe_customers: int  # audited customers with MRR > 0
    # Σ of ChartMogul's per-customer MRR over the customers whose MRR was compared: without an exchange rate for
    # a currency, its customers are in chartmogul_mrr but in neither this nor stripe_mrr.
    chartmogul_mrr_compared: int = 0
    truth_mrr: int | None = None  # the generator's ground truth (the demo)
    truth_customers: int | None = None

    @property
    def mrr_difference(self) -> int:
        """ChartMogul minus Stripe over the customers compared (cents)."""
        return self.chartmogul_mrr_compared - self.stripe_mrr


class AuditReport(BaseModel):
    generated_at: datetime
    data_source: str
    months: list[MonthFigures] = Field(default_factory=list)
    differences: list[Difference] = Field(default_factory=list)
    customers_audited: int = 0  # Stripe customers the audit looked at
    customers_in_chartmogul: int = 0  # customers of the data source in ChartMogul
    missing_customers: list[str] = Field(default_factory=list)  # in Stripe's mapping, not in ChartMogul
    tolerance_cents_per_subscription: int = TOLERANCE_CENTS_PER_SUBSCRIPTION
    # Whether account-wide metrics were compared: only when every customer of the account was audited.
    whole_account: bool = True
    # The terminal queues read for records waiting there (audit/service.py waiting_records), and those that could
    # not be read with why: a customer whose record waits in an unread queue shows as "not uploaded".
    queues_read: list[str] = Field(default_factory=list)
    queues_not_read: dict[str, str] = Field(default_factory=dict)

    @property
    def drift(self) -> list[Difference]:
        return [d for d in self.differences if d.is_drift]

    @property
    def matches(self) -> bool:
        """True when no difference is drift (only by-design ones, e.g. a currency without a rate, remain)."""
        return not self.drift

    @property
    def customers_differing(self) -> list[str]:
        return sorted({d.customer for d in self.drift})

    @property
    def mrr_difference(self) -> int:
        """ChartMogul's MRR minus Stripe's at the latest month audited (cents; 0 without months)."""
        return self.months[-1].mrr_difference if self.months else 0

    def causes(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for difference in self.differences:
            counts[difference.cause.value] = counts.get(difference.cause.value, 0) + 1
        return dict(sorted(counts.items()))

    def advice(self) -> dict[str, str]:
        """What to check for each cause found."""
        return {cause.value: ADVICE[cause] for cause in sorted({d.cause for d in self.differences})}

    def summary(self) -> dict[str, object]:
        return {
            "matches": self.matches,
            "customers_audited": self.customers_audited,
            "customers_in_chartmogul": self.customers_in_chartmogul,
            "customers_differing": len(self.customers_differing),
            "mrr_difference_cents": self.mrr_difference,
            "differences": len(self.differences),
            "causes": self.causes(),
            "advice": self.advice(),
            # A queue the audit could not read: its customers' waiting records look like lost ones.
            "queues_not_read": sorted(self.queues_not_read),
        }

    def to_json(self) -> str:
        """The full report with its verdict (what `--json` prints and the Audit function stores)."""
        return json.dumps({"summary": self.summary(), **self.model_dump(mode="json")}, indent=2)
