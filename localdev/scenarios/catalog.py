"""The emulated merchant's catalog: products, prices per interval and currency, coupons and tax rates.

Every case of docs/sources.md#stripe-scenarios needs a price or a coupon from here: weekly / monthly / quarterly /
annual intervals, per-seat and metered prices, a one-time setup fee, coupons `once` / `repeating` / `forever` / 100 %,
an inclusive VAT and an exclusive sales tax, several currencies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from localdev.stripe_emulator import records as r
from localdev.stripe_emulator.ids import IdFactory

CURRENCIES = ("usd", "eur", "gbp", "cad", "aud")
# Price level per currency (a CAD price is 1.3x the USD number, rounded to whole units).
_CURRENCY_FACTOR = {"usd": 1.0, "eur": 1.0, "gbp": 0.9, "cad": 1.3, "aud": 1.5}

IntervalKey = Literal["weekly", "monthly", "quarterly", "yearly"]
INTERVALS: dict[str, tuple[Literal["week", "month", "year"], int]] = {
    "weekly": ("week", 1),
    "monthly": ("month", 1),
    "quarterly": ("month", 3),
    "yearly": ("year", 1),
}
# Monthly list price in USD cents; other intervals derive from it.
PLANS: dict[str, int] = {"Starter": 1900, "Pro": 4900, "Business": 9900}
SEAT_MONTHLY = 1000  # per seat
METERED_UNIT = 2  # per API call, billed monthly in arrears
SETUP_FEE = 5000
# Monthly add-ons (USD cents): with a plan, a subscription can have more items than an invoice embeds lines
# (10), so the exporter must page `/v1/invoices/{id}/lines` on real-looking data.
ADD_ONS: dict[str, int] = {
    "Extra storage": 500,
    "SSO": 2000,
    "Audit log": 1000,
    "Priority support": 3000,
    "Sandbox": 1500,
    "API boost": 2500,
    "Extra workspace": 800,
    "Data export": 700,
    "Custom domain": 400,
    "Advanced analytics": 1800,
    "Webhooks plus": 600,
}


def _interval_amount(monthly: int, key: str) -> int:
    """Weekly ≈ monthly/4, quarterly with 10 % off, yearly with two months free."""
    return {"weekly": round(monthly * 12 / 52), "monthly": monthly, "quarterly": round(monthly * 3 * 0.9)}.get(
        key, monthly * 10
    )


def _in_currency(usd_cents: int, currency: str) -> int:
    return round(usd_cents * _CURRENCY_FACTOR[currency] / 100.0) * 100 if usd_cents >= 100 else usd_cents


@dataclass
class Catalog:
    products: dict[str, r.Product] = field(default_factory=dict)
    # (product name, interval key, currency) -> price
    plan_prices: dict[tuple[str, str, str], r.Price] = field(default_factory=dict)
    seat_prices: dict[tuple[str, str], r.Price] = field(default_factory=dict)  # (interval key, currency)
    metered_prices: dict[str, r.Price] = field(default_factory=dict)  # currency
    setup_fees: dict[str, r.Price] = field(default_factory=dict)  # currency
    add_on_prices: dict[tuple[str, str], r.Price] = field(default_factory=dict)  # (add-on, currency)
    coupons: dict[str, r.Coupon] = field(default_factory=dict)
    tax_rates: dict[str, r.TaxRate] = field(default_factory=dict)

    def plan(self, name: str, interval: str, currency: str) -> r.Price:
        return self.plan_prices[(name, interval, currency)]

    def all_prices(self) -> list[r.Price]:
        return [
            *self.plan_prices.values(),
            *self.seat_prices.values(),
            *self.metered_prices.values(),
            *self.setup_fees.values(),
            *self.add_on_prices.values(),
        ]


def build_catalog(ids: IdFactory, created: int) -> Catalog:
    catalog = Catalog()
    for name in [*PLANS, "Seats", "API calls", "Setup fee", *ADD_ONS]:
        catalog.products[name] = r.Product(id=ids.new("prod"), created=created, name=name)
    for name, monthly in PLANS.items():
        for key, (interval, count) in INTERVALS.items():
            for currency in CURRENCIES:
                catalog.plan_prices[(name, key, currency)] = r.Price(
                    id=ids.new("price"),
                    created=created,
                    product=catalog.products[name].id,
                    currency=currency,
                    unit_amount=_in_currency(_interval_amount(monthly, key), currency),
                    interval=interval,
                    interval_count=count,
                    nickname=f"{name} {key}",
                )
    for key in ("monthly", "yearly"):
        interval, count = INTERVALS[key]
        for currency in CURRENCIES:
            catalog.seat_prices[(key, currency)] = r.Price(
                id=ids.new("price"),
                created=created,
                product=catalog.products["Seats"].id,
                currency=currency,
                unit_amount=_in_currency(_interval_amount(SEAT_MONTHLY, key), currency),
                interval=interval,
                interval_count=count,
                nickname=f"Seat {key}",
            )
    for currency in CURRENCIES:
        catalog.metered_prices[currency] = r.Price(
            id=ids.new("price"),
            created=created,
            product=catalog.products["API calls"].id,
            currency=currency,
            unit_amount=METERED_UNIT,
            usage_type="metered",
            nickname="API calls (metered)",
        )
        catalog.setup_fees[currency] = r.Price(
            id=ids.new("price"),
            created=created,
            product=catalog.products["Setup fee"].id,
            currency=currency,
            unit_amount=_in_currency(SETUP_FEE, currency),
            type="one_time",
            nickname="Setup fee",
        )
    for add_on, monthly in ADD_ONS.items():
        for currency in CURRENCIES:
            catalog.add_on_prices[(add_on, currency)] = r.Price(
                id=ids.new("price"),
                created=created,
                product=catalog.products[add_on].id,
                currency=currency,
                unit_amount=_in_currency(monthly, currency),
                nickname=f"{add_on} monthly",
            )
    coupons = [
        r.Coupon("ONCE20", created, "20% off the first invoice", "once", percent_off=20.0),
        r.Coupon("REPEAT25X3", created, "25% off for 3 months", "repeating", duration_in_months=3, percent_off=25.0),
        r.Coupon("FOREVER10", created, "10% off forever", "forever", percent_off=10.0),
        r.Coupon("FREE100", created, "100% off forever", "forever", percent_off=100.0),
        r.Coupon("WELCOME5", created, "$5 off once", "once", amount_off=500, currency="usd"),
    ]
    catalog.coupons = {c.id: c for c in coupons}
    catalog.tax_rates = {
        "vat": r.TaxRate(ids.new("txr"), created, "VAT", 20.0, inclusive=True, country="GB"),
        "sales_tax": r.TaxRate(ids.new("txr"), created, "Sales tax", 8.25, inclusive=False, country="US"),
    }
    return catalog
