"""MRR and cash flow of one Stripe customer, derived from its snapshot's raw Stripe JSON by ChartMogul's rules.

This is the audit's second, independent derivation: it reads the Stripe JSON itself and never calls the
transform (`chartmogul_sync.transform`), so a bug there, or a mapping config that departs from the documented
defaults, shows as a difference between these figures and ChartMogul's. What it implements is the documented
behaviour, written from the documents, not from the transform's code:

- which invoices count: finalized ones except `void` (docs/mapping-decisions.md "Invoices": `open`, `paid` and
  `uncollectible` are imported);
- which lines make MRR: lines billing a subscription item, prorations included, `amount − discounts −
  inclusive tax` (Stripe's line `amount` is before discounts and includes inclusive tax, excludes exclusive tax:
  https://docs.stripe.com/api/invoice-line-item/object), one Stripe subscription item = one ChartMogul
  subscription, its plan interval from the line's price (a week is 7 days, ChartMogul has no week unit:
  https://dev.chartmogul.com/reference/create-a-plan);
- when a subscription stops: its Stripe subscription's `ended_at` (canceled, incomplete_expired), an item no
  longer on its subscription at the end of its last billed period (or at the start of its final credit), a
  deleted customer's subscriptions at the deletion;
- MRR itself: the rules in `mrr_rules.py` (docs/mapping-decisions.md "The MRR rules");
- net cash flow: what Stripe collected (paid invoice payments, on the day they were paid) minus what it refunded
  (succeeded refunds, on their day), per month and invoice currency, as ChartMogul's cash-flow view counts
  transactions (https://help.chartmogul.com/hc/en-us/articles/360016483800-Auditing-your-subscription-data).

`FigureRules` departs from these rules in one named way at a time (tax kept in MRR, coupons not deducted,
prorations dropped or taken as full periods, cancellations a month off or missing): what a mapping that departs
that way would make ChartMogul show. audit/causes.py names a difference's cause by the departure that explains it.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Literal

from ..models.snapshot import CustomerSnapshot
from .mrr_rules import SubscriptionHistory, SubscriptionLine, add_months

Json = dict[str, Any]

COUNTED_INVOICE_STATUSES = frozenset({"open", "paid", "uncollectible"})
ENDED_SUBSCRIPTION_STATUSES = frozenset({"canceled", "incomplete_expired"})


@dataclass(frozen=True)
class FigureRules:
    """ChartMogul's documented rules (the defaults), or a departure from them (audit/causes.py)."""

    subtract_tax: bool = True  # False: tax in MRR (inclusive tax kept, exclusive tax added)
    subtract_discounts: bool = True  # False: coupons not deducted (a 100 % coupon's customer shows MRR)
    prorations: Literal["over their window", "dropped", "as full periods"] = "over their window"
    cancellations: Literal["as stripe says", "missing", "a month early", "a month late"] = "as stripe says"


DOCUMENTED_RULES = FigureRules()


@dataclass
class CashComponents:
    """Parts of one month's cash flow in one currency that a mapping may count differently (cents)."""

    refunds: int = 0  # succeeded refunds of the month
    one_time: int = 0  # one-off lines (no subscription item) of the invoices paid in the month, after discounts
    exclusive_tax: int = 0  # exclusive tax of the invoices paid in the month


@dataclass
class StripeCustomerFigures:
    customer_id: str
    subscriptions: dict[str, SubscriptionHistory] = field(default_factory=dict)  # by subscription item id
    currencies: set[str] = field(default_factory=set)  # the invoice currencies (upper case)
    cash_flow: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))  # (month, CUR) → cents
    invoice_ids: set[str] = field(default_factory=set)
    cash_components: dict[tuple[str, str], CashComponents] = field(default_factory=dict)  # (month, CUR) →
    # free of charge by a discount: subscription item ids with a line whose discounts took all of its amount
    fully_discounted: set[str] = field(default_factory=set)


def _moment(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _month(seconds: int) -> str:
    return _moment(seconds).strftime("%Y-%m")


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def customer_figures(
    snapshot: CustomerSnapshot, as_of: dt.datetime, rules: FigureRules = DOCUMENTED_RULES
) -> StripeCustomerFigures:
    """The customer's subscription histories (for MRR) and cash flow, from its Stripe objects alone."""
    figures = StripeCustomerFigures(snapshot.customer_id)
    prices = {str(price["id"]): price for price in snapshot.prices}
    subscriptions = {str(sub["id"]): sub for sub in snapshot.subscriptions}
    invoice_items = {str(item["id"]): item for item in snapshot.invoice_items}
    lines_by_item: dict[str, list[Json]] = defaultdict(list)
    subscription_of_item: dict[str, str | None] = {}
    for invoice in snapshot.invoices:
        if invoice.get("status") not in COUNTED_INVOICE_STATUSES:
            continue
        figures.invoice_ids.add(str(invoice["id"]))
        currency = str(invoice.get("currency", "")).upper()
        figures.currencies.add(currency)
        for line in (invoice.get("lines") or {}).get("data") or []:
            billed = _billed_item(line, invoice, invoice_items, subscriptions)
            if billed is None:
                continue  # a one-off charge: no MRR (ChartMogul counts one-time lines out of MRR)
            item_id, subscription_id, prorated = billed
            price = prices.get(_line_price(line) or "")
            recurring = (price or {}).get("recurring") or None
            period = line.get("period") or {}
            start, end = period.get("start"), period.get("end")
            if recurring is None or not isinstance(start, int) or not isinstance(end, int) or end <= start:
                continue
            unit, count = str(recurring.get("interval")), int(recurring.get("interval_count") or 1)
            if unit == "week":
                unit, count = "day", 7 * count
            discounts = _discounts(line)
            amount = int(line.get("amount", 0))
            if discounts and amount > 0 and discounts >= amount:
                figures.fully_discounted.add(item_id)
            amount -= discounts if rules.subtract_discounts else 0
            amount += -_tax(line, "inclusive") if rules.subtract_tax else _tax(line, "exclusive")
            if prorated and rules.prorations == "dropped":
                continue
            history = figures.subscriptions.setdefault(item_id, SubscriptionHistory())
            history.lines.append(
                SubscriptionLine(
                    start=_moment(start),
                    end=_moment(end),
                    amount_in_cents=amount,
                    tax_amount_in_cents=0,
                    currency=currency,
                    prorated=prorated and rules.prorations == "over their window",
                    interval_unit=unit,
                    interval_count=count,
                )
            )
            lines_by_item[item_id].append(line)
            subscription_of_item[item_id] = subscription_id
    for item_id, history in figures.subscriptions.items():
        # ChartMogul takes lines in the order they were imported: invoices by id, as the uploader sends them.
        ended = _item_end(item_id, subscriptions.get(subscription_of_item.get(item_id) or ""), lines_by_item[item_id])
        if ended is None and snapshot.deleted:
            deleted_at = snapshot.customer.get("deleted_at")
            ended = _moment(deleted_at) if isinstance(deleted_at, int) else as_of
        if ended is not None and rules.cancellations != "missing":
            shift = {"a month early": -1, "a month late": 1}.get(rules.cancellations, 0)
            history.cancellations.append(min(add_months(ended, shift), as_of))
    _add_cash_flow(snapshot, figures)
    return figures


def _discounts(line: Json) -> int:
    return sum(int(d.get("amount", 0)) for d in line.get("discount_amounts") or [])


def _tax(line: Json, behavior: str) -> int:
    return sum(int(t.get("amount", 0)) for t in line.get("taxes") or [] if t.get("tax_behavior") == behavior)


def _line_price(line: Json) -> str | None:
    pricing = line.get("pricing") or {}
    details = pricing.get("price_details") or {}
    return _id(details.get("price")) or _id(line.get("price") or None)


def _billed_item(
    line: Json, invoice: Json, invoice_items: dict[str, Json], subscriptions: dict[str, Json]
) -> tuple[str, str | None, bool] | None:
    """(subscription item, subscription, proration) of a line that bills a subscription; None for one-offs."""
    parent = line.get("parent") or {}
    details = parent.get("subscription_item_details")
    if parent.get("type") == "subscription_item_details" and details:
        item = _id(details.get("subscription_item"))
        if item is None:
            return None
        return (
            item,
            _id(details.get("subscription")) or _id(invoice.get("subscription")),
            bool(details.get("proration")),
        )
    item_details = parent.get("invoice_item_details")
    if parent.get("type") != "invoice_item_details" or not item_details or not item_details.get("proration"):
        return None
    # A proration billed as an invoice item: its invoice item names the subscription item it came from.
    invoice_item = invoice_items.get(_id(item_details.get("invoice_item")) or "") or {}
    origin = (invoice_item.get("parent") or {}).get("subscription_details") or {}
    subscription_id = _id(item_details.get("subscription")) or _id(origin.get("subscription"))
    item = _id(origin.get("subscription_item"))
    if item is None and subscription_id in subscriptions:
        price_id = _line_price(line)
        same_price = [
            str(i["id"])
            for i in (subscriptions[subscription_id].get("items") or {}).get("data") or []
            if _id(i.get("price") or {}) == price_id
        ]
        item = same_price[0] if len(same_price) == 1 else None
    return None if item is None else (item, subscription_id, True)


def _item_end(item_id: str, subscription: Json | None, lines: list[Json]) -> dt.datetime | None:
    """When a subscription item stopped: its subscription's end, or its removal from the subscription."""
    ended: dt.datetime | None = None
    if subscription is not None and subscription.get("status") in ENDED_SUBSCRIPTION_STATUSES:
        ended_at = subscription.get("ended_at")
        ended = _moment(ended_at) if isinstance(ended_at, int) else None
    if subscription is None:
        return ended
    current_items = {str(i["id"]) for i in (subscription.get("items") or {}).get("data") or []}
    if item_id in current_items:
        return ended
    # Removed from its subscription: billing stopped at the start of its final credit, else its last period end.
    last = max(lines, key=lambda line: (line["period"]["end"], int(line.get("amount", 0)) < 0, line["period"]["start"]))
    removed = _moment(last["period"]["start"] if int(last.get("amount", 0)) < 0 else last["period"]["end"])
    return min(removed, ended) if ended is not None else removed


def _add_cash_flow(snapshot: CustomerSnapshot, figures: StripeCustomerFigures) -> None:
    invoices = {str(i["id"]): i for i in snapshot.invoices}
    invoice_items = {str(item["id"]): item for item in snapshot.invoice_items}
    subscriptions = {str(sub["id"]): sub for sub in snapshot.subscriptions}
    currency_of_invoice = {
        str(i["id"]): str(i.get("currency", "")).upper()
        for i in snapshot.invoices
        if str(i["id"]) in figures.invoice_ids
    }
    for payment in snapshot.invoice_payments:
        paid_invoice = _id(payment.get("invoice")) or ""
        paid_at = (payment.get("status_transitions") or {}).get("paid_at")
        if payment.get("status") != "paid" or paid_invoice not in currency_of_invoice or not isinstance(paid_at, int):
            continue
        key = (_month(paid_at), currency_of_invoice[paid_invoice])
        figures.cash_flow[key] += int(payment.get("amount_paid", 0))
        components = figures.cash_components.setdefault(key, CashComponents())
        for line in (invoices[paid_invoice].get("lines") or {}).get("data") or []:
            components.exclusive_tax += _tax(line, "exclusive")
            if _billed_item(line, invoices[paid_invoice], invoice_items, subscriptions) is None:
                components.one_time += int(line.get("amount", 0)) - _discounts(line)
    charges = {str(c["id"]): c for c in snapshot.charges}
    invoice_of_charge = {
        str(c["id"]): _id(c.get("invoice")) for c in snapshot.charges if _id(c.get("invoice")) in currency_of_invoice
    }
    payment_intents = {
        _id((p.get("payment") or {}).get("payment_intent")): _id(p.get("invoice")) for p in snapshot.invoice_payments
    }
    for refund in snapshot.refunds:
        if refund.get("status") != "succeeded" or not isinstance(refund.get("created"), int):
            continue
        charge_id = _id(refund.get("charge")) or ""
        invoice_id = invoice_of_charge.get(charge_id) or payment_intents.get(_id(refund.get("payment_intent")))
        if invoice_id is None and charge_id in charges:
            invoice_id = payment_intents.get(_id(charges[charge_id].get("payment_intent")))
        if invoice_id not in currency_of_invoice:
            continue  # a refund of a charge that no imported invoice was paid by
        key = (_month(refund["created"]), currency_of_invoice[invoice_id])
        figures.cash_flow[key] -= int(refund.get("amount", 0))
        figures.cash_components.setdefault(key, CashComponents()).refunds += int(refund.get("amount", 0))
