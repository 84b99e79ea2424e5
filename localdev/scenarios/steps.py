"""Scenario steps: "after the backfill, these customers change", for incremental-sync tests and the demo.

A step is a JSON object (the emulator's `POST /_admin/scenario-steps` takes the same):

    {"kind": "advance", "days": 3}                       move the clock; renewals and retries happen
    {"kind": "upgrade", "customer": "cus_..."}           next plan up, prorations invoiced at once
    {"kind": "downgrade", "customer": "cus_..."}         next plan down, prorations on the next invoice
    {"kind": "change_quantity", "customer": "cus_...", "quantity": 7}
    {"kind": "cancel", "customer": "cus_..."}            cancel now
    {"kind": "cancel_at_period_end", "customer": "cus_..."}
    {"kind": "refund", "customer": "cus_...", "share": 0.5}        of the latest paid invoice (default 1.0)
    {"kind": "credit_note", "customer": "cus_...", "share": 0.25}  post-payment, refunded to the card
    {"kind": "pause_collection", "customer": "cus_..."} / {"kind": "resume_collection", ...}
    {"kind": "delete_customer", "customer": "cus_..."}
    {"kind": "new_customer", "plan": "Pro", "interval": "monthly", "currency": "usd"}

Each change happens at the emulator's clock and emits Stripe's events; the clock then moves on by
`SETTLE_SECONDS` so that what the change triggers at once (an invoice finalized and paid) has happened. The
answer lists the new events and the customer touched; the ground truth follows (it is recomputed from the
ledger).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from localdev.scenarios.engine import CustomerBiller, SubscriptionBiller
from localdev.stripe_emulator import records as r

if TYPE_CHECKING:
    from localdev.scenarios.generator import Account

PLAN_ORDER = ("Starter", "Pro", "Business")
SETTLE_SECONDS = 10
STEP_KINDS = (
    "advance",
    "upgrade",
    "downgrade",
    "change_quantity",
    "cancel",
    "cancel_at_period_end",
    "refund",
    "credit_note",
    "pause_collection",
    "resume_collection",
    "delete_customer",
    "new_customer",
)


def apply(account: Account, step: dict[str, Any]) -> dict[str, Any]:
    kind = step.get("kind")
    if kind not in STEP_KINDS:
        raise ValueError(f"unknown step kind {kind!r}; known: {', '.join(STEP_KINDS)}")
    store = account.store
    events_before = len(store.events)
    at = store.now
    customer_id = step.get("customer")
    if kind == "advance":
        seconds = int(step.get("seconds", 0)) + int(step.get("days", 0)) * 86_400
        if seconds <= 0:
            raise ValueError("advance needs a positive `days` or `seconds`")
        account.advance_to(at + seconds)
    elif kind == "new_customer":
        customer_id = _new_customer(account, step, at)
    else:
        biller = _biller(account, customer_id)
        if kind == "delete_customer":
            if biller.customer.deleted_at is not None:
                raise ValueError(f"customer {customer_id} is already deleted")
            biller.delete(at)
        else:
            _change_subscription(account, kind, _live_subscription(biller), step, at)
    if kind != "advance":
        # A change's immediate consequences take a few simulated seconds (the invoice it issues is finalized
        # a second later and charged two seconds after that): let them happen before answering.
        account.advance_to(at + SETTLE_SECONDS)
    new_events = store.events.added_since(events_before)
    return {
        "kind": kind,
        "customer": customer_id,
        "at": at,
        "now": store.now,
        "events": [{"id": e.id, "type": e.type} for e in new_events if isinstance(e, r.Event)],
    }


def _biller(account: Account, customer_id: Any) -> CustomerBiller:
    if not isinstance(customer_id, str) or customer_id not in account.sim.billers:
        raise KeyError(f"no such customer: {customer_id!r}")
    return account.sim.billers[customer_id]


def _live_subscription(biller: CustomerBiller) -> SubscriptionBiller:
    for sub in reversed(biller.subscriptions):
        if not sub.ended:
            return sub
    raise ValueError(f"customer {biller.customer.id} has no live subscription")


def _plan_key(account: Account, price_id: str) -> tuple[str, str, str] | None:
    for key, price in account.catalog.plan_prices.items():
        if price.id == price_id:
            return key
    return None


def _change_subscription(account: Account, kind: str, sub: SubscriptionBiller, step: dict[str, Any], at: int) -> None:
    if kind in ("upgrade", "downgrade"):
        key = _plan_key(account, sub.items[0].history[-1].price)
        if key is None:
            raise ValueError("only plan subscriptions (Starter/Pro/Business) can be upgraded or downgraded")
        name, interval, currency = key
        position = PLAN_ORDER.index(name) + (1 if kind == "upgrade" else -1)
        if not 0 <= position < len(PLAN_ORDER):
            raise ValueError(f"no plan to {kind} to from {name}")
        target = account.catalog.plan(PLAN_ORDER[position], interval, currency)
        if kind == "upgrade":
            sub.change_item(at, 0, price=target, proration="always_invoice")
        else:
            sub.change_item(at, 0, price=target, proration="create_prorations")
    elif kind == "change_quantity":
        quantity = int(step.get("quantity", 0))
        if quantity < 1:
            raise ValueError("change_quantity needs a `quantity` of at least 1")
        sub.change_item(at, int(step.get("item", 0)), quantity=quantity)
    elif kind == "cancel":
        sub.cancel_now(at)
    elif kind == "cancel_at_period_end":
        sub.cancel_at_period_end(at)
    elif kind == "refund":
        sub.refund_latest(at, float(step.get("share", 1.0)))
    elif kind == "credit_note":
        sub.credit_latest(at, float(step.get("share", 0.5)))
    elif kind == "pause_collection":
        sub.pause_collection(at, str(step.get("behavior", "keep_as_draft")))
    elif kind == "resume_collection":
        sub.resume_collection(at)


def _new_customer(account: Account, step: dict[str, Any], at: int) -> str:
    currency = str(step.get("currency", "usd"))
    price = account.catalog.plan(str(step.get("plan", "Pro")), str(step.get("interval", "monthly")), currency)
    sim = account.sim
    index = len(sim.billers)
    rng = random.Random(f"step-customer/{account.spec.seed}/{index}")
    customer = r.Customer(
        id=sim.ids.new("cus"),
        created=at,
        name=f"Step Customer {index}",
        email=f"step.customer.{index}@example.com",
        country={"usd": "US", "eur": "DE", "gbp": "GB", "cad": "CA", "aud": "AU"}[currency],
        invoice_prefix=f"STEP{index % 10_000:04d}",
        metadata={"profile": "step_new_customer"},
    )
    biller = CustomerBiller(sim, customer, rng, ["step_new_customer"])
    account.scenarios[customer.id] = ["step_new_customer"]
    biller.subscribe(at, [(price, 1)])
    return customer.id
