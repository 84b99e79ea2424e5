"""Read-only looks at the user's accounts: `check` (keys and permissions), `snapshot` and `plan`.

Nothing here writes: every Stripe call is a GET through the exporter's `StripeApi`, every ChartMogul call a
listing through the uploader's `ChartMogulApi`. `plan` runs the uploader's own pure diff (`apply.plan_writes`)
against what ChartMogul holds now instead of what the id map remembers.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import chartmogul
import stripe

from ..audit.chartmogul_side import find_data_source, pages
from ..models import Cancellation, CustomerBundle
from ..models.snapshot import CustomerSnapshot
from ..sinks.chartmogul.apply import (
    KnownCustomer,
    KnownPlan,
    KnownSubscription,
    WritePlan,
    cancellation_dates,
    customer_fields,
    plan_writes,
)
from ..sinks.chartmogul.client import ChartMogulApi, ChartMogulError
from ..sinks.chartmogul.client import TimeBudget as ChartMogulBudget
from ..sinks.chartmogul.idmap import with_invoices
from ..sources.stripe.client import RetryPolicy, StripeApi, StripeList, TimeBudget, make_stripe_client
from ..sources.stripe.snapshots import Catalog, fetch_customer_snapshot
from ..transform.config import MappingConfig
from ..transform.errors import CustomerExcluded, MappingError
from ..transform.mapping import map_snapshot
from .accounts import Accounts

Status = Literal["ok", "fail", "info"]


@dataclass
class CheckResult:
    what: str
    status: Status
    detail: str


# The lists the exporter reads, each with one cheap call (subscription items are read with their subscription's
# permission and need a subscription id, so the subscriptions call stands for both).
CHECKED_LISTS = (
    StripeList.CUSTOMERS,
    StripeList.PRODUCTS,
    StripeList.PRICES,
    StripeList.SUBSCRIPTIONS,
    StripeList.INVOICES,
    StripeList.INVOICE_ITEMS,
    StripeList.CHARGES,
    StripeList.REFUNDS,
    StripeList.CREDIT_NOTES,
    StripeList.EVENTS,
)
_PERMISSION = re.compile(r"Having the '([^']+)' permission")


def check_stripe(accounts: Accounts) -> list[CheckResult]:
    key = accounts.stripe_key
    kind = {"sk": "secret", "rk": "restricted"}.get(key.split("_")[0], "unknown kind of")
    mode = "live" if "_live_" in key else "test" if "_test_" in key else "unknown"
    results = [CheckResult("Stripe key", "info", f"{kind} key, {mode} mode")]
    # A check answers fast: two attempts per call, not the exporter's patient retries.
    api = StripeApi(
        make_stripe_client(accounts.settings, accounts.stripe_key),
        TimeBudget.of_seconds(120),
        RetryPolicy(max_attempts=2, max_wait_s=1.0, reserve_s=0.0),
    )
    for resource in CHECKED_LISTS:
        what = f"Stripe read {resource.value}"
        try:
            api.list_page(resource, {"limit": 1})
        except stripe.APIConnectionError as error:
            where = accounts.settings.stripe_api_base or "api.stripe.com"
            results.append(CheckResult("Stripe API", "fail", f"unreachable at {where}: {type(error).__name__}"))
            return results
        except stripe.AuthenticationError as error:
            results.append(CheckResult("Stripe key", "fail", f"refused (HTTP {error.http_status}): {_message(error)}"))
            return results  # every other call would be refused the same way
        except stripe.PermissionError as error:
            found = _PERMISSION.search(_message(error))
            needed = f"; the key needs {found.group(1)}" if found else ""
            results.append(CheckResult(what, "fail", f"missing permission (HTTP 403){needed}"))
            continue
        except stripe.StripeError as error:
            results.append(CheckResult(what, "fail", f"HTTP {error.http_status}: {_message(error)}"))
            continue
        results.append(CheckResult(what, "ok", "readable"))
    return results


def check_chartmogul(accounts: Accounts) -> list[CheckResult]:
    api = accounts.chartmogul_api()
    budget = ChartMogulBudget.seconds(120)
    try:
        api.call("ping", lambda cfg: chartmogul.Ping.ping(cfg).get(), budget)
    except ChartMogulError as error:
        if error.status in (401, 403):
            return [CheckResult("ChartMogul key", "fail", f"refused (HTTP {error.status}): {error.body[:200]}")]
        return [CheckResult("ChartMogul key", "fail", str(error))]
    results = [CheckResult("ChartMogul key", "ok", f"accepted by {accounts.settings.chartmogul_api_url}")]
    name = accounts.settings.chartmogul_data_source_name
    try:
        uuid = find_data_source(api, name, budget)
    except ChartMogulError as error:
        return [*results, CheckResult("ChartMogul data source", "fail", str(error))]
    detail = f"{name!r} exists ({uuid})" if uuid else f"{name!r} does not exist yet: the first upload creates it"
    return [*results, CheckResult("ChartMogul data source", "ok", detail)]


def _message(error: stripe.StripeError) -> str:
    return str(error.user_message or getattr(error, "_message", None) or error).strip()


# ---------------------------------------------------------------------------------------------- snapshot


def fetch_snapshot(api: StripeApi, customer_id: str) -> CustomerSnapshot:
    """One customer's snapshot, by the exporter's own per-customer path (the input of `cmsync transform`)."""
    return fetch_customer_snapshot(api, Catalog(api), customer_id)


def sample_customers(api: StripeApi, count: int) -> list[str]:
    """The newest `count` customers of the account (the sample `plan` takes without ids)."""
    page = api.list_page(StripeList.CUSTOMERS, {"limit": max(1, min(count, 100))})
    return [str(customer["id"]) for customer in page.data][:count]


# ---------------------------------------------------------------------------------------------- plan


@dataclass
class CustomerPlan:
    customer: str
    writes: WritePlan | None = None
    note: str = ""  # excluded, cannot be mapped…
    changes: list[str] = field(default_factory=list)  # readable lines: "create invoice in_…"

    @property
    def summary(self) -> dict[str, int]:
        return self.writes.summary() if self.writes is not None else {}


_READABLE_CUSTOMER_FIELDS = ("name", "email", "company", "country", "state", "city", "zip")


def plan_customer(
    snapshot: CustomerSnapshot,
    config: MappingConfig,
    api: ChartMogulApi,
    data_source_uuid: str | None,
    now: dt.datetime,
) -> CustomerPlan:
    customer_id = snapshot.customer_id
    try:
        bundle = map_snapshot(snapshot, config, snapshot_time=now)
    except CustomerExcluded as excluded:
        return CustomerPlan(customer_id, note=f"not imported: {excluded.reason}")
    except MappingError as error:
        return CustomerPlan(customer_id, note=f"cannot be mapped ({error.object_id}: {error.field}): {error.reason}")
    budget = ChartMogulBudget.seconds(300)
    known = KnownCustomer()
    plans: dict[str, KnownPlan] = {}
    if data_source_uuid is not None:
        known = _known_customer(api, data_source_uuid, bundle, budget)
        plans = _known_plans(api, data_source_uuid, bundle, budget)
    writes = plan_writes(bundle, known, plans)
    return CustomerPlan(customer_id, writes, changes=describe_writes(writes))


def _known_customer(
    api: ChartMogulApi, data_source_uuid: str, bundle: CustomerBundle, budget: ChartMogulBudget
) -> KnownCustomer:
    external_id = bundle.customer.external_id
    found = api.call(
        f"look up customer {external_id}",
        lambda cfg: chartmogul.Customer.all(cfg, data_source_uuid=data_source_uuid, external_id=external_id).get(),
        budget,
    )
    entry = next((e for e in found.entries if getattr(e, "external_id", None) == external_id), None)
    if entry is None:
        return KnownCustomer()
    uuid = str(entry.uuid)
    # Fields ChartMogul shows are compared; the others (attributes, lead dates) are taken as they should be.
    fields = customer_fields(bundle.customer)
    for name in _READABLE_CUSTOMER_FIELDS:
        fields[name] = getattr(entry, name, None) or (None if fields.get(name) is None else "")
    invoices: list[Any] = []
    for page in pages(
        api,
        f"list invoices of customer {external_id}",
        lambda cfg, **paging: chartmogul.Invoice.all(cfg, uuid=uuid, **paging),
        budget,
    ):
        invoices.extend(page.invoices)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the import-namespace listing (cancellation dates)
        listed = api.call(
            f"list subscriptions of customer {external_id}",
            lambda cfg: chartmogul.CustomerSubscription.list_imported(cfg, uuid=uuid, per_page=200).get(),
            budget,
        )
    subscriptions = {
        str(s.external_id): KnownSubscription(
            uuid=str(s.uuid),
            cancellation_dates=cancellation_dates(
                Cancellation(
                    subscription_external_id=str(s.external_id),
                    cancellation_dates=[d for d in (s.cancellation_dates or []) if d is not None],
                )
            )
            or None,
        )
        for s in listed.subscriptions
    }
    return with_invoices(KnownCustomer(exists=True, uuid=uuid, fields=fields, subscriptions=subscriptions), invoices)


def _known_plans(
    api: ChartMogulApi, data_source_uuid: str, bundle: CustomerBundle, budget: ChartMogulBudget
) -> dict[str, KnownPlan]:
    known: dict[str, KnownPlan] = {}
    for plan in bundle.plans:

        def look_up(cfg: chartmogul.Config, external_id: str = plan.external_id) -> Any:
            return chartmogul.Plan.all(cfg, data_source_uuid=data_source_uuid, external_id=external_id).get()

        found = api.call(f"look up plan {plan.external_id}", look_up, budget)
        for entry in found.plans:
            if getattr(entry, "external_id", None) == plan.external_id:
                fields = {
                    "name": entry.name,
                    "interval_count": entry.interval_count,
                    "interval_unit": entry.interval_unit,
                }
                known[plan.external_id] = KnownPlan(uuid=str(entry.uuid), fields=fields)
    return known


def describe_writes(writes: WritePlan) -> list[str]:
    """The plan as a person reads it, one change a line, in the order the uploader would make them."""
    lines: list[str] = []
    if writes.customer_to_delete:
        lines.append("remove the customer (deleted in Stripe; deleted_customers: delete)")
    lines += [f"create plan {p.external_id} ({p.name})" for p in writes.plans_to_create]
    lines += [f"update plan {p.external_id} ({p.name})" for p in writes.plans_to_update]
    if writes.customer_to_create is not None:
        lines.append(f"create customer {writes.customer_to_create.external_id}")
    if writes.customer_changes:
        lines.append(f"update customer fields: {', '.join(sorted(writes.customer_changes))}")
    lines += [f"remove invoice {invoice_id}" for invoice_id in writes.invoices_to_delete]
    lines += [
        f"create invoice {i.external_id} ({len(i.line_items)} lines, {len(i.transactions)} transactions)"
        for i in writes.invoices_to_create
    ]
    lines += [f"add {t.type} transaction {t.external_id} to invoice {inv}" for inv, t in writes.transactions_to_add]
    for cancellation in writes.cancellations_to_set:
        dates = ", ".join(d.strftime("%Y-%m-%d") for d in cancellation.cancellation_dates) or "none (reactivated)"
        lines.append(f"set cancellation of subscription {cancellation.subscription_external_id}: {dates}")
    lines += [f"create subscription event {e.external_id} ({e.event_type})" for e in writes.events_to_create]
    return lines
