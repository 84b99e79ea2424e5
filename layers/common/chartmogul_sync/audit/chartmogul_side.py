"""What ChartMogul holds for our data source, read as a user reads it: through the official client, read only.

Customers, invoices (with their lines and transactions) and subscriptions (with their cancellation dates) of the
data source, each customer's activities (its MRR movements: `GET /customers/{uuid}/activities`,
https://dev.chartmogul.com/reference/list-customer-activities) and the account metrics (`/metrics/mrr`,
`/metrics/customer-count`, https://dev.chartmogul.com/reference/metrics-api). Every request goes through the
uploader's `ChartMogulApi` (the shared rate limit, retries, timeouts); none writes.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import chartmogul

from ..sinks.chartmogul.client import ChartMogulApi, TimeBudget

_PER_PAGE = 200
_MAX_PAGES = 10_000  # 2 million objects of one kind: a bound, not an expectation


@dataclass
class ChartMogulCustomer:
    uuid: str
    external_id: str
    fields: dict[str, Any]  # name, email, company, country, city… as ChartMogul shows them
    invoices: dict[str, Any] = field(default_factory=dict)  # external id → client Invoice
    cancellations: dict[str, list[dt.datetime]] = field(default_factory=dict)  # subscription external id → dates
    # subscription external id → [(day, MRR after)] from the customer's activities, oldest first
    activities: dict[str, list[tuple[dt.date, int]]] = field(default_factory=dict)

    def mrr_at(self, day: dt.date) -> tuple[int, int]:
        """(MRR at the end of `day`, subscriptions contributing) from the activities."""
        total = subscriptions = 0
        for movements in self.activities.values():
            value = 0
            for moment, mrr in movements:
                if moment > day:
                    break
                value = mrr
            total += value
            subscriptions += value != 0
        return total, subscriptions


@dataclass
class ChartMogulView:
    data_source_uuid: str | None
    customers: dict[str, ChartMogulCustomer] = field(default_factory=dict)  # by external id
    # invoice external id → customer external id, over the whole data source (finds merged customers' invoices)
    invoice_owner: dict[str, str] = field(default_factory=dict)
    mrr_by_month: dict[str, int] = field(default_factory=dict)
    customers_by_month: dict[str, int] = field(default_factory=dict)


def find_data_source(api: ChartMogulApi, name: str, budget: TimeBudget) -> str | None:
    found = api.call(f"find data source {name!r}", lambda cfg: chartmogul.DataSource.all(cfg, name=name).get(), budget)
    return next((str(s.uuid) for s in found.data_sources if s.name == name), None)


def pages(api: ChartMogulApi, what: str, fetch: Callable[..., Any], budget: TimeBudget) -> Iterator[Any]:
    cursor: str | None = None
    for _ in range(_MAX_PAGES):
        paging: dict[str, str] = {"cursor": cursor} if cursor else {}

        def one_page(cfg: chartmogul.Config, paging: dict[str, str] = paging) -> Any:
            return fetch(cfg, per_page=_PER_PAGE, **paging).get()

        page = api.call(what, one_page, budget)
        yield page
        if not page.has_more or not page.cursor:
            return
        cursor = page.cursor
    raise RuntimeError(f"{what}: more than {_MAX_PAGES} pages; stopped paging")


_CUSTOMER_FIELDS = ("name", "email", "company", "country", "state", "city", "zip")


def read_chartmogul(
    api: ChartMogulApi,
    data_source_uuid: str | None,
    *,
    customer_ids: set[str] | None,
    months: list[tuple[str, dt.date]],
    budget: TimeBudget,
    on_customer: Callable[[], None] | None = None,
    activities_only: bool = False,
) -> ChartMogulView:
    """ChartMogul's state for the audited customers (all of the data source when `customer_ids` is None).

    `activities_only`: the customers and their activities (MRR movements), not their invoices and subscriptions,
    for a comparison of MRR alone (data_sources.py): one listing and one request per customer fewer."""
    view = ChartMogulView(data_source_uuid)
    if data_source_uuid is None:
        return view
    uuid_to_external: dict[str, str] = {}
    for page in pages(
        api,
        "list customers",
        lambda cfg, **kw: chartmogul.Customer.all(cfg, data_source_uuid=data_source_uuid, **kw),
        budget,
    ):
        for entry in page.entries:
            external_id = str(entry.external_id)
            uuid_to_external[str(entry.uuid)] = external_id
            if customer_ids is None or external_id in customer_ids:
                fields = {name: getattr(entry, name, None) or None for name in _CUSTOMER_FIELDS}
                view.customers[external_id] = ChartMogulCustomer(str(entry.uuid), external_id, fields)
    if not activities_only:
        _read_invoices(api, data_source_uuid, view, uuid_to_external, budget)
    for customer in view.customers.values():
        _read_customer(api, customer, budget, subscriptions=not activities_only)
        if on_customer is not None:
            on_customer()
    if months:
        start, end = months[0][1].replace(day=1), months[-1][1]
        mrr = api.call(
            "metrics mrr",
            lambda cfg: chartmogul.Metrics.mrr(cfg, start_date=start, end_date=end, interval="month").get(),
            budget,
        )
        counts = api.call(
            "metrics customer count",
            lambda cfg: chartmogul.Metrics.customer_count(cfg, start_date=start, end_date=end, interval="month").get(),
            budget,
        )
        view.mrr_by_month = {entry.date.strftime("%Y-%m"): int(entry.mrr) for entry in mrr.entries}
        view.customers_by_month = {entry.date.strftime("%Y-%m"): int(entry.customers) for entry in counts.entries}
    return view


def _read_invoices(
    api: ChartMogulApi,
    data_source_uuid: str,
    view: ChartMogulView,
    uuid_to_external: dict[str, str],
    budget: TimeBudget,
) -> None:
    for page in pages(
        api,
        "list invoices",
        lambda cfg, **kw: chartmogul.Invoice.all(cfg, data_source_uuid=data_source_uuid, **kw),
        budget,
    ):
        for invoice in page.invoices:
            # By the customer that holds it now (after a merge the invoice may still name its old external id).
            owner = uuid_to_external.get(invoice.customer_uuid or "") or invoice.customer_external_id or ""
            view.invoice_owner[str(invoice.external_id)] = owner
            if owner in view.customers:
                view.customers[owner].invoices[str(invoice.external_id)] = invoice


def _read_customer(
    api: ChartMogulApi, customer: ChartMogulCustomer, budget: TimeBudget, *, subscriptions: bool = True
) -> None:
    who = f"customer {customer.external_id}"
    for page in pages(
        api,
        f"list activities of {who}",
        lambda cfg, **kw: chartmogul.CustomerActivity.all(cfg, uuid=customer.uuid, **kw),
        budget,
    ):
        for activity in page.entries:
            subscription = str(getattr(activity, "subscription_external_id", "") or "")
            moment = activity.date.date() if isinstance(activity.date, dt.datetime) else activity.date
            customer.activities.setdefault(subscription, []).append((moment, int(activity.activity_mrr)))
    for movements in customer.activities.values():
        movements.sort(key=lambda movement: movement[0])
    if not subscriptions:
        return
    with warnings.catch_warnings():
        # `list_imported` is the import-namespace listing (cancellation dates); the client marks it deprecated
        # in favour of the metrics view, which does not show them.
        warnings.simplefilter("ignore", DeprecationWarning)
        for page in pages(
            api,
            f"list subscriptions of {who}",
            lambda cfg, **kw: chartmogul.CustomerSubscription.list_imported(cfg, uuid=customer.uuid, **kw),
            budget,
        ):
            for subscription in page.subscriptions:
                dates = [d for d in (subscription.cancellation_dates or []) if d is not None]
                customer.cancellations[str(subscription.external_id)] = sorted(dates)
