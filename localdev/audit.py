"""The audit: what ChartMogul shows against what the Stripe account should give, month by month and object by object.

Ground truth comes from the scenario generator's intent ledger (localdev/scenarios/truth.py), never from the
pipeline's own transform, so a mapping bug shows here as a difference. ChartMogul's side is read the way a user
reads it: the account metrics (`/metrics/mrr`, `/metrics/customer-count`), customers and invoices through the
official `chartmogul` client. Per-customer MRR by month has no public endpoint in the emulator, so it comes from
the emulator's own MRR engine over what was imported (the same engine that serves the metrics).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import chartmogul

from localdev.chartmogul_emulator import metrics as mrr_engine

if TYPE_CHECKING:
    from localdev.pipeline import LocalPipeline

# Both sides round each line item's MRR as ChartMogul documents (docs/mapping-decisions.md, rule 6), so a
# difference of one cent is a difference: there is no tolerance.
CENTS_TOLERANCE_PER_SUBSCRIPTION = 0
_PAGE = 200


@dataclass
class MonthFigures:
    month: str
    chartmogul_mrr: int
    truth_mrr: int
    chartmogul_customers: int
    truth_customers: int

    @property
    def mrr_difference(self) -> int:
        return self.chartmogul_mrr - self.truth_mrr


@dataclass
class CustomerDifference:
    customer: str
    month: str
    chartmogul_mrr: int
    truth_mrr: int
    scenarios: list[str]


@dataclass
class ObjectDifference:
    customer: str
    object_id: str
    problem: str


@dataclass
class Audit:
    months: list[MonthFigures] = field(default_factory=list)
    customer_differences: list[CustomerDifference] = field(default_factory=list)
    object_differences: list[ObjectDifference] = field(default_factory=list)
    customers_expected: int = 0
    customers_in_chartmogul: int = 0
    missing_customers: list[str] = field(default_factory=list)

    @property
    def month_differences(self) -> list[MonthFigures]:
        """Months whose account MRR or customer count differs from the truth (by any amount)."""
        return [m for m in self.months if m.mrr_difference != 0 or m.chartmogul_customers != m.truth_customers]

    @property
    def matches(self) -> bool:
        """Every month's MRR and customer count equal, and every customer and object as expected."""
        return not (
            self.month_differences or self.customer_differences or self.object_differences or self.missing_customers
        )


def run_audit(pipeline: LocalPipeline, truth: dict[str, Any]) -> Audit:
    # The audit measures the pipeline, not its own retries: it reads ChartMogul with injected faults off.
    pipeline.stop_faults()
    config = pipeline.chartmogul.client_config()
    data_source = pipeline.chartmogul_data_source_uuid()
    audit = Audit(customers_expected=len(truth["customers"]))
    if data_source is None:
        audit.missing_customers = sorted(truth["customers"])
        return audit
    customers = _all_pages(lambda **page: chartmogul.Customer.all(config, data_source_uuid=data_source, **page))
    uuid_by_external = {customer.external_id: customer.uuid for customer in customers}
    audit.customers_in_chartmogul = len(uuid_by_external)
    audit.missing_customers = sorted(set(truth["customers"]) - set(uuid_by_external))
    labels: list[str] = truth["months"]
    now = dt.datetime.fromisoformat(truth["account"]["now"].replace("Z", "+00:00"))
    days = {label: _evaluation_day(label, now) for label in labels}
    audit.months = _month_figures(config, truth, labels, days)
    audit.customer_differences = _customer_differences(pipeline, truth, uuid_by_external, labels, days)
    invoices = _all_pages(lambda **page: chartmogul.Invoice.all(config, data_source_uuid=data_source, **page))
    audit.object_differences = _object_differences(truth, uuid_by_external, invoices)
    return audit


def _evaluation_day(label: str, now: dt.datetime) -> dt.date:
    """The last day of the month, or today for the month the clock is in (truth.py evaluates it at the clock)."""
    year, month = map(int, label.split("-"))
    following = dt.date(year + month // 12, month % 12 + 1, 1)
    return min(following - dt.timedelta(days=1), now.date())


def _month_figures(
    config: Any, truth: dict[str, Any], labels: list[str], days: dict[str, dt.date]
) -> list[MonthFigures]:
    start, end = days[labels[0]].replace(day=1), days[labels[-1]]
    mrr = chartmogul.Metrics.mrr(config, start_date=start, end_date=end, interval="month").get()
    counts = chartmogul.Metrics.customer_count(config, start_date=start, end_date=end, interval="month").get()
    mrr_by_month = {entry.date.strftime("%Y-%m"): entry.mrr for entry in mrr.entries}
    count_by_month = {entry.date.strftime("%Y-%m"): entry.customers for entry in counts.entries}
    return [
        MonthFigures(
            month=label,
            chartmogul_mrr=int(mrr_by_month.get(label, 0)),
            truth_mrr=int(truth["totals"]["mrr"][label]),
            chartmogul_customers=int(count_by_month.get(label, 0)),
            truth_customers=int(truth["totals"]["customers"][label]),
        )
        for label in labels
    ]


def _customer_differences(
    pipeline: LocalPipeline,
    truth: dict[str, Any],
    uuid_by_external: dict[str, str],
    labels: list[str],
    days: dict[str, dt.date],
) -> list[CustomerDifference]:
    emulator = pipeline.chartmogul.emulator
    histories = emulator.subscription_histories()
    differences = []
    for customer_id, expected in sorted(truth["customers"].items()):
        subscriptions = list(histories.get(uuid_by_external.get(customer_id, ""), {}).values())
        tolerance = CENTS_TOLERANCE_PER_SUBSCRIPTION * len(subscriptions)
        for label in labels:
            actual = mrr_engine.customer_mrr(subscriptions, days[label], emulator.options.rates) if subscriptions else 0
            wanted = int(expected["mrr"][label])
            if abs(actual - wanted) > tolerance:
                differences.append(CustomerDifference(customer_id, label, actual, wanted, expected["scenarios"]))
    return differences


def _object_differences(
    truth: dict[str, Any], uuid_by_external: dict[str, str], invoices: list[Any]
) -> list[ObjectDifference]:
    """Invoices, their lines and transactions: every expected one present with the same figures, nothing extra."""
    actual_by_customer: dict[str, dict[str, Any]] = defaultdict(dict)
    external_by_uuid = {uuid: external for external, uuid in uuid_by_external.items()}
    for invoice in invoices:
        owner = invoice.customer_external_id or external_by_uuid.get(invoice.customer_uuid or "", "?")
        actual_by_customer[owner][invoice.external_id] = invoice
    differences: list[ObjectDifference] = []
    for customer_id, expected in sorted(truth["customers"].items()):
        if customer_id not in uuid_by_external:
            continue  # reported as a missing customer
        actual = actual_by_customer.get(customer_id, {})
        wanted = {invoice["external_id"]: invoice for invoice in expected["invoices"]}
        for invoice_id in sorted(set(wanted) - set(actual)):
            differences.append(ObjectDifference(customer_id, invoice_id, "invoice missing in ChartMogul"))
        for invoice_id in sorted(set(actual) - set(wanted)):
            differences.append(ObjectDifference(customer_id, invoice_id, "invoice in ChartMogul but not expected"))
        for invoice_id in sorted(set(wanted) & set(actual)):
            differences.extend(_invoice_differences(customer_id, wanted[invoice_id], actual[invoice_id]))
    return differences


def _invoice_differences(customer: str, wanted: dict[str, Any], actual: Any) -> list[ObjectDifference]:
    found: list[ObjectDifference] = []
    if wanted["currency"] != actual.currency:
        found.append(
            ObjectDifference(customer, wanted["external_id"], f"currency {actual.currency} ≠ {wanted['currency']}")
        )
    lines = {line.external_id: line for line in actual.line_items}
    for line in wanted["line_items"]:
        got = lines.pop(line.get("external_id"), None)
        if got is None:
            found.append(ObjectDifference(customer, line.get("external_id") or "?", "line item missing"))
            continue
        for name in ("type", "amount_in_cents", "tax_amount_in_cents", "quantity", "discount_amount_in_cents"):
            if line.get(name, _LINE_DEFAULTS.get(name)) != getattr(got, name):
                found.append(
                    ObjectDifference(customer, line["external_id"], f"{name} {getattr(got, name)} ≠ {line.get(name)}")
                )
        if line["type"] == "subscription" and bool(line.get("prorated")) != bool(got.prorated):
            found.append(ObjectDifference(customer, line["external_id"], f"prorated {got.prorated} ≠ expected"))
    for extra in lines:
        found.append(ObjectDifference(customer, extra or "?", "line item in ChartMogul but not expected"))
    transactions = {txn.external_id: txn for txn in actual.transactions}
    for txn in wanted.get("transactions", []):
        got = transactions.pop(txn["external_id"], None)
        if got is None:
            found.append(ObjectDifference(customer, txn["external_id"], f"{txn['type']} transaction missing"))
        elif (got.type, got.result, got.amount_in_cents) != (txn["type"], txn["result"], txn.get("amount_in_cents")):
            found.append(
                ObjectDifference(
                    customer,
                    txn["external_id"],
                    f"transaction {got.type}/{got.result}/{got.amount_in_cents} ≠ "
                    f"{txn['type']}/{txn['result']}/{txn.get('amount_in_cents')}",
                )
            )
    for extra in transactions:
        found.append(ObjectDifference(customer, extra or "?", "transaction in ChartMogul but not expected"))
    return found


_LINE_DEFAULTS: dict[str, Any] = {"tax_amount_in_cents": 0, "quantity": 1, "discount_amount_in_cents": 0}


def _all_pages(fetch: Any) -> list[Any]:
    items: list[Any] = []
    cursor: str | None = None
    for _ in range(10_000):  # bounded: 200 per page
        page = fetch(per_page=_PAGE, **({"cursor": cursor} if cursor else {})).get()
        items.extend(getattr(page, "entries", None) or getattr(page, "invoices", None) or [])
        if not page.has_more:
            return items
        cursor = page.cursor
    raise RuntimeError("more than 2,000,000 objects: stopped paging")
