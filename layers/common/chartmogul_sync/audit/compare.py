"""The audit's comparisons, pure: Stripe's current data (and its mapping) against what ChartMogul holds.

1. Integrity, per customer: ChartMogul holds exactly the objects the mapping of Stripe's current data says:
   the customer and its fields, every invoice with its lines and transactions, every cancellation; nothing extra.
2. Numbers, per customer and month: MRR from ChartMogul's activities against MRR derived from Stripe by the
   audit's own reading of the Stripe JSON (stripe_figures.py), and net cash flow from ChartMogul's transactions
   against Stripe's payments and refunds; account-wide, /metrics/mrr and /metrics/customer-count.
3. With the generator's ground truth (the demo): its MRR, customer counts and objects too.

Each difference gets one cause (report.Cause), decided per customer in this order, the first that applies:
waiting in a dead-letter queue (the queue named) › not yet synced (Stripe events for it since the incremental
cursor) › merged in ChartMogul (its invoices sit under another customer) › for objects: imported by us and gone
or changed since (manual edit), or never uploaded › for numbers whose objects all match: the part of Stripe's
data the mapping counts otherwise (tax, one-time charges, refunds, proration timing, free customers, churn date:
causes.py), else the mapping (the transform, or a mapping config that departs from the documented defaults) ›
exchange rates (no rate given).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..models import Cancellation, CustomerBundle, Invoice
from ..models.snapshot import CustomerSnapshot
from ..sinks.chartmogul.apply import KnownCustomer
from ..transform.config import DeletedCustomerHandling, MappingConfig
from ..transform.errors import CustomerExcluded, MappingError
from ..transform.mapping import map_snapshot
from .causes import CauseFinder
from .chartmogul_side import ChartMogulCustomer, ChartMogulView
from .mrr_rules import Rates, customer_counted, customer_mrr, first_active_day
from .report import ADVICE, TOLERANCE_CENTS_PER_SUBSCRIPTION, AuditReport, Cause, Difference, MonthFigures
from .stripe_figures import StripeCustomerFigures, customer_figures


@dataclass
class AuditInputs:
    snapshots: dict[str, CustomerSnapshot]  # by Stripe customer id: what Stripe holds now
    chartmogul: ChartMogulView
    months: list[tuple[str, dt.date]]  # (YYYY-MM, the day its figures are read at)
    as_of: dt.datetime
    data_source: str
    config: MappingConfig = field(default_factory=MappingConfig)
    rates: Rates = None  # units of the account currency per unit of each currency; None: compare only ...
    account_currency: str = "USD"  # ... the account currency's customers
    pending: Mapping[str, str] = field(default_factory=dict)  # customer → why it is not synced yet
    parked: Mapping[str, str] = field(default_factory=dict)  # customer → "queue: reason"
    known: Callable[[str], KnownCustomer | None] = lambda _customer: None  # the id map, where the audit has it
    whole_account: bool = True
    truth: Mapping[str, Any] | None = None  # the scenario generator's ground truth (localdev/scenarios/truth.py)


def audit(inputs: AuditInputs) -> AuditReport:
    report = AuditReport(
        generated_at=inputs.as_of,
        data_source=inputs.data_source,
        customers_audited=len(inputs.snapshots),
        customers_in_chartmogul=len(inputs.chartmogul.customers),
        whole_account=inputs.whole_account,
    )
    stripe_mrr: dict[str, int] = defaultdict(int)
    stripe_customers: dict[str, int] = defaultdict(int)
    chartmogul_compared: dict[str, int] = defaultdict(int)
    customers = {customer_id: _CustomerAudit(inputs, customer_id) for customer_id in sorted(inputs.snapshots)}
    # Which Stripe customer each expected invoice belongs to: an invoice of another customer found here was
    # moved by a merge in ChartMogul.
    owners = {
        invoice.external_id: customer_id
        for customer_id, customer in customers.items()
        if customer.bundle is not None
        for invoice in customer.bundle.invoices
    }
    for customer_id, customer in customers.items():
        customer.expected_owner = owners
        report.differences.extend(customer.integrity())
        if customer.present_in_chartmogul is False and customer.expected_in_chartmogul:
            report.missing_customers.append(customer_id)
        report.differences.extend(customer.numbers(stripe_mrr, stripe_customers, chartmogul_compared))
    if inputs.whole_account:
        report.differences.extend(_customers_not_in_stripe(inputs))
    truth = inputs.truth
    for label, _day in inputs.months:
        report.months.append(
            MonthFigures(
                month=label,
                chartmogul_mrr=inputs.chartmogul.mrr_by_month.get(label, 0),
                stripe_mrr=stripe_mrr[label],
                chartmogul_customers=inputs.chartmogul.customers_by_month.get(label, 0),
                stripe_customers=stripe_customers[label],
                chartmogul_mrr_compared=chartmogul_compared[label],
                truth_mrr=int(truth["totals"]["mrr"][label]) if truth and label in truth["totals"]["mrr"] else None,
                truth_customers=(
                    int(truth["totals"]["customers"][label])
                    if truth and label in truth["totals"]["customers"]
                    else None
                ),
            )
        )
    if truth is not None:
        report.differences.extend(_against_truth(inputs, truth))
    return report


class _CustomerAudit:
    def __init__(self, inputs: AuditInputs, customer_id: str) -> None:
        self.inputs = inputs
        self.customer_id = customer_id
        self.snapshot = inputs.snapshots[customer_id]
        self.chartmogul: ChartMogulCustomer | None = inputs.chartmogul.customers.get(customer_id)
        self.known = inputs.known(customer_id)
        self.bundle: CustomerBundle | None = None
        self.mapping_problem: str | None = None
        self.excluded = False
        try:
            self.bundle = map_snapshot(self.snapshot, inputs.config, snapshot_time=inputs.as_of)
        except CustomerExcluded:
            self.excluded = True
        except MappingError as error:
            self.mapping_problem = f"{error.object_id}: {error.field}: {error.reason}"
        self.object_causes: list[Cause] = []
        self.expected_owner: Mapping[str, str] = {}  # invoice external id → the Stripe customer it belongs to

    # -------------------------------------------------------------- which cause
    @property
    def expected_in_chartmogul(self) -> bool:
        return self.bundle is not None and not (
            self.bundle.deleted_in_source and self.inputs.config.deleted_customers is DeletedCustomerHandling.DELETE
        )

    @property
    def present_in_chartmogul(self) -> bool:
        return self.chartmogul is not None

    def _queue_cause(self) -> tuple[Cause, str] | None:
        if self.customer_id in self.inputs.parked:
            return Cause.WAITING_IN_DLQ, self.inputs.parked[self.customer_id]
        if self.customer_id in self.inputs.pending:
            return Cause.NOT_YET_SYNCED, self.inputs.pending[self.customer_id]
        return None

    def _object_cause(self, *, imported: bool) -> tuple[Cause, str]:
        queued = self._queue_cause()
        if queued is not None:
            return queued
        if imported:
            return Cause.MANUAL_EDIT, "imported by this sync and changed in ChartMogul since"
        return Cause.NOT_UPLOADED, "in Stripe's mapping, never reached ChartMogul, and no queue holds it"

    def _difference(
        self, problem: str, *, object_id: str | None = None, imported: bool = True, **values: Any
    ) -> Difference:
        cause, detail = self._object_cause(imported=imported)
        self.object_causes.append(cause)
        return Difference(
            check="integrity",
            customer=self.customer_id,
            problem=problem,
            cause=cause,
            object_id=object_id,
            detail=values.pop("detail", detail),
            **values,
        )

    # -------------------------------------------------------------- integrity
    def integrity(self) -> list[Difference]:
        if self.mapping_problem is not None:
            return [
                self._difference(
                    "cannot be mapped", object_id=self.customer_id, imported=False, detail=self.mapping_problem
                )
            ]
        if self.bundle is None or not self.expected_in_chartmogul:
            if self.chartmogul is not None and self.bundle is None:
                return [
                    self._difference(
                        "in ChartMogul although the mapping config excludes it", object_id=self.customer_id
                    )
                ]
            return []
        if self.chartmogul is None:
            return [self._missing_customer()]
        found: list[Difference] = []
        found.extend(self._customer_fields())
        found.extend(compare_invoices(self, list(self.bundle.invoices), self.chartmogul))
        found.extend(self._cancellations(list(self.bundle.cancellations)))
        return found

    def _missing_customer(self) -> Difference:
        assert self.bundle is not None
        owners = {
            self.inputs.chartmogul.invoice_owner[i.external_id]
            for i in self.bundle.invoices
            if self.inputs.chartmogul.invoice_owner.get(i.external_id, self.customer_id) != self.customer_id
        }
        if owners and self._queue_cause() is None:
            cause = Cause.MERGED_IN_CHARTMOGUL
            self.object_causes.append(cause)
            return Difference(
                check="integrity",
                customer=self.customer_id,
                problem="customer missing in ChartMogul",
                cause=cause,
                object_id=self.customer_id,
                detail=f"its invoices are under {', '.join(sorted(owners))}: merged into it in ChartMogul",
            )
        imported = self.known is not None and self.known.exists
        return self._difference("customer missing in ChartMogul", object_id=self.customer_id, imported=imported)

    def _customer_fields(self) -> list[Difference]:
        assert self.bundle is not None and self.chartmogul is not None
        wanted = self.bundle.customer.model_dump(mode="json")
        found = []
        for name, actual in sorted(self.chartmogul.fields.items()):
            expected = wanted.get(name) or None
            if (actual or None) != expected:
                found.append(
                    self._difference(f"customer {name}", object_id=self.customer_id, expected=expected, actual=actual)
                )
        return found

    def _cancellations(self, wanted: list[Cancellation]) -> list[Difference]:
        assert self.chartmogul is not None
        found = []
        expected = {c.subscription_external_id: sorted(_second(d) for d in c.cancellation_dates) for c in wanted}
        for subscription, dates in sorted(expected.items()):
            actual = sorted(_second(d) for d in self.chartmogul.cancellations.get(subscription, []))
            if actual != dates:
                found.append(
                    self._difference(
                        "cancellation",
                        object_id=subscription,
                        expected=", ".join(dates) or None,
                        actual=", ".join(actual) or None,
                    )
                )
        for subscription, moments in sorted(self.chartmogul.cancellations.items()):
            if subscription not in expected and moments:
                found.append(
                    self._difference(
                        "cancellation in ChartMogul but not in Stripe",
                        object_id=subscription,
                        actual=", ".join(_second(d) for d in moments),
                    )
                )
        return found

    # -------------------------------------------------------------- numbers
    def numbers(
        self, stripe_mrr: dict[str, int], stripe_customers: dict[str, int], chartmogul_compared: dict[str, int]
    ) -> list[Difference]:
        inputs = self.inputs
        figures = customer_figures(self.snapshot, inputs.as_of)
        unrated = sorted(
            c
            for c in figures.currencies
            if c != inputs.account_currency.upper() and (inputs.rates is None or c not in inputs.rates)
        )
        if unrated:
            return [
                Difference(
                    check="numbers",
                    customer=self.customer_id,
                    problem="MRR and cash flow not compared",
                    cause=Cause.FX,
                    detail=f"billed in {', '.join(unrated)}; no exchange rate given for it (--rates)",
                )
            ]
        found: list[Difference] = []
        finder = CauseFinder(self.snapshot, inputs.as_of, inputs.rates)
        subscriptions = list(figures.subscriptions.values())
        first_paid = first_active_day(subscriptions, inputs.rates) if subscriptions else None
        for label, day in inputs.months:
            expected = customer_mrr(subscriptions, day, inputs.rates) if subscriptions else 0
            stripe_mrr[label] += expected
            # Free-customer handling: a customer who paid and moved to $0 still counts (mrr_rules.customer_counted).
            stripe_customers[label] += customer_counted(subscriptions, day, expected, first_paid)
            actual, counted = self.chartmogul.mrr_at(day) if self.chartmogul else (0, 0)
            chartmogul_compared[label] += actual
            tolerance = TOLERANCE_CENTS_PER_SUBSCRIPTION * max(1, counted, _active(subscriptions, day, inputs.rates))
            if abs(actual - expected) > tolerance:
                found.append(
                    self._number_difference("MRR", label, expected, actual, partial(finder.mrr, day, expected, actual))
                )
        found.extend(self._cash_flow(figures, finder))
        return found

    def _cash_flow(self, figures: StripeCustomerFigures, finder: CauseFinder) -> list[Difference]:
        actual: dict[tuple[str, str], int] = defaultdict(int)
        if self.chartmogul is not None:
            for invoice in self.chartmogul.invoices.values():
                total = sum(int(line.amount_in_cents) for line in invoice.line_items)
                for txn in invoice.transactions:
                    if txn.result != "successful":
                        continue
                    amount = int(txn.amount_in_cents) if txn.amount_in_cents is not None else total
                    sign = -1 if txn.type == "refund" else 1
                    actual[(txn.date.strftime("%Y-%m"), str(invoice.currency).upper())] += sign * amount
        months = {label for label, _ in self.inputs.months}
        found = []
        for key in sorted(set(actual) | set(figures.cash_flow)):
            month, currency = key
            if month not in months:
                continue
            expected, got = figures.cash_flow.get(key, 0), actual.get(key, 0)
            if got != expected:
                found.append(
                    self._number_difference(
                        f"net cash flow ({currency})",
                        month,
                        expected,
                        got,
                        partial(finder.cash_flow, month, currency, expected, got),
                    )
                )
        return found

    def _number_difference(
        self,
        problem: str,
        month: str,
        expected: int,
        actual: int,
        explain: Callable[[], tuple[Cause, str] | None] = lambda: None,
    ) -> Difference:
        queued = self._queue_cause()
        if queued is not None:
            cause, detail = queued
        elif self.object_causes:
            cause, detail = self.object_causes[0], "follows from the object differences listed for this customer"
        elif self.bundle is not None or self.excluded:
            # ChartMogul holds what the mapping says: which part of Stripe's data does the mapping count otherwise?
            cause, detail = explain() or (
                Cause.MAPPING,
                "ChartMogul holds what the mapping says, and that differs from ChartMogul's rules applied to "
                "Stripe: a transform bug, or a mapping config that departs from the documented defaults",
            )
            detail = f"{detail}; {ADVICE[cause]}" if cause is not Cause.MAPPING else detail
        else:
            cause, detail = Cause.UNEXPLAINED, ""
        return Difference(
            check="numbers",
            customer=self.customer_id,
            problem=problem,
            cause=cause,
            month=month,
            expected=expected,
            actual=actual,
            detail=detail,
        )


def _active(subscriptions: list[Any], day: dt.date, rates: Rates) -> int:
    return sum(1 for history in subscriptions if customer_mrr([history], day, rates) != 0)


def _second(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_LINE_FIELDS = ("type", "amount_in_cents", "tax_amount_in_cents", "quantity", "discount_amount_in_cents")


def compare_invoices(audit: _CustomerAudit, wanted: list[Invoice], chartmogul: ChartMogulCustomer) -> list[Difference]:
    """Every expected invoice present with the same lines and transactions, and nothing extra."""
    known_invoices = audit.known.invoices if audit.known is not None else None
    # Without an id map: the customer was imported by us if ChartMogul has any of its expected invoices.
    imported_any = bool(set(chartmogul.invoices) & {i.external_id for i in wanted})

    def imported(invoice_id: str) -> bool:
        return invoice_id in known_invoices if known_invoices is not None else imported_any

    found: list[Difference] = []
    expected = {invoice.external_id: invoice for invoice in wanted}
    for invoice_id in sorted(set(expected) - set(chartmogul.invoices)):
        found.append(
            audit._difference("invoice missing in ChartMogul", object_id=invoice_id, imported=imported(invoice_id))
        )
    for invoice_id in sorted(set(chartmogul.invoices) - set(expected)):
        owner = audit.expected_owner.get(invoice_id)
        if owner is not None and owner != audit.customer_id:
            audit.object_causes.append(Cause.MERGED_IN_CHARTMOGUL)
            found.append(
                Difference(
                    check="integrity",
                    customer=audit.customer_id,
                    problem="invoice of another customer",
                    cause=Cause.MERGED_IN_CHARTMOGUL,
                    object_id=invoice_id,
                    detail=f"Stripe bills it to {owner}: {owner} was merged into this customer in ChartMogul",
                )
            )
            continue
        found.append(audit._difference("invoice in ChartMogul but not in Stripe's mapping", object_id=invoice_id))
    for invoice_id in sorted(set(expected) & set(chartmogul.invoices)):
        found.extend(_invoice(audit, expected[invoice_id], chartmogul.invoices[invoice_id]))
    return found


def _invoice(audit: _CustomerAudit, wanted: Invoice, actual: Any) -> list[Difference]:
    found: list[Difference] = []
    if wanted.currency != actual.currency:
        found.append(
            audit._difference(
                "invoice currency", object_id=wanted.external_id, expected=wanted.currency, actual=actual.currency
            )
        )
    lines = {line.external_id: line for line in actual.line_items}
    for line in wanted.line_items:
        got = lines.pop(line.external_id, None)
        if got is None:
            found.append(audit._difference("line item missing in ChartMogul", object_id=line.external_id))
            continue
        for name in _LINE_FIELDS:
            expected, value = getattr(line, name), getattr(got, name)
            if str(expected) != str(value):
                found.append(
                    audit._difference(
                        f"line {name}", object_id=line.external_id, expected=str(expected), actual=str(value)
                    )
                )
        if line.type == "subscription" and bool(getattr(line, "prorated", False)) != bool(got.prorated):
            found.append(
                audit._difference(
                    "line prorated",
                    object_id=line.external_id,
                    expected=str(getattr(line, "prorated", False)),
                    actual=str(got.prorated),
                )
            )
    for extra in sorted(str(key) for key in lines):
        found.append(audit._difference("line item in ChartMogul but not in Stripe's mapping", object_id=extra))
    transactions = {txn.external_id: txn for txn in actual.transactions}
    for txn in wanted.transactions:
        got = transactions.pop(txn.external_id, None)
        if got is None:
            found.append(
                audit._difference(
                    f"{txn.type} transaction missing in ChartMogul", object_id=txn.external_id, imported=False
                )
            )
            continue
        wanted_shape = f"{txn.type}/{txn.result}/{txn.amount_in_cents}"
        actual_shape = f"{got.type}/{got.result}/{got.amount_in_cents}"
        if wanted_shape != actual_shape:
            found.append(
                audit._difference("transaction", object_id=txn.external_id, expected=wanted_shape, actual=actual_shape)
            )
    for extra in sorted(str(key) for key in transactions):
        found.append(audit._difference("transaction in ChartMogul but not in Stripe's mapping", object_id=extra))
    return found


def _customers_not_in_stripe(inputs: AuditInputs) -> list[Difference]:
    return [
        Difference(
            check="integrity",
            customer=external_id,
            problem="customer in ChartMogul but not in Stripe",
            cause=Cause.MANUAL_EDIT,
            object_id=customer.uuid,
            detail="created in this data source by hand, or its Stripe customer is gone",
        )
        for external_id, customer in sorted(inputs.chartmogul.customers.items())
        if external_id not in inputs.snapshots
    ]


def _against_truth(inputs: AuditInputs, truth: Mapping[str, Any]) -> list[Difference]:
    """The demo's further check: ChartMogul's per-customer MRR and objects against the generator's record."""
    found: list[Difference] = []
    truth_months = set(truth.get("months", []))
    for customer_id, expected in sorted(truth["customers"].items()):
        chartmogul = inputs.chartmogul.customers.get(customer_id)
        scenarios = ", ".join(expected.get("scenarios", []))
        for label, day in inputs.months:
            if label not in truth_months:
                continue
            wanted = int(expected["mrr"].get(label, 0))
            actual, counted = chartmogul.mrr_at(day) if chartmogul else (0, 0)
            if abs(actual - wanted) > TOLERANCE_CENTS_PER_SUBSCRIPTION * max(1, counted):
                found.append(
                    Difference(
                        check="ground truth",
                        customer=customer_id,
                        problem="MRR",
                        month=label,
                        expected=wanted,
                        actual=actual,
                        cause=_truth_cause(inputs, customer_id),
                        detail=f"scenarios: {scenarios}",
                    )
                )
        if chartmogul is None:
            continue
        invoices = [Invoice.model_validate(invoice) for invoice in expected.get("invoices", [])]
        probe = _CustomerAudit.__new__(_CustomerAudit)
        probe.inputs, probe.customer_id, probe.known, probe.object_causes = inputs, customer_id, None, []
        probe.expected_owner = {}
        for difference in compare_invoices(probe, invoices, chartmogul):
            found.append(difference.model_copy(update={"check": "ground truth", "detail": f"scenarios: {scenarios}"}))
    return found


def _truth_cause(inputs: AuditInputs, customer_id: str) -> Cause:
    if customer_id in inputs.parked:
        return Cause.WAITING_IN_DLQ
    if customer_id in inputs.pending:
        return Cause.NOT_YET_SYNCED
    return Cause.UNEXPLAINED
