"""Stripe customer snapshot + mapping config → ChartMogul customer bundle: a pure function.

The rules are docs/mapping-decisions.md, in its terms; the facts behind them are
docs/sources.md#stripe-mrr-rules, #stripe-object-mapping, #stripe-edge-cases and #cm-invoices. The same snapshot and
config always give a byte-identical bundle: nothing here reads the clock, and everything emitted is sorted by a stable
key.

Invoices, line items and transactions are built as plain dicts in the shapes of `models.chartmogul` and validated
once, with the whole bundle: one validation instead of one per object keeps the transform fast (see
benchmarks/bench_transform.py), and a validation error is traced back to the Stripe object it came from.
"""

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple, TypeVar

from pydantic import ValidationError

from ..models.bundle import CustomerBundle, SkippedRecord
from ..models.chartmogul import (
    Cancellation,
    CustomAttribute,
    CustomAttributeType,
    Customer,
    CustomerAttributes,
    IntervalUnit,
    Plan,
    TransactionResult,
    TransactionType,
)
from ..models.snapshot import CustomerSnapshot
from ..models.stripe import (
    StripeCreditNote,
    StripeInvoice,
    StripeInvoiceLine,
    StripePrice,
    StripeRefund,
    StripeSubscription,
    expandable_id,
)
from .config import (
    DeletedCustomerHandling,
    MappingConfig,
    MeteredHandling,
    StatusHandling,
    SubscriptionIdSource,
    UnpaidHandling,
)
from .errors import CustomerExcluded, MappingError
from .snapshot_view import SnapshotView, parse_snapshot

# Recorded in every bundle; docs/mapping-changelog.md says what each version does to the numbers.
MAPPING_VERSION = "1.1.0"

_COLLECTION_METHODS = {"charge_automatically": "automatic", "send_invoice": "manual"}
FINALIZED_STATUSES = frozenset({"open", "paid", "uncollectible", "void"})
ENDED_STATUSES = frozenset({"canceled", "incomplete_expired"})
# Custom attribute keys are kept to letters, digits and underscores: identifier-like keys are what ChartMogul's own
# examples use (docs/sources.md#cm-customers); its exact key rules are not in what we could read.
_ATTRIBUTE_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_]")
_STRING_ATTRIBUTE_MAX = 255

Built = TypeVar("Built")
# An outbound object (invoice, line item, transaction) before validation, shaped as its model in models.chartmogul.
Draft = dict[str, Any]


def map_snapshot(
    snapshot: CustomerSnapshot, config: MappingConfig | None = None, *, snapshot_time: datetime | None = None
) -> CustomerBundle:
    """The customer's desired ChartMogul state.

    `snapshot_time` is the envelope's; without one (a snapshot file given to `cmsync transform`) the latest moment
    recorded in the snapshot stands in, so the result is still a function of the input alone.
    Raises MappingError for input that cannot be mapped, CustomerExcluded when the config excludes the customer.
    """
    config = config or MappingConfig()
    if snapshot.customer_id in config.exclude.customers:
        raise CustomerExcluded(snapshot.customer_id, "excluded by the mapping config (exclude.customers)")
    view = parse_snapshot(snapshot)
    as_of = snapshot_time or latest_activity(view)
    mapper = _BundleMapper(view, config, as_of)
    if snapshot.customer_only:
        # A backfill's head start: the customer as its full snapshot will map it, less what only its subscriptions
        # say (free_trial_started_at), which the full bundle's update then adds (docs/architecture.md "Customer
        # heads").
        return build(
            snapshot.customer_id,
            CustomerBundle,
            mapping_version=MAPPING_VERSION,
            snapshot_time=as_of,
            customer=mapper.customer(),
            customer_only=True,
        )
    return mapper.bundle()


@lru_cache(maxsize=8192)
def ts(seconds: int) -> datetime:
    """A Stripe time (Unix seconds) as a UTC datetime; cached, as period boundaries repeat across lines."""
    return datetime.fromtimestamp(seconds, UTC)


def latest_activity(view: SnapshotView) -> datetime:
    """The latest moment the snapshot records: a deterministic stand-in for its snapshot time."""
    moments = [view.customer.created or 0, view.customer.deleted_at or 0]
    for subscription in view.subscriptions.values():
        moments += [subscription.created, subscription.canceled_at or 0, subscription.ended_at or 0]
    for invoice in view.invoices:
        transitions = invoice.status_transitions
        moments += [invoice.created, transitions.finalized_at or 0, transitions.paid_at or 0]
        moments += [transitions.voided_at or 0, transitions.marked_uncollectible_at or 0]
    moments += [charge.created for charge in view.charges]
    moments += [refund.created for refund in view.refunds]
    moments += [note.created for note in view.credit_notes]
    for payments in view.payments_by_invoice.values():
        moments += [payment.status_transitions.paid_at or 0 for payment in payments]
    return ts(max(moments))


_INTERVAL_LABELS = {("day", 1): "daily", ("week", 1): "weekly", ("month", 1): "monthly", ("month", 3): "quarterly"}
_INTERVAL_LABELS[("year", 1)] = "yearly"


def interval_label(unit: str, count: int) -> str:
    """`{interval}` of plan names: `monthly`, `quarterly`, `every 2 weeks`, …"""
    return _INTERVAL_LABELS.get((unit, count)) or f"every {count} {unit}s"


def build(object_id: str, constructor: Callable[..., Built], **fields: Any) -> Built:
    """Build an outbound model; a validation error becomes a MappingError naming the Stripe object and field.

    Nested drafts (dicts with an `external_id`, the Stripe id) are blamed themselves: an invalid line item is
    reported as `il_…: amount_in_cents: …`, not as a position in the bundle.
    """
    try:
        return constructor(**fields)
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        blamed, location = _blame(object_id, fields, problem["loc"])
        raise MappingError(blamed, ".".join(location) or "(object)", problem["msg"]) from None


def _blame(object_id: str, fields: dict[str, Any], loc: tuple[int | str, ...]) -> tuple[str, list[str]]:
    """The innermost draft on the error's path, and the path inside it."""
    node: Any = fields
    location: list[str] = []
    for step in loc:
        if isinstance(node, dict) and step not in node and node.get("type") == step:
            continue  # the tag pydantic adds to the path of a discriminated union member
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            location.append(str(step))
            node = None
            continue
        if isinstance(step, int) and isinstance(node, dict) and isinstance(node.get("external_id"), str):
            object_id, location = node["external_id"], []
        else:
            location.append(str(step))
    return object_id, location


class _SubscriptionLink(NamedTuple):
    """Which Stripe subscription item a line bills, and whether it is a proration."""

    item_id: str
    subscription_id: str | None
    prorated: bool


@dataclass
class _BundleMapper:
    view: SnapshotView
    config: MappingConfig
    as_of: datetime
    plans: dict[str, Plan] = field(default_factory=dict)
    plan_sources: dict[str, str] = field(default_factory=dict)  # plan external id → the first price mapped to it
    skipped: list[SkippedRecord] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    # ChartMogul subscription id → its lines (item mode: si_…; subscription mode: sub_…), for cancellations.
    lines_by_subscription: dict[str, list[StripeInvoiceLine]] = field(default_factory=lambda: defaultdict(list))
    stripe_subscription_of: dict[str, str | None] = field(default_factory=dict)
    refunds: dict[str, list[Draft]] = field(default_factory=dict)  # refund transactions by invoice id
    plan_of_price: dict[str, str] = field(default_factory=dict)  # price id → plan external id, once checked

    def skip(self, object_id: str, reason: str) -> None:
        self.skipped.append(SkippedRecord(source_object_id=object_id, reason=reason))

    # ------------------------------------------------------------ the bundle

    def bundle(self) -> CustomerBundle:
        customer = self.customer()
        deleting = self.view.deleted and self.config.deleted_customers is DeletedCustomerHandling.DELETE
        invoices: list[Draft] = []
        if deleting:
            # The customer leaves ChartMogul with everything it had (docs/mapping-decisions.md, Subscriptions).
            for invoice in self.view.invoices:
                self.skip(invoice.id, "customer deleted in Stripe and deleted_customers is 'delete'")
        else:
            self.refunds = self.refund_transactions()
            invoices = self.invoices()
            self.check_subscription_ids()
            self.skip_unattached_money({invoice["external_id"] for invoice in invoices})
        return build(
            self.view.customer.id,
            CustomerBundle,
            mapping_version=MAPPING_VERSION,
            snapshot_time=self.as_of,
            customer=customer,
            deleted_in_source=deleting,
            plans=[self.plans[key] for key in sorted(self.plans)],
            invoices=sorted(invoices, key=lambda invoice: (invoice["date"], invoice["external_id"])),
            removed_invoice_external_ids=sorted(set(self.removed)),
            # Every subscription line registered belongs to an imported invoice: these are the subscriptions
            # the bundle creates in ChartMogul, the only ones a cancellation may name.
            cancellations=self.cancellations(set(self.lines_by_subscription)),
            skipped=sorted(set(self.skipped), key=lambda record: (record.source_object_id, record.reason)),
        )

    def skip_unattached_money(self, imported: set[str]) -> None:
        """Charges and refunds that belong to no imported invoice are skipped with their reason, never lost."""
        for charge in self.view.charges:
            invoice_id = self.view.invoice_for_charge(charge.id)
            if invoice_id is None:
                self.skip(charge.id, "charge not tied to any invoice of the snapshot (ChartMogul imports invoices)")
            elif invoice_id not in imported:
                self.skip(charge.id, f"charge of invoice {invoice_id}, which is not imported")
        for invoice_id, transactions in self.refunds.items():
            if invoice_id not in imported:
                for transaction in transactions:
                    self.skip(transaction["external_id"], f"refund of invoice {invoice_id}, which is not imported")

    # ------------------------------------------------------------ customer

    def customer(self) -> Customer:
        stripe_customer = self.view.customer
        address = stripe_customer.address
        trial_starts = [s.trial_start for s in self.view.subscriptions.values() if s.trial_start is not None]
        tags = set(self.config.customers.tags.static)
        for key in self.config.customers.tags.from_metadata:
            if value := stripe_customer.metadata.get(key, "").strip():
                tags.add(value)
        if self.view.deleted:
            tags.add(self.config.customers.tags.deleted_customer)
            if self.config.customers.deleted_personal_data == "scrub":
                # docs/mapping-decisions.md "Deleted customers": personal data is not sent (mapping 1.1.0).
                return build(
                    stripe_customer.id,
                    Customer,
                    external_id=stripe_customer.id,
                    lead_created_at=ts(stripe_customer.created) if stripe_customer.created else None,
                    free_trial_started_at=ts(min(trial_starts)) if trial_starts else None,
                    attributes=CustomerAttributes(tags=sorted(tags), custom=[]),
                )
        return build(
            stripe_customer.id,
            Customer,
            external_id=stripe_customer.id,
            name=stripe_customer.name or stripe_customer.individual_name or stripe_customer.business_name or "",
            email=stripe_customer.email or "",
            company=stripe_customer.business_name or "",
            country=address.country.upper() if address and address.country else None,
            state=address.state if address else None,
            city=address.city if address else None,
            zip=address.postal_code if address else None,
            lead_created_at=ts(stripe_customer.created) if stripe_customer.created else None,
            free_trial_started_at=ts(min(trial_starts)) if trial_starts else None,
            attributes=CustomerAttributes(tags=sorted(tags), custom=self.custom_attributes()),
        )

    def custom_attributes(self) -> list[CustomAttribute]:
        settings = self.config.customers.attributes
        metadata = self.view.customer.metadata
        if settings.from_metadata == "none":
            return []
        keys = (
            sorted(metadata)
            if settings.from_metadata == "all"
            else sorted(k for k in settings.metadata if k in metadata)
        )
        attributes: dict[str, CustomAttribute] = {}
        for stripe_key in keys:
            mapped = settings.metadata.get(stripe_key)
            key = (mapped.key if mapped and mapped.key else None) or _ATTRIBUTE_KEY_UNSAFE.sub("_", stripe_key)
            kind = mapped.type if mapped else CustomAttributeType.STRING
            if key in attributes:
                raise MappingError(
                    self.view.customer.id,
                    f"metadata.{stripe_key}",
                    f"becomes custom attribute {key!r} like another metadata key; give one a key in "
                    "customers.attributes.metadata",
                )
            value = _attribute_value(self.view.customer.id, stripe_key, metadata[stripe_key], kind)
            attributes[key] = build(
                self.view.customer.id, CustomAttribute, type=kind, key=key, value=value, source="stripe"
            )
        return [attributes[key] for key in sorted(attributes)]

    # ------------------------------------------------------------ plans

    def plan_for(self, price: StripePrice, line_id: str) -> str:
        if (known := self.plan_of_price.get(price.id)) is not None:
            return known
        self.plan_of_price[price.id] = self.new_plan_for(price, line_id)
        return self.plan_of_price[price.id]

    def new_plan_for(self, price: StripePrice, line_id: str) -> str:
        recurring = price.recurring
        if recurring is None:
            raise MappingError(line_id, "pricing.price_details.price", f"price {price.id} is not recurring")
        unit, count = _interval(price)
        external_id = self.config.plans.plan_external_id(price.id)
        existing = self.plans.get(external_id)
        if existing is not None:
            if (existing.interval_unit, existing.interval_count) != (unit, count):
                raise MappingError(
                    price.id,
                    f"plans.overrides.{price.id}.external_id",
                    f"merges this price into plan {external_id!r} of price {self.plan_sources[external_id]}, "
                    "whose billing interval differs",
                )
            return external_id
        override = self.config.plans.overrides.get(price.id)
        name = override.name if override and override.name else self.plan_name(price)
        self.plans[external_id] = build(
            price.id, Plan, external_id=external_id, name=name, interval_count=count, interval_unit=unit
        )
        self.plan_sources[external_id] = price.id
        return external_id

    def plan_name(self, price: StripePrice) -> str:
        assert price.recurring is not None  # checked by plan_for
        product = self.view.products.get(price.product_id)
        name = self.config.plans.name_template.format(
            product=(product.name if product and product.name else price.product_id),
            product_id=price.product_id,
            nickname=price.nickname or "",
            interval=interval_label(price.recurring.interval, price.recurring.interval_count),
            price_id=price.id,
            currency=price.currency.upper(),
        )
        # An empty placeholder (a price without nickname) must not leave double spaces in the name.
        return " ".join(name.split()) or price.id

    # ------------------------------------------------------------ invoices

    def invoices(self) -> list[Draft]:
        mapped = []
        for invoice in sorted(self.view.invoices, key=lambda i: i.id):
            if (reason := self.invoice_skip_reason(invoice)) is not None:
                self.skip(invoice.id, reason)
                if invoice.status in ("void", "uncollectible"):
                    # It may have been imported while it was open: it must leave ChartMogul now.
                    self.removed.append(invoice.id)
                continue
            if (built := self.invoice(invoice)) is not None:
                mapped.append(built)
        return mapped

    def invoice_skip_reason(self, invoice: StripeInvoice) -> str | None:
        status = invoice.status
        if status == "draft":
            return "draft invoice: only finalized invoices are imported"
        if status not in FINALIZED_STATUSES:
            raise MappingError(invoice.id, "status", f"unknown invoice status {status!r}")
        if status == "void" and self.config.invoices.void is StatusHandling.EXCLUDE:
            return "void invoice: excluded (invoices.void is 'exclude')"
        if status == "uncollectible" and self.config.invoices.uncollectible is StatusHandling.EXCLUDE:
            return "uncollectible invoice: excluded (invoices.uncollectible is 'exclude')"
        return None

    def invoice(self, invoice: StripeInvoice) -> Draft | None:
        if invoice.lines.has_more:
            raise MappingError(
                invoice.id, "lines.has_more", "the snapshot holds only the first page of lines; every line is needed"
            )
        if not invoice.lines.data:
            self.skip(invoice.id, "invoice without lines: ChartMogul needs at least one line item")
            return None
        check_lines_add_up(invoice)
        lines = [built for line in invoice.lines.data if (built := self.line(invoice, line)) is not None]
        if not lines:
            self.skip(invoice.id, "no line of the invoice is left to import (each line says why)")
            return None
        return {
            "external_id": invoice.id,
            "date": ts(invoice.status_transitions.finalized_at or invoice.created),
            "currency": invoice.currency.upper(),
            "due_date": ts(invoice.due_date) if invoice.due_date else None,
            "collection_method": _COLLECTION_METHODS.get(invoice.collection_method or ""),
            "line_items": lines,
            "transactions": self.transactions(invoice),
        }

    # ------------------------------------------------------------ line items

    def line(self, invoice: StripeInvoice, line: StripeInvoiceLine) -> Draft | None:
        price_id = line.price_id
        price = self.view.prices.get(price_id) if price_id else None
        if price_id is not None and price_id in self.config.exclude.prices:
            self.skip(line.id, f"price {price_id} excluded by the mapping config (exclude.prices)")
            return None
        if price is not None and price.product_id in self.config.exclude.products:
            self.skip(line.id, f"product {price.product_id} excluded by the mapping config (exclude.products)")
            return None
        discount = sum(d.amount for d in line.discount_amounts)
        draft: Draft = {
            "type": "one_time",
            "external_id": line.id,
            # docs/sources.md#stripe-object-mapping (Discounts, Tax): net of discounts, including tax.
            "amount_in_cents": line_net_amount(line),
            "tax_amount_in_cents": sum(t.amount for t in line.taxes),
            "discount_amount_in_cents": discount,
            "discount_code": self.discount_code(line) if discount else None,
            "quantity": max(line.quantity or 1, 1),
            "description": line.description,
        }
        link = self.subscription_link(invoice, line, price_id)
        metered_one_time = (
            price is not None
            and price.recurring is not None
            and price.recurring.usage_type == "metered"
            and self.config.metered is MeteredHandling.ONE_TIME
        )
        if link is None or metered_one_time:
            return draft
        if price_id is None:
            raise MappingError(line.id, "pricing.price_details.price", "a subscription line without a price")
        if price is None:
            raise MappingError(
                line.id, "pricing.price_details.price", f"price {price_id} is not in the snapshot's prices"
            )
        if line.period.end <= line.period.start:
            if draft["amount_in_cents"] == 0:
                self.skip(line.id, "zero-amount line with an empty service period: nothing to import")
                return None
            raise MappingError(line.id, "period", "the service period is empty (end is not after start)")
        subscription_id = self.chartmogul_subscription_id(line, link)
        self.lines_by_subscription[subscription_id].append(line)
        self.stripe_subscription_of[subscription_id] = link.subscription_id
        draft.update(
            type="subscription",
            subscription_external_id=subscription_id,
            subscription_set_external_id=(
                link.subscription_id if self.config.subscription_id is SubscriptionIdSource.ITEM else None
            ),
            plan_external_id=self.plan_for(price, line.id),
            service_period_start=ts(line.period.start),
            service_period_end=ts(line.period.end),
            prorated=link.prorated,
        )
        return draft

    def subscription_link(
        self, invoice: StripeInvoice, line: StripeInvoiceLine, price_id: str | None
    ) -> _SubscriptionLink | None:
        """The subscription item a line bills; None for one-off items (which carry no MRR)."""
        parent = line.parent
        if parent is None:
            return None
        if parent.type == "subscription_item_details" and parent.subscription_item_details is not None:
            details = parent.subscription_item_details
            return _SubscriptionLink(
                item_id=details.subscription_item,
                subscription_id=details.subscription or invoice.subscription_id,
                prorated=details.proration,
            )
        item_details = parent.invoice_item_details
        if parent.type != "invoice_item_details" or item_details is None or not item_details.proration:
            return None
        # An invoice-item proration names no subscription item; its invoice item does
        # (docs/sources.md#stripe-object-mapping, Proration).
        invoice_item = self.view.invoice_items.get(item_details.invoice_item)
        origin = invoice_item.parent.subscription_details if invoice_item and invoice_item.parent else None
        subscription_id = item_details.subscription or (origin.subscription if origin else None)
        item_id = origin.subscription_item if origin else None
        if item_id is None:
            item_id = self.item_by_price(subscription_id, price_id)
        if item_id is None:
            raise MappingError(
                line.id,
                "parent.invoice_item_details.invoice_item",
                f"proration from invoice item {item_details.invoice_item} cannot be linked to a subscription item "
                "(the invoice item is not in the snapshot and no item of the subscription has this price)",
            )
        return _SubscriptionLink(item_id=item_id, subscription_id=subscription_id, prorated=True)

    def item_by_price(self, subscription_id: str | None, price_id: str | None) -> str | None:
        subscription = self.view.subscriptions.get(subscription_id or "")
        if subscription is None or price_id is None:
            return None
        matches = [item.id for item in subscription.items.data if item.price.id == price_id]
        return matches[0] if len(matches) == 1 else None

    def chartmogul_subscription_id(self, line: StripeInvoiceLine, link: _SubscriptionLink) -> str:
        if self.config.subscription_id is SubscriptionIdSource.ITEM:
            return link.item_id
        if link.subscription_id is None:
            raise MappingError(
                line.id, "parent.subscription_item_details.subscription", "no subscription id (subscription_id mode)"
            )
        return link.subscription_id

    def check_subscription_ids(self) -> None:
        """`subscription_id: subscription` is only correct when each Stripe subscription has one item at a time."""
        if self.config.subscription_id is not SubscriptionIdSource.SUBSCRIPTION:
            return
        for subscription_id, lines in sorted(self.lines_by_subscription.items()):
            items: dict[tuple[int, int], set[str]] = defaultdict(set)
            for line in lines:
                details = line.parent.subscription_item_details if line.parent else None
                if details is not None and not details.proration:
                    items[(line.period.start, line.period.end)].add(details.subscription_item)
            for period, item_ids in sorted(items.items()):
                if len(item_ids) > 1:
                    raise MappingError(
                        subscription_id,
                        "items",
                        f"bills {len(item_ids)} items for the period starting {ts(period[0]).isoformat()} "
                        f"({', '.join(sorted(item_ids))}); subscription_id 'subscription' needs single-item "
                        "subscriptions: use subscription_id 'item'",
                    )

    def discount_code(self, line: StripeInvoiceLine) -> str | None:
        """The coupon of the first discount that took an amount off the line and whose coupon is known.

        Stripe lists a line's own (item-level) discounts before the invoice's ("Line item discounts are applied
        before invoice discounts", stripe/_invoice_line_item.py); the exporter expands both. A discount whose
        coupon the snapshot does not show (an older export did not expand line discounts) gives way to the next
        one rather than leave the line without a code (docs/mapping-changelog.md 1.1.0).
        """
        for amount in line.discount_amounts:
            if amount.amount <= 0:
                continue
            discount = amount.discount
            # An unexpanded discount id finds its coupon among the expanded discounts elsewhere in the snapshot.
            coupon = self.view.coupons_by_discount.get(discount) if isinstance(discount, str) else discount.coupon
            if (code := expandable_id(coupon)) is not None:
                return code
        return None

    # ------------------------------------------------------------ transactions

    def transactions(self, invoice: StripeInvoice) -> list[Draft]:
        transitions = invoice.status_transitions
        found: list[Draft] = []
        paid_total = 0
        for payment in self.view.payments_by_invoice.get(invoice.id, []):
            if payment.status != "paid":
                continue  # open or canceled attempts: their failed charges record them
            amount = payment.amount_paid if payment.amount_paid is not None else payment.amount_requested
            paid_total += amount
            paid_at = payment.status_transitions.paid_at or payment.created or transitions.paid_at or invoice.created
            found.append(
                _transaction(payment.id, TransactionType.PAYMENT, TransactionResult.SUCCESSFUL, paid_at, amount)
            )
        for charge in self.view.failed_charges_by_invoice.get(invoice.id, []):
            found.append(
                _transaction(
                    charge.id, TransactionType.PAYMENT, TransactionResult.FAILED, charge.created, charge.amount
                )
            )
        if invoice.status == "paid" and invoice.amount_paid > paid_total:
            # Paid outside Stripe (`paid_out_of_band`) or a payment the snapshot lacks: Stripe's own total counts.
            found.append(
                _transaction(
                    f"{invoice.id}-paid",
                    TransactionType.PAYMENT,
                    TransactionResult.SUCCESSFUL,
                    transitions.paid_at or invoice.created,
                    invoice.amount_paid - paid_total,
                )
            )
        failed = any(t["result"] is TransactionResult.FAILED for t in found)
        if transitions.marked_uncollectible_at is not None and not failed:
            # Written off without a failed charge (sent invoices): the write-off is the failed attempt.
            found.append(
                _transaction(
                    f"{invoice.id}-uncollectible",
                    TransactionType.PAYMENT,
                    TransactionResult.FAILED,
                    transitions.marked_uncollectible_at,
                    max(invoice.total - paid_total, 0),
                )
            )
        refunds = self.refunds.get(invoice.id, [])
        check_refunds_within_payments(invoice.id, found, refunds)
        found += refunds
        return sorted(found, key=lambda t: (t["date"], t["type"].value, t["external_id"]))

    def refund_transactions(self) -> dict[str, list[Draft]]:
        refunds: dict[str, list[Draft]] = defaultdict(list)
        seen: set[str] = set()
        for refund in sorted(self.view.refunds, key=lambda r: r.id):
            seen.add(refund.id)
            invoice_id = self.refund_invoice(refund)
            if invoice_id is None:
                self.skip(refund.id, "refund of a payment not tied to any invoice of the snapshot")
                continue
            result = {"succeeded": TransactionResult.SUCCESSFUL, "failed": TransactionResult.FAILED}.get(
                refund.status or "succeeded"
            )
            if result is None:
                self.skip(refund.id, f"refund is {refund.status}: imported once it has succeeded")
                continue
            refunds[invoice_id].append(
                _transaction(refund.id, TransactionType.REFUND, result, refund.created, refund.amount)
            )
        for note in sorted(self.view.credit_notes, key=lambda n: n.id):
            self.credit_note(note, refunds, seen)
        return dict(refunds)

    def refund_invoice(self, refund: StripeRefund) -> str | None:
        intent = expandable_id(refund.payment_intent)
        if intent is not None and intent in self.view.invoice_by_payment_intent:
            return self.view.invoice_by_payment_intent[intent]
        return self.view.invoice_for_charge(expandable_id(refund.charge))

    def credit_note(self, note: StripeCreditNote, refunds: dict[str, list[Draft]], seen: set[str]) -> None:
        """Credit notes: their refunds are refunds; credit is cash-flow only (docs/mapping-decisions.md)."""
        if note.status == "void":
            self.skip(note.id, "void credit note")
            return
        invoice_id = expandable_id(note.invoice) or ""
        refunded = 0
        for entry in note.refunds:
            refunded += entry.amount_refunded
            refund_id = expandable_id(entry.refund)
            if refund_id is None or refund_id in seen:
                continue  # already imported from the refund itself: never counted twice
            seen.add(refund_id)
            refunds[invoice_id].append(
                _transaction(
                    refund_id, TransactionType.REFUND, TransactionResult.SUCCESSFUL, note.created, entry.amount_refunded
                )
            )
        if note.pre_payment_amount > 0:
            self.skip(
                note.id,
                f"pre-payment credit note of {note.pre_payment_amount}: lowers what is due on {invoice_id}; "
                "ChartMogul does not recognise credit-note credit, line items unchanged",
            )
        credited = note.post_payment_amount - refunded - (note.out_of_band_amount or 0)
        if credited > 0:
            self.skip(
                note.id,
                f"credit of {credited} to the customer balance: cash-flow only, ChartMogul does not recognise "
                "credit-note credit",
            )

    # ------------------------------------------------------------ cancellations

    def cancellations(self, invoiced: set[str]) -> list[Cancellation]:
        """When each ChartMogul subscription ended; only for subscriptions the bundle's invoices create."""
        cancellations = []
        for subscription_id in sorted(invoiced):
            stripe_subscription = self.view.subscriptions.get(self.stripe_subscription_of.get(subscription_id) or "")
            moment = self.cancelled_at(subscription_id, stripe_subscription)
            if moment is not None:
                # ChartMogul refuses cancellations in the future (docs/sources.md#cm-subscriptions)
                moment = min(moment, self.as_of)
                cancellations.append(
                    Cancellation(subscription_external_id=subscription_id, cancellation_dates=[moment])
                )
        return cancellations

    def cancelled_at(self, subscription_id: str, subscription: StripeSubscription | None) -> datetime | None:
        ended = self.subscription_end(subscription)
        if subscription is None or self.config.subscription_id is SubscriptionIdSource.SUBSCRIPTION:
            return ended
        if subscription_id in {item.id for item in subscription.items.data}:
            return ended
        # An item no longer on its subscription was removed before the end: it stops where its billing stops.
        removed = self.item_removed_at(self.lines_by_subscription[subscription_id])
        return min(removed, ended) if ended is not None else removed

    def subscription_end(self, subscription: StripeSubscription | None) -> datetime | None:
        if subscription is not None and subscription.status in ENDED_STATUSES and subscription.ended_at:
            # docs/sources.md#stripe-object-mapping Cancellations: `ended_at`, never `canceled_at` (the request time at
            # period end).
            return ts(subscription.ended_at)
        if subscription is not None and subscription.status == "unpaid" and self.config.unpaid is UnpaidHandling.CHURN:
            return self.unpaid_since(subscription)
        if self.view.deleted:
            # Stripe cancels a deleted customer's subscriptions; one the snapshot still shows active ends then.
            return ts(self.view.customer.deleted_at) if self.view.customer.deleted_at else self.as_of
        return None

    def unpaid_since(self, subscription: StripeSubscription) -> datetime | None:
        """When Stripe gave up collecting: the last failed attempt on the latest invoice, else its write-off."""
        invoice_id = expandable_id(subscription.latest_invoice)
        invoice = next((i for i in self.view.invoices if i.id == invoice_id), None)
        if invoice is None:
            return None
        attempts = [charge.created for charge in self.view.failed_charges_by_invoice.get(invoice.id, [])]
        transitions = invoice.status_transitions
        moment = max(attempts, default=None) or transitions.marked_uncollectible_at or transitions.finalized_at
        return ts(moment) if moment else ts(invoice.created)

    @staticmethod
    def item_removed_at(lines: Iterable[StripeInvoiceLine]) -> datetime:
        """A removed item's last billed moment: the start of its final credit proration, else its last period end."""
        last = max(lines, key=lambda line: (line.period.end, line.amount < 0, line.period.start))
        credit = last.amount < 0 and last.parent is not None
        return ts(last.period.start if credit else last.period.end)


def line_net_amount(line: StripeInvoiceLine) -> int:
    """What the customer is charged for a line: its amount, net of discounts, with exclusive tax added (inclusive
    tax is inside `amount` already; docs/sources.md#stripe-object-mapping)."""
    discount = sum(d.amount for d in line.discount_amounts)
    exclusive_tax = sum(t.amount for t in line.taxes if t.tax_behavior == "exclusive")
    return line.amount - discount + exclusive_tax


def check_lines_add_up(invoice: StripeInvoice) -> None:
    """An invoice's lines add up to its total; if they do not, a line is missing or altered, and importing the
    rest would record the wrong revenue (docs/mapping-decisions.md, "What is refused")."""
    lines_total = sum(line_net_amount(line) for line in invoice.lines.data)
    if lines_total != invoice.total:
        raise MappingError(
            invoice.id,
            "total",
            f"the invoice's {len(invoice.lines.data)} line(s) add up to {lines_total} (net of discounts, with "
            f"exclusive tax), but its total is {invoice.total}",
        )


def check_refunds_within_payments(invoice_id: str, payments: list[Draft], refunds: list[Draft]) -> None:
    """Money cannot leave an invoice that did not come in: refunds larger than the payments are refused."""
    paid = sum(
        t["amount_in_cents"]
        for t in payments
        if t["type"] is TransactionType.PAYMENT and t["result"] is TransactionResult.SUCCESSFUL
    )
    refunded = 0
    for refund in sorted(refunds, key=lambda t: (t["date"], t["external_id"])):
        if refund["result"] is not TransactionResult.SUCCESSFUL:
            continue
        refunded += refund["amount_in_cents"]
        if refunded > paid:
            raise MappingError(
                refund["external_id"],
                "amount",
                f"refunds of invoice {invoice_id} reach {refunded} with this one, more than the {paid} paid on it",
            )


def _transaction(
    external_id: str, kind: TransactionType, result: TransactionResult, seconds: int, amount: int
) -> Draft:
    return {"external_id": external_id, "type": kind, "result": result, "date": ts(seconds), "amount_in_cents": amount}


def _interval(price: StripePrice) -> tuple[IntervalUnit, int]:
    assert price.recurring is not None
    unit, count = price.recurring.interval, price.recurring.interval_count
    if unit == "week":
        # docs/sources.md#stripe-mrr-rules: "For a weekly plan, choose Day … 7"; ChartMogul has no week unit.
        return IntervalUnit.DAY, 7 * count
    if unit in ("day", "month", "year"):
        return IntervalUnit(unit), count
    raise MappingError(price.id, "recurring.interval", f"unknown billing interval {unit!r}")


_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off"})


def _attribute_value(customer_id: str, key: str, raw: str, kind: CustomAttributeType) -> str | int | float | bool:
    """A metadata value (always text in Stripe) as the configured attribute type."""
    text = raw.strip()
    try:
        if kind is CustomAttributeType.INTEGER:
            return int(text)
        if kind is CustomAttributeType.DECIMAL:
            return float(text)
        if kind is CustomAttributeType.BOOLEAN:
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError("expected true/false, yes/no, 1/0 or on/off")
        if kind is CustomAttributeType.TIMESTAMP:
            moment = datetime.fromtimestamp(int(text), UTC) if text.isdigit() else datetime.fromisoformat(text)
            if moment.tzinfo is None:
                raise ValueError("a timestamp needs a time zone (or Unix seconds)")
            return moment.astimezone(UTC).isoformat()
    except ValueError as error:
        raise MappingError(customer_id, f"metadata.{key}", f"{raw!r} is not a {kind.value}: {error}") from None
    # docs/sources.md#cm-customers: String attributes hold at most 255 characters; Stripe allows 500.
    return raw[:_STRING_ATTRIBUTE_MAX]
