"""The emulator's MRR engine: ChartMogul's MRR rules (docs/mapping-decisions.md, "The MRR rules").

The rules themselves are product code (`chartmogul_sync.audit.mrr_rules`, which the audit also uses); here they
take the emulator's fixed exchange-rate table (localdev/fx.py) when no other table is given.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from chartmogul_sync.audit import mrr_rules
from chartmogul_sync.audit.mrr_rules import (
    DAYS_PER_MONTH,
    INTERVAL_UNITS,
    MOVEMENTS,
    PeriodFigures,
    Rates,
    SubscriptionHistory,
    SubscriptionLine,
    add_months,
    classify_movement,
    customer_counted,
    end_of_day,
    full_interval_seconds,
    months_factor,
    period_before,
    period_ends,
    round_cents,
    subscription_live,
)
from localdev.fx import DEFAULT_RATES

__all__ = [
    "DAYS_PER_MONTH",
    "INTERVAL_UNITS",
    "MOVEMENTS",
    "PeriodFigures",
    "SubscriptionHistory",
    "SubscriptionLine",
    "account_series",
    "add_months",
    "classify_movement",
    "customer_counted",
    "customer_mrr",
    "end_of_day",
    "first_active_day",
    "full_interval_seconds",
    "line_monthly",
    "line_mrr",
    "months_factor",
    "period_before",
    "period_ends",
    "round_cents",
    "subscription_live",
    "subscription_mrr",
]


def _rates(rates: Rates) -> Rates:
    return DEFAULT_RATES if rates is None else rates


def line_monthly(line: SubscriptionLine, rates: Rates = None) -> float:
    return mrr_rules.line_monthly(line, _rates(rates))


def line_mrr(line: SubscriptionLine, rates: Rates = None, prorate_factor: float = 1.0) -> int:
    return mrr_rules.line_mrr(line, _rates(rates), prorate_factor)


def subscription_mrr(history: SubscriptionHistory, instant: dt.datetime, rates: Rates = None) -> int:
    return mrr_rules.subscription_mrr(history, instant, _rates(rates))


def customer_mrr(subscriptions: Iterable[SubscriptionHistory], day: dt.date, rates: Rates = None) -> int:
    return mrr_rules.customer_mrr(subscriptions, day, _rates(rates))


def first_active_day(subscriptions: Sequence[SubscriptionHistory], rates: Rates = None) -> dt.date | None:
    return mrr_rules.first_active_day(subscriptions, _rates(rates))


def account_series(
    customers: dict[str, list[SubscriptionHistory]],
    start: dt.date,
    end: dt.date,
    interval: str = "month",
    rates: Rates = None,
) -> tuple[PeriodFigures, list[PeriodFigures]]:
    return mrr_rules.account_series(customers, start, end, interval, _rates(rates))
