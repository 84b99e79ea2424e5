"""Customer profiles: one per case of docs/sources.md#stripe-scenarios, each a small script on the billing simulation.

A profile subscribes the customer and schedules what later happens to it (an upgrade in the middle of the
second period, a refund, a cancellation...). Times are relative to the customer's start and to the account's
"now", so the same profile works in any window long enough for it (`MIN_MONTHS`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from localdev.scenarios.calendar import DAY, add_months
from localdev.scenarios.catalog import Catalog
from localdev.scenarios.engine import CustomerBiller, Simulation, SubscriptionBiller
from localdev.stripe_emulator import records as r


@dataclass
class Context:
    sim: Simulation
    catalog: Catalog
    biller: CustomerBiller
    rng: random.Random
    start: int
    now: int
    currency: str

    def plan(self, name: str, interval: str = "monthly") -> r.Price:
        return self.catalog.plan(name, interval, self.currency)

    def any_plan(self) -> str:
        return self.rng.choice(("Starter", "Pro", "Business"))

    def subscribe(self, items: list[tuple[r.Price, int | None]], **options: object) -> SubscriptionBiller:
        return self.biller.subscribe(self.start, items, **options)  # type: ignore[arg-type]

    def in_period(self, sub: SubscriptionBiller, n: int, action: Callable[[int], None]) -> None:
        """Run `action` in the middle of billing period `n` (0 = the first one after the anchor)."""
        self.sim.at(sub.middle_of_period(n), action)


Profile = Callable[[Context], None]


def monthly(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan(ctx.any_plan()), 1)])


def weekly(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan(ctx.any_plan(), "weekly"), 1)])


def quarterly(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan(ctx.any_plan(), "quarterly"), 1)])


def yearly(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan(ctx.any_plan(), "yearly"), 1)])


def trial_converted(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan("Pro"), 1)], trial_days=14)


def trial_paused(ctx: Context) -> None:
    """Trial ends without a payment method: Stripe sets `status=paused` and stops invoicing."""
    ctx.subscribe([(ctx.plan("Pro"), 1)], trial_days=14, trial_ends_paused=True)


def upgrade_prorated(ctx: Context) -> None:
    sub = ctx.subscribe([(ctx.plan("Starter"), 1)])
    ctx.in_period(sub, 1, lambda at: sub.change_item(at, 0, price=ctx.plan("Pro"), proration="always_invoice"))


def downgrade_prorated(ctx: Context) -> None:
    sub = ctx.subscribe([(ctx.plan("Business"), 1)])
    ctx.in_period(sub, 1, lambda at: sub.change_item(at, 0, price=ctx.plan("Pro"), proration="create_prorations"))


def seat_change(ctx: Context) -> None:
    seats = ctx.catalog.seat_prices[("monthly", ctx.currency)]
    sub = ctx.subscribe([(seats, 5)])
    ctx.in_period(sub, 1, lambda at: sub.change_item(at, 0, quantity=8))
    ctx.in_period(sub, 4, lambda at: sub.change_item(at, 0, quantity=6))


def coupon_once(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan("Pro"), 1)], coupon="ONCE20")


def coupon_repeating(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan("Pro"), 1)], coupon="REPEAT25X3")


def coupon_forever(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan("Business"), 1)], coupon="FOREVER10")


def coupon_100(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan("Pro"), 1)], coupon="FREE100")


def paying_then_free(ctx: Context) -> None:
    """A paying customer moved to a 100 % coupon: still a customer, at $0 (ChartMogul's free-customer handling)."""
    sub = ctx.subscribe([(ctx.plan("Pro"), 1)])
    ctx.in_period(sub, 2, lambda at: sub.apply_coupon(at, "FREE100"))


def coupon_amount_off(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan("Starter"), 1)], coupon="WELCOME5")


def tax_inclusive(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan(ctx.any_plan()), 1)], tax_rate=ctx.catalog.tax_rates["vat"].id)


def tax_exclusive(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan(ctx.any_plan()), 1)], tax_rate=ctx.catalog.tax_rates["sales_tax"].id)


def metered(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan("Pro"), 1), (ctx.catalog.metered_prices[ctx.currency], None)])


def multi_item(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan("Pro"), 1), (ctx.catalog.seat_prices[("monthly", ctx.currency)], 3)])


def coupon_item_level(ctx: Context) -> None:
    """A coupon on one item of a two-item subscription, not on the subscription: the item's invoice lines name it
    in their own `discounts` and the invoice's `discounts` stay empty (stripe/_subscription_item.py `discounts`)."""
    seats = ctx.catalog.seat_prices[("monthly", ctx.currency)]
    ctx.subscribe([(ctx.plan("Pro"), 1), (seats, 3)], item_coupons={1: "FOREVER10"})


def many_add_ons(ctx: Context) -> None:
    """A plan with eleven add-ons: twelve lines per invoice, more than the ten an invoice object embeds."""
    add_ons = [(price, 1) for (_, currency), price in ctx.catalog.add_on_prices.items() if currency == ctx.currency]
    ctx.subscribe([(ctx.plan("Business"), 1), *add_ons])


def open_then_paid(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan(ctx.any_plan()), 1)], send_invoice_days=14)


def void(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan("Pro"), 1)], send_invoice_days=14, outcomes={3: "send_void"})


def uncollectible(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan("Pro"), 1)], outcomes={3: "uncollectible"})


def failed_then_paid(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan(ctx.any_plan()), 1)], outcomes={2: "fail_then_pay"})


def unpaid(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan("Starter"), 1)], outcomes={4: "unpaid"})


def refund_partial(ctx: Context) -> None:
    sub = ctx.subscribe([(ctx.plan("Pro"), 1)])
    ctx.in_period(sub, 1, lambda at: sub.refund_latest(at, 0.3))


def refund_full(ctx: Context) -> None:
    sub = ctx.subscribe([(ctx.plan("Pro"), 1)])

    def refund_and_cancel(at: int) -> None:
        sub.refund_latest(at, 1.0)
        sub.cancel_now(at)

    ctx.in_period(sub, 2, refund_and_cancel)


def credit_note_pre_payment(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan("Business"), 1)], send_invoice_days=14, outcomes={2: "send_credit_then_pay"})


def credit_note_post_payment(ctx: Context) -> None:
    sub = ctx.subscribe([(ctx.plan("Business"), 1)])
    ctx.in_period(sub, 1, lambda at: sub.credit_latest(at, 0.5))


def cancel_now(ctx: Context) -> None:
    sub = ctx.subscribe([(ctx.plan(ctx.any_plan()), 1)])
    ctx.in_period(sub, 3, lambda at: sub.cancel_now(at))


def cancel_at_period_end(ctx: Context) -> None:
    sub = ctx.subscribe([(ctx.plan(ctx.any_plan()), 1)])
    ctx.in_period(sub, 2, lambda at: sub.cancel_at_period_end(at))


def cancel_pending(ctx: Context) -> None:
    """A yearly subscription whose cancellation at period end is requested but not yet effective at "now"."""
    sub = ctx.subscribe([(ctx.plan("Pro", "yearly"), 1)])
    ctx.sim.at(ctx.now - 20 * DAY, sub.cancel_at_period_end)


def pause_collection(ctx: Context) -> None:
    sub = ctx.subscribe([(ctx.plan("Pro"), 1)])
    ctx.in_period(sub, 1, lambda at: sub.pause_collection(at, "keep_as_draft"))
    ctx.in_period(sub, 3, sub.resume_collection)


def multi_currency(ctx: Context) -> None:
    """Billed in EUR, cancelled, then subscribed again in USD (docs/sources.md#stripe-object-mapping: several currencies
    per customer)."""
    ctx.currency = "eur"
    first = ctx.subscribe([(ctx.plan("Starter"), 1)])
    restart = add_months(first.boundary(3), 1)

    def switch(at: int) -> None:
        ctx.biller.subscribe(at, [(ctx.catalog.plan("Pro", "monthly", "usd"), 1)])

    ctx.in_period(first, 2, first.cancel_now)
    ctx.sim.at(restart, switch)


def deleted_customer(ctx: Context) -> None:
    sub = ctx.subscribe([(ctx.plan(ctx.any_plan()), 1)])
    ctx.in_period(sub, 4, ctx.biller.delete)


def deleted_customer_recent(ctx: Context) -> None:
    """Deleted ten days before "now", so its `customer.deleted` event is still in the 30-day window."""
    ctx.subscribe([(ctx.plan(ctx.any_plan()), 1)])
    ctx.sim.at(ctx.now - 10 * DAY, ctx.biller.delete)


def subscription_schedule(ctx: Context) -> None:
    """Three months of Starter, then three of Pro, then the schedule releases the subscription."""
    starter, pro = ctx.plan("Starter"), ctx.plan("Pro")
    ctx.subscribe([(starter, 1)], schedule=[(3, [(starter, 1)]), (3, [(pro, 1)])])


def one_time_fee(ctx: Context) -> None:
    ctx.subscribe([(ctx.plan(ctx.any_plan()), 1)], one_time_fees=[ctx.catalog.setup_fees[ctx.currency]])


def lead_only(ctx: Context) -> None:
    """A customer that never subscribes (a ChartMogul lead)."""


def reactivation(ctx: Context) -> None:
    sub = ctx.subscribe([(ctx.plan("Starter"), 1)])
    ctx.in_period(sub, 1, sub.cancel_now)

    def come_back(at: int) -> None:
        ctx.biller.subscribe(at, [(ctx.plan("Pro"), 1)])

    ctx.sim.at(add_months(sub.boundary(2), 2), come_back)


# name -> (profile, the currency it needs or None for any, the customer's weight in a random mix)
PROFILES: dict[str, tuple[Profile, str | None, int]] = {
    "monthly": (monthly, None, 30),
    "weekly": (weekly, "cad", 2),
    "quarterly": (quarterly, "aud", 4),
    "yearly": (yearly, "gbp", 6),
    "trial_converted": (trial_converted, None, 8),
    "trial_paused": (trial_paused, None, 1),
    "upgrade_prorated": (upgrade_prorated, None, 3),
    "downgrade_prorated": (downgrade_prorated, None, 2),
    "seat_change": (seat_change, None, 3),
    "coupon_once": (coupon_once, None, 2),
    "coupon_repeating": (coupon_repeating, None, 2),
    "coupon_forever": (coupon_forever, None, 2),
    "coupon_100": (coupon_100, None, 1),
    "paying_then_free": (paying_then_free, None, 1),
    "coupon_amount_off": (coupon_amount_off, "usd", 1),
    "tax_inclusive": (tax_inclusive, "eur", 3),
    "tax_exclusive": (tax_exclusive, "usd", 3),
    "metered": (metered, None, 3),
    "multi_item": (multi_item, None, 3),
    "many_add_ons": (many_add_ons, None, 1),
    "open_then_paid": (open_then_paid, None, 3),
    "void": (void, None, 1),
    "uncollectible": (uncollectible, None, 1),
    "failed_then_paid": (failed_then_paid, None, 3),
    "unpaid": (unpaid, None, 1),
    "refund_partial": (refund_partial, None, 1),
    "refund_full": (refund_full, None, 1),
    "credit_note_pre_payment": (credit_note_pre_payment, "usd", 1),
    "credit_note_post_payment": (credit_note_post_payment, "usd", 1),
    "cancel_now": (cancel_now, None, 6),
    "cancel_at_period_end": (cancel_at_period_end, None, 5),
    "cancel_pending": (cancel_pending, None, 1),
    "pause_collection": (pause_collection, None, 1),
    "multi_currency": (multi_currency, None, 1),
    "deleted_customer": (deleted_customer, None, 1),
    "deleted_customer_recent": (deleted_customer_recent, None, 1),
    "subscription_schedule": (subscription_schedule, None, 1),
    "one_time_fee": (one_time_fee, None, 2),
    "lead_only": (lead_only, None, 2),
    "reactivation": (reactivation, None, 2),
    "coupon_item_level": (coupon_item_level, None, 1),
}

# Profiles that start at a time relative to "now" rather than early in the window.
RECENT_START_DAYS: dict[str, int] = {"cancel_pending": 200, "deleted_customer_recent": 120}
MIN_MONTHS = 9  # the longest profile (a schedule of 6 periods, reactivation) fits in 9 months
