"""Records → Stripe JSON, in the shapes of the API version stripe==16.1.0 pins (`2026-10-28.endive`).

Field lists follow the resource classes of the pinned package (`stripe/_invoice.py`, `_invoice_line_item.py`,
`_subscription.py`, ...). Post-basil shapes (docs/sources.md#stripe-versions): `invoice.parent.subscription_details`,
line `parent.{subscription_item_details|invoice_item_details}`, line `pricing.price_details`, `taxes[]`,
`discounts[]` with `discount.source.coupon`, per-item `current_period_*`, `invoice.payments` only when expanded.

Every renderer takes `at`: the instant to draw the object at. The API passes the emulator's clock; events pass
their own `created` (Stripe renders `event.data.object` as of the event).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from localdev.stripe_emulator import records as r
from localdev.stripe_emulator.store import StripeStore

API_VERSION = "2026-10-28.endive"
# Versions with the same shapes as the pinned one; any other Stripe-Version is refused (we cannot render it).
SUPPORTED_API_VERSIONS = frozenset({"2026-09-30.endive", API_VERSION})
EMBEDDED_LINES = 10  # Stripe embeds "the first handful" of invoice lines (docs/sources.md#stripe-lists)

Json = dict[str, Any]


def list_object(data: list[Json], url: str, has_more: bool = False) -> Json:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def _at_or_none(value: int | None, at: int) -> int | None:
    return value if value is not None and value <= at else None


def customer(store: StripeStore, c: r.Customer, at: int) -> Json:
    return {
        "id": c.id,
        "object": "customer",
        "address": {
            "city": None,
            "country": c.country,
            "line1": None,
            "line2": None,
            "postal_code": None,
            "state": None,
        },
        "balance": c.balance,
        "business_name": None,
        "created": c.created,
        "currency": c.currency,
        "customer_account": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": c.email,
        "individual_name": None,
        "invoice_credit_balance": {},
        "invoice_prefix": c.invoice_prefix,
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": store.livemode,
        "metadata": dict(c.metadata),
        "name": c.name,
        "next_invoice_sequence": 1,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def deleted_customer(c: r.Customer) -> Json:
    """What `GET /v1/customers/{id}` returns for a deleted customer."""
    return {"id": c.id, "object": "customer", "deleted": True}


def product(store: StripeStore, p: r.Product, at: int) -> Json:
    return {
        "id": p.id,
        "object": "product",
        "active": True,
        "created": p.created,
        "default_price": None,
        "description": None,
        "images": [],
        "livemode": store.livemode,
        "marketing_features": [],
        "metadata": {},
        "name": p.name,
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "type": "service",
        "unit_label": None,
        "updated": p.created,
        "url": None,
    }


def price(store: StripeStore, p: r.Price, at: int) -> Json:
    return {
        "id": p.id,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": p.created,
        "currency": p.currency,
        "custom_unit_amount": None,
        "livemode": store.livemode,
        "lookup_key": None,
        "metadata": {},
        "nickname": p.nickname,
        "product": p.product,
        "recurring": (
            {
                "interval": p.interval,
                "interval_count": p.interval_count,
                "meter": f"mtr_{p.id[6:]}" if p.usage_type == "metered" else None,
                "trial_period_days": None,
                "usage_type": p.usage_type,
            }
            if p.type == "recurring"
            else None
        ),
        "tax_behavior": p.tax_behavior,
        "tiers_mode": None,
        "transform_quantity": None,
        "type": p.type,
        "unit_amount": p.unit_amount,
        "unit_amount_decimal": str(p.unit_amount),
    }


def plan(store: StripeStore, p: r.Price) -> Json:
    """The legacy `plan` view of a recurring price that subscription items still carry."""
    return {
        "id": p.id,
        "object": "plan",
        "active": True,
        "amount": p.unit_amount,
        "amount_decimal": str(p.unit_amount),
        "billing_scheme": "per_unit",
        "created": p.created,
        "currency": p.currency,
        "interval": p.interval,
        "interval_count": p.interval_count,
        "livemode": store.livemode,
        "metadata": {},
        "meter": f"mtr_{p.id[6:]}" if p.usage_type == "metered" else None,
        "nickname": p.nickname,
        "product": p.product,
        "tiers_mode": None,
        "transform_usage": None,
        "trial_period_days": None,
        "usage_type": p.usage_type,
    }


def tax_rate(store: StripeStore, t: r.TaxRate, at: int) -> Json:
    return {
        "id": t.id,
        "object": "tax_rate",
        "active": True,
        "country": t.country,
        "created": t.created,
        "description": None,
        "display_name": t.display_name,
        "effective_percentage": t.percentage,
        "flat_amount": None,
        "inclusive": t.inclusive,
        "jurisdiction": t.country,
        "jurisdiction_level": "country",
        "livemode": store.livemode,
        "metadata": {},
        "percentage": t.percentage,
        "rate_type": "percentage",
        "state": None,
        "tax_type": "vat" if t.inclusive else "sales_tax",
    }


def coupon(store: StripeStore, c: r.Coupon, at: int) -> Json:
    return {
        "id": c.id,
        "object": "coupon",
        "amount_off": c.amount_off,
        "created": c.created,
        "currency": c.currency,
        "duration": c.duration,
        "duration_in_months": c.duration_in_months,
        "livemode": store.livemode,
        "max_redemptions": None,
        "metadata": {},
        "name": c.name,
        "percent_off": c.percent_off,
        "redeem_by": None,
        "times_redeemed": 0,
        "valid": True,
    }


def discount(store: StripeStore, d: r.Discount, at: int) -> Json:
    return {
        "id": d.id,
        "object": "discount",
        "checkout_session": None,
        "customer": d.customer,
        "customer_account": None,
        "end": d.end,
        "invoice": None,
        "invoice_item": None,
        "promotion_code": None,
        "source": {"coupon": d.coupon, "type": "coupon"},
        "start": d.start,
        "subscription": d.subscription,
        "subscription_item": d.subscription_item,
    }


def subscription_item(store: StripeStore, item: r.SubscriptionItem, at: int) -> Json:
    sub = store.subscriptions.get(item.subscription)
    assert sub is not None
    state = item.at(at)
    the_price = store.prices.get(state.price)
    assert the_price is not None
    period_start, period_end = sub.period_at(at)
    return {
        "id": item.id,
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": item.created,
        "current_period_end": period_end,
        "current_period_start": period_start,
        "discounts": _live_discounts(store, item.discounts, at),
        "metadata": {},
        "plan": plan(store, the_price),
        "price": price(store, the_price, at),
        "quantity": state.quantity,
        "subscription": item.subscription,
        "tax_rates": [],
    }


def _live_discounts(store: StripeStore, discount_ids: list[str], at: int) -> list[str]:
    """The discounts applied at `at`: started, not removed (a used `once` coupon), not ended (a repeating one)."""
    live = []
    for discount_id in discount_ids:
        d = store.discounts.get(discount_id)
        if d is None or d.start > at or (d.removed_at is not None and d.removed_at <= at):
            continue
        if d.end is not None and d.end <= at:
            continue
        live.append(discount_id)
    return live


def _live_items(store: StripeStore, sub: r.Subscription, at: int) -> list[r.SubscriptionItem]:
    found = []
    for item_id in sub.items:
        item = store.subscription_items.get(item_id)
        if item is None or item.created > at:
            continue
        if item.deleted_at is not None and item.deleted_at <= at:
            continue
        found.append(item)
    return found


def subscription(store: StripeStore, sub: r.Subscription, at: int) -> Json:
    status = sub.status_at(at)
    cancel_at_period_end = r.state_at(sub.cancel_at_period_end_changes, at, False)
    pause_behavior = r.state_at(sub.pause_collection_changes, at, None)
    ended_at = _at_or_none(sub.ended_at, at)
    period_end = sub.period_at(at)[1]
    live_discounts = _live_discounts(store, sub.discounts, at)
    items = [subscription_item(store, item, at) for item in _live_items(store, sub, at)]
    tax_rates = [store.tax_rates.get(rate_id) for rate_id in sub.default_tax_rates]
    return {
        "id": sub.id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor": sub.billing_cycle_anchor,
        "billing_cycle_anchor_config": None,
        "billing_mode": {"flexible": None, "type": "classic", "updated_at": None},
        "billing_thresholds": None,
        "cancel_at": period_end if cancel_at_period_end and ended_at is None else None,
        "cancel_at_period_end": cancel_at_period_end and ended_at is None,
        "canceled_at": _at_or_none(sub.canceled_at, at),
        "cancellation_details": {
            "comment": None,
            "feedback": None,
            "reason": sub.cancellation_reason if _at_or_none(sub.canceled_at, at) else None,
        },
        "collection_method": sub.collection_method,
        "created": sub.created,
        "currency": sub.currency,
        "customer": sub.customer,
        "customer_account": None,
        "days_until_due": sub.days_until_due,
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [tax_rate(store, t, at) for t in tax_rates if t is not None],
        "description": None,
        "discounts": live_discounts,
        "ended_at": ended_at,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": list_object(items, f"/v1/subscription_items?subscription={sub.id}"),
        "latest_invoice": r.state_at(sub.latest_invoice_changes, at, None),
        "livemode": store.livemode,
        "metadata": dict(sub.metadata),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": {"behavior": pause_behavior, "resumes_at": None} if pause_behavior else None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": sub.schedule,
        "start_date": sub.start_date,
        "status": status,
        "test_clock": None,
        "transfer_data": None,
        "trial_end": sub.trial_end,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": sub.trial_start,
    }


def _pricing(store: StripeStore, price_id: str) -> Json:
    the_price = store.prices.get(price_id)
    assert the_price is not None
    return {
        "price_details": {"price": price_id, "product": the_price.product},
        "type": "price_details",
        "unit_amount_decimal": str(the_price.unit_amount),
    }


def line_item(store: StripeStore, line: r.Line, at: int) -> Json:
    proration_details = {"credited_items": None}
    if line.invoice_item is not None:
        parent: Json = {
            "invoice_item_details": {
                "invoice_item": line.invoice_item,
                "proration": line.proration,
                "proration_details": proration_details,
                "subscription": line.subscription,
            },
            "subscription_item_details": None,
            "type": "invoice_item_details",
        }
    else:
        parent = {
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": None,
                "proration": line.proration,
                "proration_details": proration_details,
                "subscription": line.subscription,
                "subscription_item": line.subscription_item,
            },
            "type": "subscription_item_details",
        }
    return {
        "id": line.id,
        "object": "line_item",
        "amount": line.amount,
        "currency": line.currency,
        "description": line.description,
        "discount_amounts": [{"amount": amount, "discount": d} for d, amount in line.discount_amounts],
        "discountable": line.discountable,
        "discounts": list(line.discounts),
        "invoice": line.invoice,
        "livemode": store.livemode,
        "metadata": {},
        "parent": parent,
        "period": {"end": line.period_end, "start": line.period_start},
        "pretax_credit_amounts": [
            {"amount": amount, "credit_balance_transaction": None, "discount": d, "type": "discount"}
            for d, amount in line.discount_amounts
        ],
        "pricing": _pricing(store, line.price),
        "quantity": line.quantity,
        "quantity_decimal": str(line.quantity),
        "subscription": line.subscription,
        "subtotal": line.amount,
        "taxes": [_tax(t) for t in line.taxes],
    }


def _tax(t: r.TaxAmount) -> Json:
    return {
        "amount": t.amount,
        "tax_behavior": "inclusive" if t.inclusive else "exclusive",
        "tax_rate_details": {"tax_rate": t.tax_rate},
        "taxability_reason": "standard_rated",
        "taxable_amount": t.taxable_amount,
        "type": "tax_rate_details",
    }


def _credit_notes_by_type(store: StripeStore, inv: r.Invoice, at: int) -> dict[str, int]:
    amounts = {"pre_payment": 0, "post_payment": 0}
    for note_id in inv.credit_notes:
        note = store.credit_notes.get(note_id)
        if note is not None and note.created <= at:
            amounts[note.type] += note.amount
    return amounts


def invoice(store: StripeStore, inv: r.Invoice, at: int) -> Json:
    status = inv.status_at(at)
    finalized = status != "draft"
    credit = _credit_notes_by_type(store, inv, at)
    amount_due = inv.total - credit["pre_payment"]
    amount_paid = amount_due if status == "paid" else 0
    amount_remaining = 0 if status in ("paid", "void") else amount_due - amount_paid
    attempts = [t for t in inv.attempts if t <= at]
    the_customer = store.customers.get(inv.customer)
    assert the_customer is not None
    total_discounts: dict[str, int] = {}
    total_taxes: dict[tuple[str, bool], list[int]] = {}
    for line in inv.lines:
        for d, amount in line.discount_amounts:
            total_discounts[d] = total_discounts.get(d, 0) + amount
        for t in line.taxes:
            sums = total_taxes.setdefault((t.tax_rate, t.inclusive), [0, 0])
            sums[0] += t.amount
            sums[1] += t.taxable_amount
    lines = inv.lines[:EMBEDDED_LINES]
    hosted = f"https://invoice.stripe.com/i/acct_emulated/{inv.id}" if finalized else None
    return {
        "id": inv.id,
        "object": "invoice",
        "account_country": "US",
        "account_name": "Emulated SaaS Inc.",
        "account_tax_ids": None,
        "amount_due": amount_due,
        "amount_overpaid": 0,
        "amount_paid": amount_paid,
        "amount_paid_off_stripe": 0,
        "amount_remaining": amount_remaining,
        "amount_shipping": 0,
        "application": None,
        "attempt_count": len(attempts),
        "attempted": bool(attempts),
        "auto_advance": inv.auto_advance and status in ("draft", "open"),
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "automatically_finalizes_at": None,
        "billing_reason": inv.billing_reason,
        "collection_method": inv.collection_method,
        "confirmation_secret": None,
        "created": inv.created,
        "currency": inv.currency,
        "custom_fields": None,
        "customer": inv.customer,
        "customer_account": None,
        "customer_address": {
            "city": None,
            "country": the_customer.country,
            "line1": None,
            "line2": None,
            "postal_code": None,
            "state": None,
        },
        "customer_email": the_customer.email,
        "customer_name": the_customer.name,
        "customer_phone": None,
        "customer_shipping": None,
        "customer_tax_exempt": "none",
        "customer_tax_ids": [],
        "default_payment_method": None,
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": list(inv.discounts),
        "due_date": inv.due_date,
        "effective_at": _at_or_none(inv.finalized_at, at),
        "ending_balance": 0 if finalized else None,
        "footer": None,
        "from_invoice": None,
        "hosted_invoice_url": hosted,
        "invoice_pdf": f"{hosted}/pdf" if hosted else None,
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "latest_revision": None,
        "lines": list_object(
            [line_item(store, line, at) for line in lines],
            f"/v1/invoices/{inv.id}/lines",
            has_more=len(inv.lines) > EMBEDDED_LINES,
        ),
        "livemode": store.livemode,
        "metadata": {},
        "next_payment_attempt": None,
        "number": inv.number if finalized else None,
        "on_behalf_of": None,
        "parent": (
            {
                "quote_details": None,
                "subscription_details": {
                    "metadata": {},
                    "subscription": inv.subscription,
                    "subscription_proration_date": None,
                },
                "type": "subscription_details",
            }
            if inv.subscription is not None
            else None
        ),
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": inv.period_end,
        "period_start": inv.period_start,
        "post_payment_credit_notes_amount": credit["post_payment"],
        "pre_payment_credit_notes_amount": credit["pre_payment"],
        "receipt_number": None,
        "rendering": None,
        "shipping_cost": None,
        "shipping_details": None,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": status,
        "status_details": None,
        "status_transitions": {
            "finalized_at": _at_or_none(inv.finalized_at, at),
            "marked_uncollectible_at": _at_or_none(inv.marked_uncollectible_at, at),
            "paid_at": _at_or_none(inv.paid_at, at),
            "voided_at": _at_or_none(inv.voided_at, at),
        },
        "subtotal": inv.subtotal,
        "subtotal_excluding_tax": inv.subtotal - inv.inclusive_tax,
        "test_clock": None,
        "threshold_reason": None,
        "total": inv.total,
        "total_discount_amounts": [{"amount": a, "discount": d} for d, a in total_discounts.items()],
        "total_excluding_tax": inv.total - inv.exclusive_tax - inv.inclusive_tax,
        "total_pretax_credit_amounts": [
            {"amount": a, "credit_balance_transaction": None, "discount": d, "type": "discount"}
            for d, a in total_discounts.items()
        ],
        "total_taxes": [
            {
                "amount": amount,
                "tax_behavior": "inclusive" if inclusive else "exclusive",
                "tax_rate_details": {"tax_rate": rate},
                "taxability_reason": "standard_rated",
                "taxable_amount": taxable,
                "type": "tax_rate_details",
            }
            for (rate, inclusive), (amount, taxable) in total_taxes.items()
        ],
        "webhooks_delivered_at": inv.created,
    }


def invoice_item(store: StripeStore, item: r.InvoiceItem, at: int) -> Json:
    invoiced = item.invoice if item.invoice is not None else None
    return {
        "id": item.id,
        "object": "invoiceitem",
        "amount": item.amount,
        "currency": item.currency,
        "customer": item.customer,
        "customer_account": None,
        "date": item.created,
        "description": item.description,
        "discountable": not item.proration,
        "discounts": [],
        "invoice": invoiced,
        "livemode": store.livemode,
        "metadata": {},
        "net_amount": item.amount,
        "parent": (
            {
                "subscription_details": {
                    "subscription": item.subscription,
                    "subscription_item": item.subscription_item,
                },
                "type": "subscription_details",
            }
            if item.subscription is not None
            else None
        ),
        "period": {"end": item.period_end, "start": item.period_start},
        "pricing": _pricing(store, item.price),
        "proration": item.proration,
        "proration_details": {"credited_items": None},
        "quantity": item.quantity,
        "quantity_decimal": str(item.quantity),
        "tax_rates": [],
        "test_clock": None,
    }


def invoice_payment(store: StripeStore, p: r.InvoicePayment, at: int) -> Json:
    status = p.status_at(at)
    return {
        "id": p.id,
        "object": "invoice_payment",
        "amount_paid": p.amount_requested if status == "paid" else None,
        "amount_requested": p.amount_requested,
        "created": p.created,
        "currency": p.currency,
        "invoice": p.invoice,
        "is_default": True,
        "livemode": store.livemode,
        "payment": {"payment_intent": p.payment_intent, "type": "payment_intent"},
        "status": status,
        "status_transitions": {
            "canceled_at": _at_or_none(p.canceled_at, at),
            "paid_at": _at_or_none(p.paid_at, at),
        },
    }


def payment_intent(store: StripeStore, pi: r.PaymentIntent, at: int) -> Json:
    charges = [c for c in (store.charges.get(cid) for cid in pi.charges) if c is not None and c.created <= at]
    succeeded = pi.succeeded_at is not None and pi.succeeded_at <= at
    canceled = pi.canceled_at is not None and pi.canceled_at <= at
    last_failure = charges[-1] if charges and not charges[-1].succeeded and not succeeded else None
    if succeeded:
        status = "succeeded"
    elif canceled:
        status = "canceled"
    else:
        status = "requires_payment_method" if charges else "requires_confirmation"
    return {
        "id": pi.id,
        "object": "payment_intent",
        "amount": pi.amount,
        "amount_capturable": 0,
        "amount_received": pi.amount if succeeded else 0,
        "application": None,
        "automatic_payment_methods": None,
        "canceled_at": _at_or_none(pi.canceled_at, at),
        "cancellation_reason": "void_invoice" if canceled else None,
        "capture_method": "automatic",
        "client_secret": f"{pi.id}_secret_emulated",
        "confirmation_method": "automatic",
        "created": pi.created,
        "currency": pi.currency,
        "customer": pi.customer,
        "description": "Subscription payment",
        "last_payment_error": (
            {"code": "card_declined", "decline_code": last_failure.failure_code, "type": "card_error"}
            if last_failure is not None
            else None
        ),
        "latest_charge": charges[-1].id if charges else None,
        "livemode": store.livemode,
        "metadata": {},
        "next_action": None,
        "on_behalf_of": None,
        "payment_method": None,
        "payment_method_types": ["card"],
        "status": status,
    }


def charge(store: StripeStore, ch: r.Charge, at: int) -> Json:
    refunded = sum(ref.amount for ref in (store.refunds.get(rid) for rid in ch.refunds) if ref and ref.created <= at)
    return {
        "id": ch.id,
        "object": "charge",
        "amount": ch.amount,
        "amount_captured": ch.amount if ch.succeeded else 0,
        "amount_refunded": refunded,
        "application": None,
        "balance_transaction": None,
        "billing_details": {"address": None, "email": None, "name": None, "phone": None},
        "captured": ch.succeeded,
        "created": ch.created,
        "currency": ch.currency,
        "customer": ch.customer,
        "description": "Subscription payment",
        "disputed": False,
        "failure_code": "card_declined" if not ch.succeeded else None,
        "failure_message": "Your card was declined." if not ch.succeeded else None,
        "livemode": store.livemode,
        "metadata": {},
        "outcome": {
            "network_status": "approved_by_network" if ch.succeeded else "declined_by_network",
            "reason": None if ch.succeeded else ch.failure_code,
            "risk_level": "normal",
            "seller_message": "Payment complete." if ch.succeeded else "The bank did not return any message.",
            "type": "authorized" if ch.succeeded else "issuer_declined",
        },
        "paid": ch.succeeded,
        "payment_intent": ch.payment_intent,
        "payment_method": None,
        "receipt_url": None,
        "refunded": ch.succeeded and refunded == ch.amount,
        "status": "succeeded" if ch.succeeded else "failed",
    }


def refund(store: StripeStore, ref: r.Refund, at: int) -> Json:
    return {
        "id": ref.id,
        "object": "refund",
        "amount": ref.amount,
        "balance_transaction": None,
        "charge": ref.charge,
        "created": ref.created,
        "currency": ref.currency,
        "customer": ref.customer,
        "description": None,
        "metadata": {},
        "payment_intent": ref.payment_intent,
        "reason": ref.reason,
        "receipt_number": None,
        "source_transfer_reversal": None,
        "status": "succeeded",
        "transfer_reversal": None,
    }


def credit_note_line(store: StripeStore, line: r.CreditNoteLine) -> Json:
    return {
        "id": line.id,
        "object": "credit_note_line_item",
        "amount": line.amount,
        "description": line.description,
        "discount_amount": 0,
        "discount_amounts": [],
        "invoice_line_item": line.invoice_line_item,
        "livemode": store.livemode,
        "metadata": {},
        "pretax_credit_amounts": [],
        "quantity": line.quantity,
        "tax_rates": [],
        "taxes": [],
        "type": "invoice_line_item",
        "unit_amount": line.amount // max(line.quantity, 1),
        "unit_amount_decimal": str(line.amount // max(line.quantity, 1)),
    }


def credit_note(store: StripeStore, note: r.CreditNote, at: int) -> Json:
    amount = note.amount
    refunds = [{"amount_refunded": amount, "refund": note.refund, "type": "refund"}] if note.refund else []
    return {
        "id": note.id,
        "object": "credit_note",
        "amount": amount,
        "amount_shipping": 0,
        "created": note.created,
        "currency": note.currency,
        "customer": note.customer,
        "customer_account": None,
        "customer_balance_transaction": None,
        "discount_amount": 0,
        "discount_amounts": [],
        "effective_at": note.created,
        "invoice": note.invoice,
        "lines": list_object(
            [credit_note_line(store, line) for line in note.lines[:EMBEDDED_LINES]],
            f"/v1/credit_notes/{note.id}/lines",
            has_more=len(note.lines) > EMBEDDED_LINES,
        ),
        "livemode": store.livemode,
        "memo": note.memo,
        "metadata": {},
        "number": note.number,
        "out_of_band_amount": None,
        "pdf": f"https://pay.stripe.com/credit_notes/acct_emulated/{note.id}/pdf",
        "post_payment_amount": amount if note.type == "post_payment" else 0,
        "pre_payment_amount": amount if note.type == "pre_payment" else 0,
        "pretax_credit_amounts": [],
        "reason": note.reason,
        "refunds": refunds,
        "shipping_cost": None,
        "status": "issued",
        "subtotal": amount,
        "subtotal_excluding_tax": amount,
        "total": amount,
        "total_excluding_tax": amount,
        "total_taxes": [],
        "type": note.type,
        "voided_at": None,
    }


def subscription_schedule(store: StripeStore, s: r.SubscriptionSchedule, at: int) -> Json:
    released = s.released_at is not None and s.released_at <= at
    current = None
    if not released:
        for phase in s.phases:
            if phase.start <= at and (phase.end is None or at < phase.end):
                current = {"end_date": phase.end, "start_date": phase.start}
    the_sub = store.subscriptions.get(s.subscription)
    currency = the_sub.currency if the_sub else "usd"
    return {
        "id": s.id,
        "object": "subscription_schedule",
        "application": None,
        "billing_mode": {"flexible": None, "type": "classic", "updated_at": None},
        "canceled_at": None,
        "completed_at": None,
        "created": s.created,
        "current_phase": current,
        "customer": s.customer,
        "customer_account": None,
        "default_settings": {
            "application_fee_percent": None,
            "billing_cycle_anchor": "automatic",
            "collection_method": "charge_automatically",
            "default_payment_method": None,
            "description": None,
            "invoice_settings": {"account_tax_ids": None, "days_until_due": None, "issuer": {"type": "self"}},
            "on_behalf_of": None,
            "transfer_data": None,
        },
        "end_behavior": "release",
        "livemode": store.livemode,
        "metadata": {},
        "phases": [
            {
                "add_invoice_items": [],
                "application_fee_percent": None,
                "billing_cycle_anchor": None,
                "collection_method": None,
                "currency": currency,
                "default_payment_method": None,
                "default_tax_rates": [],
                "description": None,
                "discounts": [],
                "end_date": phase.end,
                "invoice_settings": None,
                "items": [
                    {
                        "billing_thresholds": None,
                        "discounts": [],
                        "metadata": {},
                        "plan": price_id,
                        "price": price_id,
                        "quantity": quantity,
                        "tax_rates": [],
                    }
                    for price_id, quantity in phase.items
                ],
                "metadata": {},
                "on_behalf_of": None,
                "proration_behavior": "create_prorations",
                "start_date": phase.start,
                "transfer_data": None,
                "trial_end": None,
            }
            for phase in s.phases
        ],
        "released_at": _at_or_none(s.released_at, at),
        "released_subscription": s.subscription if released else None,
        "status": "released" if released else "active",
        "subscription": s.subscription,
        "test_clock": None,
    }


def event(store: StripeStore, e: r.Event, at: int) -> Json:
    target = store.collection(e.resource).get(e.object_id)
    assert target is not None, f"event {e.id} refers to a missing {e.resource} {e.object_id}"
    data: Json = {"object": render(store, e.resource, target, e.created)}
    if e.previous_attributes is not None:
        data["previous_attributes"] = e.previous_attributes
    return {
        "id": e.id,
        "object": "event",
        "api_version": API_VERSION,
        "created": e.created,
        "data": data,
        "livemode": store.livemode,
        "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": None},
        "type": e.type,
    }


RENDERERS: dict[str, Callable[[StripeStore, Any, int], Json]] = {
    "customers": customer,
    "products": product,
    "prices": price,
    "tax_rates": tax_rate,
    "coupons": coupon,
    "discounts": discount,
    "subscriptions": subscription,
    "subscription_items": subscription_item,
    "subscription_schedules": subscription_schedule,
    "invoices": invoice,
    "invoiceitems": invoice_item,
    "invoice_payments": invoice_payment,
    "payment_intents": payment_intent,
    "charges": charge,
    "refunds": refund,
    "credit_notes": credit_note,
    "events": event,
}


def render(store: StripeStore, resource: str, record: Any, at: int) -> Json:
    return RENDERERS[resource](store, record, at)
