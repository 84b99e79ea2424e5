"""Which part of Stripe's data explains a numbers difference, when ChartMogul holds exactly what the mapping says.

Pure. A difference between ChartMogul's figures and the audit's own derivation from Stripe (stripe_figures.py)
whose objects all match is the mapping's doing; this module says which part of the data the mapping counts
differently, by recomputing the figure under one departure from ChartMogul's documented rules at a time and
naming the departure that gives ChartMogul's figure exactly:

- MRR of a customer-month: tax kept in MRR (*tax*); coupons not deducted while Stripe's MRR is zero (*free
  customers*); proration lines dropped or taken as full periods (*proration timing*); cancellations missing, or a
  month early or late (*churn date*);
- net cash flow of a customer-month and currency: the month's refunds, the one-off lines of the invoices paid in
  it (*one-time charges*) or their exclusive tax (*tax*), missing from ChartMogul's figure or counted twice.

None of them exactly: *mapping* stays the cause (a difference the known departures do not explain). Exchange
rates, queues, merges, manual edits and unsynced changes are decided before this (compare.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ..models.snapshot import CustomerSnapshot
from .mrr_rules import Rates, customer_mrr
from .report import Cause
from .stripe_figures import CashComponents, FigureRules, StripeCustomerFigures, customer_figures

# The departures tried for MRR, in this order (the first that explains the figure names the cause).
MRR_DEPARTURES: tuple[tuple[Cause, FigureRules, str], ...] = (
    (Cause.TAX, FigureRules(subtract_tax=False), "Stripe's MRR with the tax included"),
    (Cause.FREE_CUSTOMERS, FigureRules(subtract_discounts=False), "Stripe's MRR before coupons"),
    (Cause.PRORATION_TIMING, FigureRules(prorations="dropped"), "Stripe's MRR without its proration lines"),
    (Cause.PRORATION_TIMING, FigureRules(prorations="as full periods"), "Stripe's MRR with prorations as full"),
    (Cause.CHURN_DATE, FigureRules(cancellations="missing"), "Stripe's MRR had the subscription not ended"),
    (Cause.CHURN_DATE, FigureRules(cancellations="a month late"), "Stripe's MRR with its churn a month later"),
    (Cause.CHURN_DATE, FigureRules(cancellations="a month early"), "Stripe's MRR with its churn a month earlier"),
)


@dataclass
class CauseFinder:
    """One customer's departures, each derived once (lazily: most customers have no difference to explain)."""

    snapshot: CustomerSnapshot
    as_of: dt.datetime
    rates: Rates = None
    _variants: dict[FigureRules, StripeCustomerFigures] = field(default_factory=dict)

    def _figures(self, rules: FigureRules) -> StripeCustomerFigures:
        if rules not in self._variants:
            self._variants[rules] = customer_figures(self.snapshot, self.as_of, rules)
        return self._variants[rules]

    def mrr(self, day: dt.date, expected: int, actual: int) -> tuple[Cause, str] | None:
        """The departure whose MRR at the end of `day` is ChartMogul's `actual` exactly; None if none is."""
        for cause, rules, what in MRR_DEPARTURES:
            if cause is Cause.FREE_CUSTOMERS and expected != 0:
                continue  # coupons that leave a price to pay are not a free customer: "mapping" then
            variant = customer_mrr(list(self._figures(rules).subscriptions.values()), day, self.rates)
            if variant == actual != expected:
                return cause, f"{what} is {_money(variant)}, as ChartMogul shows"
        return None

    def cash_flow(self, month: str, currency: str, expected: int, actual: int) -> tuple[Cause, str] | None:
        """The part of the month's cash flow whose amount is the difference exactly; None if none is."""
        components = self._figures(FigureRules()).cash_components.get((month, currency), CashComponents())
        return cash_flow_cause(components, actual - expected)


def cash_flow_cause(components: CashComponents, difference: int) -> tuple[Cause, str] | None:
    """Missing from ChartMogul (a negative difference) or counted twice (positive): the part of that size."""
    if difference == 0:
        return None
    parts: tuple[tuple[Cause, int, str], ...] = (
        (Cause.REFUNDS, components.refunds, "the month's refunds"),
        (Cause.ONE_TIME_CHARGES, components.one_time, "the one-off lines of the invoices paid this month"),
        (Cause.TAX, components.exclusive_tax, "the exclusive tax of the invoices paid this month"),
    )
    for cause, amount, what in parts:
        if amount and abs(difference) == abs(amount):
            # A refund left out raises ChartMogul's net cash flow; a charge or tax left out lowers it.
            left_out = (difference > 0) == (cause is Cause.REFUNDS)
            verb = "missing from" if left_out else "counted twice in"
            return cause, f"{what} ({_money(amount)}) {verb} ChartMogul's figure"
    return None


def _money(cents: int) -> str:
    return f"{cents / 100:,.2f}"
