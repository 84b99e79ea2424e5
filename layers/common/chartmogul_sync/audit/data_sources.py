"""`cmsync audit --compare-data-source NAME`: our data source against another one in the same ChartMogul account.

For a migration: ChartMogul's native Stripe source beside this one (README "Running beside ChartMogul's native
Stripe integration"), or an older import being replaced. Per customer, matched by external id (ours is the
Stripe customer id; the native Stripe integration's customers carry the Stripe customer id as their external id
too, so one Stripe customer is one external id in both): the customers only in one of the two, and per customer
and month the MRR of each source (from ChartMogul's per-customer activities,
https://dev.chartmogul.com/reference/list-customer-activities) where they differ. A customer the native source
holds under another external id shows as one customer only in each source: check one by hand before trusting
the rest.

Reads only, through the uploader's `ChartMogulApi` (chartmogul_side.py); the comparison itself is pure.
Tolerance: none (ChartMogul computes both sources' MRR by the same rules).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field

from ..sinks.chartmogul.client import ChartMogulApi, TimeBudget
from .chartmogul_side import ChartMogulView, find_data_source, read_chartmogul
from .service import month_days  # the audit's months: each month's last day, or today

Problem = Literal["only in ours", "only in theirs", "MRR"]


class SourceDifference(BaseModel):
    customer: str  # the external id (the Stripe customer id)
    problem: Problem
    month: str | None = None  # YYYY-MM, for MRR
    ours: int | None = None  # MRR in cents at the month's end (or today), for MRR
    theirs: int | None = None


class SourceMonth(BaseModel):
    month: str
    ours_mrr: int  # Σ of the customers' MRR in our data source (cents)
    theirs_mrr: int
    ours_customers: int  # customers with MRR > 0
    theirs_customers: int


class SourceComparison(BaseModel):
    generated_at: dt.datetime
    ours: str  # data source names
    theirs: str
    customers_ours: int = 0
    customers_theirs: int = 0
    customers_in_both: int = 0
    months: list[SourceMonth] = Field(default_factory=list)
    differences: list[SourceDifference] = Field(default_factory=list)

    @property
    def matches(self) -> bool:
        return not self.differences

    @property
    def customers_differing(self) -> list[str]:
        return sorted({d.customer for d in self.differences})

    def summary(self) -> dict[str, object]:
        counts: dict[str, int] = {}
        for difference in self.differences:
            counts[difference.problem] = counts.get(difference.problem, 0) + 1
        return {
            "matches": self.matches,
            "customers_ours": self.customers_ours,
            "customers_theirs": self.customers_theirs,
            "customers_in_both": self.customers_in_both,
            "customers_differing": len(self.customers_differing),
            "differences": dict(sorted(counts.items())),
        }

    def to_json(self) -> str:
        return json.dumps({"summary": self.summary(), **self.model_dump(mode="json")}, indent=2)


def compare_views(
    ours: ChartMogulView,
    theirs: ChartMogulView,
    months: list[tuple[str, dt.date]],
    *,
    names: tuple[str, str],
    now: dt.datetime,
    customers: set[str] | None = None,
) -> SourceComparison:
    """Customers only in one view, and each common customer's MRR per month where the two differ."""
    comparison = SourceComparison(
        generated_at=now,
        ours=names[0],
        theirs=names[1],
        customers_ours=len(ours.customers),
        customers_theirs=len(theirs.customers),
    )
    both = set(ours.customers) & set(theirs.customers)
    comparison.customers_in_both = len(both)
    wanted = customers if customers is not None else set(ours.customers) | set(theirs.customers)
    for external_id in sorted(wanted):
        mine, other = ours.customers.get(external_id), theirs.customers.get(external_id)
        if mine is None and other is None:
            continue
        if other is None:
            comparison.differences.append(SourceDifference(customer=external_id, problem="only in ours"))
            continue
        if mine is None:
            comparison.differences.append(SourceDifference(customer=external_id, problem="only in theirs"))
            continue
        for label, day in months:
            a, b = mine.mrr_at(day)[0], other.mrr_at(day)[0]
            if a != b:
                comparison.differences.append(
                    SourceDifference(customer=external_id, problem="MRR", month=label, ours=a, theirs=b)
                )
    for label, day in months:
        ours_mrr = [c.mrr_at(day)[0] for key, c in ours.customers.items() if key in wanted]
        theirs_mrr = [c.mrr_at(day)[0] for key, c in theirs.customers.items() if key in wanted]
        comparison.months.append(
            SourceMonth(
                month=label,
                ours_mrr=sum(ours_mrr),
                theirs_mrr=sum(theirs_mrr),
                ours_customers=sum(1 for mrr in ours_mrr if mrr > 0),
                theirs_customers=sum(1 for mrr in theirs_mrr if mrr > 0),
            )
        )
    return comparison


class DataSourceNotFound(ValueError):
    """A data source name the account does not have: the command stops with this one line."""


def compare_data_sources(
    api: ChartMogulApi,
    ours: str,
    theirs: str,
    *,
    customers: list[str] | None = None,
    from_month: str | None = None,
    to_month: str | None = None,
    now: dt.datetime | None = None,
    on_customer: Callable[[], None] | None = None,
) -> SourceComparison:
    """Read both data sources (customers and their activities, nothing else) and compare them; nothing is
    written."""
    now = now or dt.datetime.now(dt.UTC)
    budget = TimeBudget()
    views = []
    for name in (ours, theirs):
        uuid = find_data_source(api, name, budget)
        if uuid is None:
            raise DataSourceNotFound(f"ChartMogul has no data source named {name!r}")
        wanted = None if customers is None else set(customers)
        # The comparison reads MRR from the activities only: no invoices, no subscriptions.
        views.append(
            read_chartmogul(
                api, uuid, customer_ids=wanted, months=[], budget=budget, on_customer=on_customer, activities_only=True
            )
        )
    first = from_month or _first_activity_month(views, now)
    months = month_days(first, to_month or now.strftime("%Y-%m"), now)
    return compare_views(
        views[0],
        views[1],
        months,
        names=(ours, theirs),
        now=now,
        customers=None if customers is None else set(customers),
    )


def _first_activity_month(views: list[ChartMogulView], now: dt.datetime) -> str:
    days = [
        moment
        for view in views
        for customer in view.customers.values()
        for movements in customer.activities.values()
        for moment, _mrr in movements
    ]
    return (min(days) if days else now.date()).strftime("%Y-%m")
