"""Ground truth: what a correct import of the generated account yields in ChartMogul, and its MRR.

Computed from the generator's intent ledger (`ledger.py`) and the catalog, never from the Stripe JSON or the
project's transform, so an audit that compares ChartMogul's figures with it checks the whole pipeline.
It follows docs/mapping-decisions.md:

- identifiers: customer `cus_`, plan `price_`, subscription = item `si_`, subscription set = `sub_`, invoice
  `in_`, line `il_`, payment `inpay_`, failed attempt `ch_`, refund `re_`;
- invoices: drafts and `void` are not imported; `open` and `uncollectible` are; $0 invoices are;
- line `amount_in_cents` = after discount, including tax; `tax_amount_in_cents` = all tax;
- cancellations at `ended_at`, per item; deleted customers keep history with tag `deleted-in-stripe`, without
  name, email, address or attributes (mapping 1.1.0 scrubs them; those deleted more than 30 days before the clock
  also without their creation date: Stripe no longer has it);
- MRR rules 1–7 of "The MRR rules" (base MRR from non-prorated lines, prorations over their window,
  fixed FX table `localdev/fx.py`, evaluated at the end of each month, rounded per line item as ChartMogul
  documents; a customer who paid and moved to $0 still counts, as ChartMogul's free-customer handling). A month the
  clock is still in (after scenario steps) is evaluated at the end of the clock's day (rule 6), over the
  invoices that exist.

Format (`FORMAT`): `{"format", "mapping", "account", "months", "plans", "totals", "customers"}` where
`customers[cus_id] = {"scenarios", "customer", "plans", "invoices", "cancellations", "mrr", "active"}` (`active`:
counted as a customer that month) and `totals` holds
`mrr`, `customers` (active count) and `movements` per month. `customer`, `plans`, `invoices` (with line items
and transactions) and `cancellations` are the project's ChartMogul models (`chartmogul_sync.models.chartmogul`)
dumped as JSON without `None` fields, so they compare directly with a bundle's. Amounts are integer cents in the
invoice's currency; `mrr` is USD cents per `YYYY-MM`.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from chartmogul_sync.models import chartmogul as cm
from localdev.fx import ACCOUNT_CURRENCY, round_cents, to_account_currency
from localdev.scenarios import ledger as lg
from localdev.scenarios.calendar import DAY, add_months, iso, months_between
from localdev.stripe_emulator import records as r
from localdev.stripe_emulator.store import StripeStore

if TYPE_CHECKING:
    from localdev.scenarios.generator import AccountSpec

FORMAT = "chartmogul-sync/stripe-ground-truth/1"
EVENT_RETENTION_SECONDS = 30 * DAY
IMPORTED_STATES = frozenset({"open", "paid", "uncollectible"})
COLLECTION_METHODS: dict[str, Literal["automatic", "manual"]] = {
    "charge_automatically": "automatic",
    "send_invoice": "manual",
}
MAPPING = {
    "subscription_id": "item",
    "void": "exclude",
    "uncollectible": "include",
    "metered": "subscription",
    "unpaid": "no_action",
    "deleted_customers": "keep",
    "deleted_personal_data": "scrub",
    "days_per_month": 365.25 / 12,
}
DAYS_PER_MONTH = 365.25 / 12  # mapping-decisions.md rule 2 (unverified against ChartMogul; one constant)
INTERVAL_LABELS = {("week", 1): "weekly", ("month", 1): "monthly", ("month", 3): "quarterly", ("year", 1): "yearly"}


def plan_name(product: str, price: r.Price) -> str:
    """`{product} ({interval})`, e.g. `Pro (monthly)` (mapping-decisions.md, identifiers)."""
    label = INTERVAL_LABELS.get((price.interval, price.interval_count))
    if label is None:
        label = f"every {price.interval_count} {price.interval}s"
    return f"{product} ({label})"


def plan_interval(price: r.Price) -> tuple[str, int]:
    """ChartMogul has no week unit: a week is 7 days (docs/sources.md#stripe-mrr-rules)."""
    if price.interval == "week":
        return "day", 7 * price.interval_count
    return price.interval, price.interval_count


def months_factor(price: r.Price) -> float:
    unit, count = plan_interval(price)
    if unit == "month":
        return 1 / count
    if unit == "year":
        return 1 / (12 * count)
    return DAYS_PER_MONTH / count


def full_period_seconds(price: r.Price, end: int) -> int:
    """The plan interval ending at `end`: calendar months/years back from the end; days for day plans."""
    unit, count = plan_interval(price)
    if unit == "month":
        return end - add_months(end, -count)
    if unit == "year":
        return end - add_months(end, -12 * count)
    return count * DAY


class _Plans:
    def __init__(self, store: StripeStore) -> None:
        self.store = store
        self._products = {p.id: p.name for p in store.products.values()}

    def price(self, price_id: str) -> r.Price:
        price = self.store.prices.get(price_id)
        assert price is not None, price_id
        return price

    def as_chartmogul(self, price_id: str) -> cm.Plan:
        price = self.price(price_id)
        unit, count = plan_interval(price)
        return cm.Plan(
            external_id=price.id,
            name=plan_name(self._products[price.product], price),
            interval_count=count,
            interval_unit=cm.IntervalUnit(unit),
        )


def _moment(instant: int) -> datetime:
    return datetime.fromtimestamp(instant, tz=UTC)


def _line(line: lg.BilledLine) -> cm.SubscriptionLineItem | cm.OneTimeLineItem:
    common: dict[str, Any] = {
        "external_id": line.line_id,
        "amount_in_cents": line.charged,
        "quantity": max(line.quantity, 1),
        "discount_amount_in_cents": line.discount,
        "discount_code": line.discount_code,
        "tax_amount_in_cents": line.tax,
    }
    if line.kind == "one_time":
        return cm.OneTimeLineItem(**common, description=line.description)
    assert line.item_id is not None
    return cm.SubscriptionLineItem(
        **common,
        subscription_external_id=line.item_id,
        subscription_set_external_id=line.subscription_id,
        plan_external_id=line.price_id,
        service_period_start=_moment(line.period_start),
        service_period_end=_moment(line.period_end),
        prorated=line.prorated,
    )


def _invoice(invoice: lg.BilledInvoice) -> cm.Invoice:
    return cm.Invoice(
        external_id=invoice.invoice_id,
        date=_moment(invoice.finalized_at if invoice.finalized_at is not None else invoice.created),
        currency=invoice.currency.upper(),
        due_date=_moment(invoice.due_date) if invoice.due_date is not None else None,
        collection_method=COLLECTION_METHODS[invoice.collection_method],
        line_items=[_line(line) for line in invoice.lines],
        transactions=[
            cm.Transaction(
                external_id=t.external_id,
                type=cm.TransactionType(t.type),
                result=cm.TransactionResult(t.result),
                date=_moment(t.date),
                amount_in_cents=t.amount,
            )
            for t in invoice.transactions
        ],
    )


def _json(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


def subscription_mrr(lines: list[tuple[lg.BilledLine, str]], plans: _Plans, ended_at: int | None, instant: int) -> int:
    """One subscription's MRR (USD cents, each line rounded) at `instant`, by rules 1–6 of mapping-decisions.md."""
    if ended_at is not None and ended_at <= instant:
        return 0
    base: int | None = None
    base_start = -1
    prorations = 0
    for line, currency in lines:
        if line.period_start > instant:
            continue
        price = plans.price(line.price_id)
        monthly = to_account_currency(line.charged - line.tax, currency) * months_factor(price)
        if not line.prorated:
            if line.period_start >= base_start:  # the latest non-prorated line holds the base
                base, base_start = round_cents(monthly), line.period_start
        elif instant < line.period_end and line.period_end > line.period_start:
            full = full_period_seconds(price, line.period_end)
            # rounded per line (dev.chartmogul.com/docs/how-mrr-is-calculated-from-prorated-invoices)
            prorations += round_cents(monthly * full / (line.period_end - line.period_start))
    return (base or 0) + prorations


def subscription_live(lines: list[tuple[lg.BilledLine, str]], ended_at: int | None, instant: int) -> bool:
    """Started and not ended at `instant`, whatever its MRR (a $0 subscription is live)."""
    return any(line.period_start <= instant for line, _ in lines) and (ended_at is None or ended_at > instant)


def customer_mrr(ledger: lg.CustomerLedger, plans: _Plans, instants: list[tuple[str, int]]) -> dict[str, int]:
    """MRR per month at the given instants (rule 6: the last second of the month, or the clock if earlier)."""
    by_item, ended = _subscriptions(ledger)
    return {
        label: sum(subscription_mrr(lines, plans, ended.get(item), instant) for item, lines in by_item.items())
        for label, instant in instants
    }


def customer_counted(
    ledger: lg.CustomerLedger, mrr: dict[str, int], instants: list[tuple[str, int]]
) -> dict[str, bool]:
    """Whether the customer counts (is Active) each month: MRR > 0, or paid before and a live $0 subscription.

    ChartMogul's free-customer handling keeps a paying customer who moves to $0 or a 100 % coupon Active, the
    drop being contraction, not churn (the default, and the only option for accounts opened since 2025-01-30);
    a customer who never paid stays a lead.
    """
    by_item, ended = _subscriptions(ledger)
    counted: dict[str, bool] = {}
    paid = False
    for label, instant in instants:
        paid = paid or mrr[label] > 0
        counted[label] = mrr[label] > 0 or (
            paid and any(subscription_live(lines, ended.get(item), instant) for item, lines in by_item.items())
        )
    return counted


def _subscriptions(
    ledger: lg.CustomerLedger,
) -> tuple[dict[str, list[tuple[lg.BilledLine, str]]], dict[str, int | None]]:
    """The imported subscription lines per item, and each item's end."""
    by_item: dict[str, list[tuple[lg.BilledLine, str]]] = defaultdict(list)
    for invoice in ledger.invoices:
        if invoice.state not in IMPORTED_STATES:
            continue
        for line in invoice.lines:
            if line.kind == "subscription" and line.item_id is not None:
                by_item[line.item_id].append((line, invoice.currency))
    ended = {item: sub.ended_at for sub in ledger.subscriptions for item in sub.item_ids}
    return by_item, ended


def details_lost(ledger: lg.CustomerLedger, now: int) -> bool:
    """Deleted more than 30 days ago: Stripe answers `{id, deleted: true}` and the `customer.deleted` event that
    held the details is gone (docs/sources.md#stripe-object-mapping, #stripe-events), so no pipeline can know the name,
    email or creation date."""
    return ledger.deleted_at is not None and ledger.deleted_at < now - EVENT_RETENTION_SECONDS


def _customer(ledger: lg.CustomerLedger, now: int) -> cm.Customer:
    trials = [sub.trial_start for sub in ledger.subscriptions if sub.trial_start is not None]
    free_trial = _moment(min(trials)) if trials else None
    tags = ["deleted-in-stripe"] if ledger.deleted_at is not None else []
    if details_lost(ledger, now):
        return cm.Customer(
            external_id=ledger.customer_id,
            free_trial_started_at=free_trial,
            attributes=cm.CustomerAttributes(tags=tags),
        )
    if ledger.deleted_at is not None:  # mapping 1.1.0 default: a deleted customer's personal data is not sent
        return cm.Customer(
            external_id=ledger.customer_id,
            lead_created_at=_moment(ledger.created),
            free_trial_started_at=free_trial,
            attributes=cm.CustomerAttributes(tags=tags),
        )
    return cm.Customer(
        external_id=ledger.customer_id,
        name=ledger.name,
        email=ledger.email,
        country=ledger.country,
        lead_created_at=_moment(ledger.created),
        free_trial_started_at=free_trial,
        attributes=cm.CustomerAttributes(
            tags=tags,
            # Customer metadata become String custom attributes, as ChartMogul's Stripe integration does
            # (docs/sources.md#stripe-native-guide; the transform's default `from_metadata: all`).
            custom=[
                cm.CustomAttribute(type=cm.CustomAttributeType.STRING, key=key, value=value)
                for key, value in sorted(ledger.metadata.items())
            ],
        ),
    )


def _movements(
    per_customer: dict[str, dict[str, int]], counted: dict[str, dict[str, bool]], labels: list[str]
) -> dict[str, dict[str, int]]:
    """Rule 7: compare each customer's MRR with the previous month's; a customer still counted at $0 contracts."""
    kinds = ("new_business", "expansion", "contraction", "churn", "reactivation")
    movements = {label: dict.fromkeys(kinds, 0) for label in labels}
    for customer_id, mrr in per_customer.items():
        previous, previously_counted, was_active = 0, False, False
        for label in labels:
            current, now_counted = mrr[label], counted[customer_id][label]
            delta = current - previous
            if not previously_counted and now_counted:
                movements[label]["reactivation" if was_active else "new_business"] += current
                was_active = True
            elif previously_counted and not now_counted:
                movements[label]["churn"] += delta
            elif delta > 0:
                movements[label]["expansion"] += delta
            elif delta < 0:
                movements[label]["contraction"] += delta
            previous, previously_counted = current, now_counted
    return movements


def build(ledgers: dict[str, lg.CustomerLedger], store: StripeStore, spec: AccountSpec, now: int) -> dict[str, Any]:
    plans = _Plans(store)
    # The month holding the clock is not over: its figure is MRR at the end of today (rule 6: ChartMogul's
    # figures are per day), over the invoices that exist now; later ones do not exist yet.
    end_of_today = (now // DAY + 1) * DAY - 1
    instants = [(label, min(end - 1, end_of_today)) for label, end in months_between(spec.window_start, now)]
    labels = [label for label, _ in instants]
    customers: dict[str, Any] = {}
    per_customer_mrr: dict[str, dict[str, int]] = {}
    per_customer_counted: dict[str, dict[str, bool]] = {}
    used_plans: set[str] = set()
    for customer_id, ledger in ledgers.items():
        invoices = [_json(_invoice(invoice)) for invoice in ledger.invoices if invoice.state in IMPORTED_STATES]
        plan_ids = sorted(
            {line.price_id for invoice in ledger.invoices for line in invoice.lines if line.kind == "subscription"}
        )
        used_plans.update(plan_ids)
        mrr = customer_mrr(ledger, plans, instants)
        per_customer_mrr[customer_id] = mrr
        per_customer_counted[customer_id] = customer_counted(ledger, mrr, instants)
        customers[customer_id] = {
            "scenarios": list(ledger.scenarios),
            "customer": _json(_customer(ledger, now)),
            "plans": [_json(plans.as_chartmogul(price_id)) for price_id in plan_ids],
            "invoices": invoices,
            "cancellations": [
                _json(cm.Cancellation(subscription_external_id=item, cancellation_dates=[_moment(sub.ended_at)]))
                for sub in ledger.subscriptions
                if sub.ended_at is not None
                for item in sub.item_ids
            ],
            "mrr": mrr,
            "active": per_customer_counted[customer_id],
        }
    totals = {
        "mrr": {label: sum(mrr[label] for mrr in per_customer_mrr.values()) for label in labels},
        "customers": {label: sum(1 for counted in per_customer_counted.values() if counted[label]) for label in labels},
        "movements": _movements(per_customer_mrr, per_customer_counted, labels),
    }
    return {
        "format": FORMAT,
        "mapping": MAPPING,
        "account": {
            "customers": spec.customers,
            "months": spec.months,
            "seed": spec.seed,
            "start": iso(spec.window_start),
            "now": iso(now),
            "currency": ACCOUNT_CURRENCY,
        },
        "months": labels,
        "plans": [_json(plans.as_chartmogul(price_id)) for price_id in sorted(used_plans)],
        "totals": totals,
        "customers": customers,
    }
