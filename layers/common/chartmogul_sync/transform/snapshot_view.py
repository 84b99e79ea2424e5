"""A customer snapshot parsed into typed Stripe views, with the indexes the mapping looks things up in.

Parsing is where malformed input is caught: each object is parsed on its own, so an error names the object's id
and the field (`in_123: lines.data.0.period: Field required`) instead of a position in a list.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from ..models.common import MAX_UNIX_SECONDS
from ..models.snapshot import CustomerSnapshot
from ..models.stripe import (
    StripeCharge,
    StripeCoupon,
    StripeCreditNote,
    StripeCustomer,
    StripeDiscount,
    StripeInvoice,
    StripeInvoiceItem,
    StripeInvoicePayment,
    StripePrice,
    StripeProduct,
    StripeRefund,
    StripeSubscription,
    expandable_id,
)
from .errors import MappingError

View = TypeVar("View", bound=BaseModel)


def parse_object(model: type[View], raw: dict[str, Any]) -> View:
    """One Stripe object as a typed view; a validation error becomes a MappingError naming the object."""
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        location = ".".join(str(part) for part in problem["loc"]) or "(object)"
        more = f" (and {error.error_count() - 1} more problems)" if error.error_count() > 1 else ""
        raise MappingError(str(raw.get("id", "?")), location, f"{_explain(problem)}{more}") from None


def _explain(problem: Any) -> str:
    """pydantic's message, with the rule behind it where the bare message would puzzle a user."""
    bound = (problem.get("ctx") or {}).get("lt")
    if problem["type"] == "less_than" and bound == MAX_UNIX_SECONDS:
        return f"{problem['input']} is not a plausible Unix time in seconds (after 2100: milliseconds?)"
    if problem["type"] == "int_type" and isinstance(problem["input"], bool | float | str):
        return f"{problem['input']!r} is not an integer (Stripe sends amounts, counts and times as JSON integers)"
    return str(problem["msg"])


@cache
def _list_adapter(model: type[View]) -> TypeAdapter[list[View]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def _parse_all(model: type[View], raws: Iterable[dict[str, Any]]) -> list[View]:
    """Every object of one list. One validator call for the list (the transform's hot path: most of its time is
    pydantic); only if that fails are the objects parsed one by one, so the error names the object."""
    raws = list(raws)
    try:
        return _list_adapter(model).validate_python(raws)
    except ValidationError:
        return [parse_object(model, raw) for raw in raws]


@dataclass(frozen=True)
class SnapshotView:
    customer: StripeCustomer
    deleted: bool
    subscriptions: dict[str, StripeSubscription]
    invoices: list[StripeInvoice]
    invoice_items: dict[str, StripeInvoiceItem]
    charges: list[StripeCharge]
    refunds: list[StripeRefund]
    credit_notes: list[StripeCreditNote]
    prices: dict[str, StripePrice]
    products: dict[str, StripeProduct]
    # Invoice payments by invoice id, from the snapshot's list and from `invoice.payments` when expanded.
    payments_by_invoice: dict[str, list[StripeInvoicePayment]] = field(default_factory=dict)
    # Which invoice a payment intent or a charge paid (basil removed `charge.invoice`, docs/sources.md#stripe-versions).
    invoice_by_payment_intent: dict[str, str] = field(default_factory=dict)
    invoice_by_charge: dict[str, str] = field(default_factory=dict)
    charges_by_id: dict[str, StripeCharge] = field(default_factory=dict)
    # Failed payment attempts by the invoice they tried to pay, oldest first.
    failed_charges_by_invoice: dict[str, list[StripeCharge]] = field(default_factory=dict)
    coupons_by_discount: dict[str, StripeCoupon | str] = field(default_factory=dict)

    def invoice_for_charge(self, charge_id: str | None) -> str | None:
        if charge_id is None:
            return None
        if charge_id in self.invoice_by_charge:
            return self.invoice_by_charge[charge_id]
        charge = self.charges_by_id.get(charge_id)
        return self.invoice_by_payment_intent.get(expandable_id(charge.payment_intent) or "") if charge else None


def parse_snapshot(snapshot: CustomerSnapshot) -> SnapshotView:
    customer = parse_object(StripeCustomer, snapshot.customer)
    subscriptions = _parse_all(StripeSubscription, snapshot.subscriptions)
    invoices = _parse_all(StripeInvoice, snapshot.invoices)
    payments = _parse_all(StripeInvoicePayment, snapshot.invoice_payments)
    charges = _parse_all(StripeCharge, snapshot.charges)
    prices = _parse_all(StripePrice, snapshot.prices)

    payments_by_id = {payment.id: payment for payment in payments}
    for invoice in invoices:
        for payment in invoice.payments.data if invoice.payments else []:
            payments_by_id.setdefault(payment.id, payment)
    payments_by_invoice: dict[str, list[StripeInvoicePayment]] = defaultdict(list)
    invoice_by_payment_intent: dict[str, str] = {}
    invoice_by_charge: dict[str, str] = {}
    for payment in sorted(payments_by_id.values(), key=lambda p: p.id):
        invoice_id = expandable_id(payment.invoice) or ""
        payments_by_invoice[invoice_id].append(payment)
        if (intent := expandable_id(payment.payment.payment_intent)) is not None:
            invoice_by_payment_intent[intent] = invoice_id
        if (charge := expandable_id(payment.payment.charge)) is not None:
            invoice_by_charge[charge] = invoice_id

    # Prices come from the snapshot's list, and are also embedded in subscription items and expanded lines.
    prices_by_id = {price.id: price for price in prices}
    for subscription in subscriptions:
        for item in subscription.items.data:
            prices_by_id.setdefault(item.price.id, item.price)
    products_by_id = {product.id: product for product in _parse_all(StripeProduct, snapshot.products)}
    for price in list(prices_by_id.values()):
        if isinstance(price.product, StripeProduct):
            products_by_id.setdefault(price.product.id, price.product)
    coupons_by_discount: dict[str, StripeCoupon | str] = {}
    for invoice in invoices:
        for line in invoice.lines.data:
            details = line.pricing.price_details if line.pricing else None
            if details is not None and isinstance(details.price, StripePrice):
                prices_by_id.setdefault(details.price.id, details.price)
            if line.discount_amounts:
                _index_discounts(coupons_by_discount, line.discounts)
                _index_discounts(coupons_by_discount, (amount.discount for amount in line.discount_amounts))
        _index_discounts(coupons_by_discount, invoice.discounts)

    view = SnapshotView(
        customer=customer,
        deleted=snapshot.deleted or customer.deleted,
        subscriptions={subscription.id: subscription for subscription in subscriptions},
        invoices=invoices,
        invoice_items={item.id: item for item in _parse_all(StripeInvoiceItem, snapshot.invoice_items)},
        charges=charges,
        refunds=_parse_all(StripeRefund, snapshot.refunds),
        credit_notes=_parse_all(StripeCreditNote, snapshot.credit_notes),
        prices=prices_by_id,
        products=products_by_id,
        payments_by_invoice=dict(payments_by_invoice),
        invoice_by_payment_intent=invoice_by_payment_intent,
        invoice_by_charge=invoice_by_charge,
        charges_by_id={charge.id: charge for charge in charges},
        coupons_by_discount=coupons_by_discount,
    )
    _check_owner(view)
    for attempt in sorted(charges, key=lambda c: (c.created, c.id)):
        if attempt.status == "failed" and (paid_invoice := view.invoice_for_charge(attempt.id)) is not None:
            view.failed_charges_by_invoice.setdefault(paid_invoice, []).append(attempt)
    return view


def _index_discounts(index: dict[str, StripeCoupon | str], discounts: Iterable[str | StripeDiscount]) -> None:
    for discount in discounts:
        if isinstance(discount, StripeDiscount) and discount.coupon is not None:
            index.setdefault(discount.id, discount.coupon)


def _check_owner(view: SnapshotView) -> None:
    """Every object that names its customer names the snapshot's: another customer's invoice would be imported as
    this customer's revenue (docs/mapping-decisions.md, "What is refused")."""
    owned: list[Iterable[Any]] = [
        view.subscriptions.values(),
        view.invoices,
        view.invoice_items.values(),
        view.charges,
        view.credit_notes,
    ]
    for objects in owned:
        for obj in objects:
            owner = expandable_id(obj.customer)
            if owner is not None and owner != view.customer.id:
                raise MappingError(
                    obj.id, "customer", f"belongs to customer {owner}, not to the snapshot's {view.customer.id}"
                )
