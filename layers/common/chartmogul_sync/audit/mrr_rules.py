"""ChartMogul's MRR rules as written in docs/mapping-decisions.md ("The MRR rules"), as pure functions.

Pure functions over plain records. Two users: the audit (chartmogul_sync.audit), which feeds them lines derived
from Stripe by its own reading of the Stripe JSON (audit/stripe_figures.py, not the transform), and the ChartMogul
emulator, which feeds them what was imported (localdev/chartmogul_emulator/metrics.py). Rule numbers refer to
that section. Exchange rates are an input: units of the account currency per unit of a line's currency; None means
one currency (no conversion).
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# Rule 2: a day plan's month is 365.25/12 days. Unverified against ChartMogul; one constant, one place.
DAYS_PER_MONTH = 365.25 / 12

INTERVAL_UNITS = ("day", "month", "year")

Rates = Mapping[str, float] | None


def to_account_currency(amount_in_cents: float, currency: str, rates: Rates) -> float:
    """Minor units of `currency` in minor units of the account currency (every rated currency has two decimals)."""
    if rates is None:
        return amount_in_cents
    try:
        return amount_in_cents * rates[currency.upper()]
    except KeyError:
        raise ValueError(f"no exchange rate for currency {currency!r}; known: {sorted(rates)}") from None


@dataclass(frozen=True)
class SubscriptionLine:
    """One `type=subscription` line item as the engine needs it (one_time and trial lines make no MRR)."""

    start: dt.datetime  # service_period_start, aware UTC
    end: dt.datetime  # service_period_end, aware UTC
    amount_in_cents: int
    tax_amount_in_cents: int
    currency: str  # the invoice currency
    prorated: bool
    interval_unit: str  # the plan's: day | month | year
    interval_count: int


@dataclass
class SubscriptionHistory:
    """Everything that decides one subscription's MRR over time."""

    lines: list[SubscriptionLine] = field(default_factory=list)  # in import order
    cancellations: list[dt.datetime] = field(default_factory=list)


def months_factor(interval_unit: str, interval_count: int) -> float:
    """Rule 2: the factor that turns one plan interval's amount into a monthly amount."""
    if interval_unit == "month":
        return 1.0 / interval_count
    if interval_unit == "year":
        return 1.0 / (12 * interval_count)
    if interval_unit == "day":
        return DAYS_PER_MONTH / interval_count
    raise ValueError(f"unknown interval unit {interval_unit!r}")


def add_months(moment: dt.datetime, months: int) -> dt.datetime:
    """Calendar arithmetic: the same day-of-month `months` later (clamped to the month's last day)."""
    month_index = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(month_index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def full_interval_seconds(line: SubscriptionLine) -> float:
    """Rule 4: the length of one plan interval ending at the line's service_period_end."""
    if line.interval_unit == "day":
        return dt.timedelta(days=line.interval_count).total_seconds()
    months = line.interval_count * (12 if line.interval_unit == "year" else 1)
    return (line.end - add_months(line.end, -months)).total_seconds()


def round_cents(value: float) -> int:
    """To the closest whole cent, halves away from zero (a credit rounds like a debit).

    ChartMogul rounds each subscription line's MRR "to the closest integer value, in cents"
    (https://dev.chartmogul.com/docs/how-mrr-is-calculated-from-prorated-invoices): once per line, after
    converting to the account currency (where the real conversion sits in the formula is not documented, nor is
    the tie rule).
    """
    return int(value + 0.5) if value >= 0 else -int(-value + 0.5)


def line_monthly(line: SubscriptionLine, rates: Rates = None) -> float:
    """Rules 1-2: amount minus tax, in the account currency, per month (unrounded cents)."""
    net = line.amount_in_cents - line.tax_amount_in_cents
    return to_account_currency(net, line.currency, rates) * months_factor(line.interval_unit, line.interval_count)


def line_mrr(line: SubscriptionLine, rates: Rates = None, prorate_factor: float = 1.0) -> int:
    """Rules 1-2 and 4 for one line, rounded to whole cents (rule 6): ChartMogul's documented per-line formula
    `(amount_in_cents − tax_amount_in_cents) × subscription_duration_ratio × prorate_factor`, "rounded to the
    closest integer value, in cents" (dev.chartmogul.com/docs/how-mrr-is-calculated-from-prorated-invoices)."""
    return round_cents(line_monthly(line, rates) * prorate_factor)


def subscription_live(history: SubscriptionHistory, instant: dt.datetime) -> bool:
    """Started and not cancelled just before `instant` (rule 5), whatever its MRR: a $0 subscription is live."""
    started = [line for line in history.lines if line.start < instant]
    if not started:
        return False
    base_starts = [line.start for line in started if not line.prorated]
    last_base_start = max(base_starts) if base_starts else None
    cancellations = [moment for moment in history.cancellations if moment < instant]
    last_cancellation = max(cancellations) if cancellations else None
    return last_cancellation is None or (last_base_start is not None and last_cancellation < last_base_start)


def subscription_mrr(history: SubscriptionHistory, instant: dt.datetime, rates: Rates = None) -> int:
    """The subscription's MRR (whole cents, each line rounded) just before `instant`.

    `instant` is exclusive, which is how rule 6's "at the end of day D" is expressed: pass midnight of D+1.
    """
    started = [line for line in history.lines if line.start < instant]
    if not started:
        return 0  # rule 5: nothing before the first line's start
    base_starts = [line.start for line in started if not line.prorated]
    last_base_start = max(base_starts) if base_starts else None
    cancellations = [moment for moment in history.cancellations if moment < instant]
    last_cancellation = max(cancellations) if cancellations else None
    # Rule 5: nothing from the cancellation on, until a later non-prorated line starts the subscription again.
    if last_cancellation is not None and (last_base_start is None or last_cancellation >= last_base_start):
        return 0
    # Rule 3: the latest non-prorated start sets the base. Two such lines with the same start overwrite
    # each other, as in ChartMogul (docs/mapping-decisions.md): the one imported last wins.
    base_lines = [line for line in started if not line.prorated and line.start == last_base_start]
    base = line_mrr(base_lines[-1], rates) if base_lines else 0
    # Rule 4: prorated lines add their monthly amount scaled up to a full interval, within their period.
    prorations = 0
    for line in started:
        if not line.prorated or instant > line.end:
            continue
        if last_cancellation is not None and line.start <= last_cancellation:
            continue
        period_seconds = (line.end - line.start).total_seconds()
        if period_seconds > 0:
            prorations += line_mrr(line, rates, full_interval_seconds(line) / period_seconds)
    return base + prorations


def end_of_day(day: dt.date) -> dt.datetime:
    """Rule 6: the exclusive instant that closes `day` (UTC)."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


def customer_mrr(subscriptions: Iterable[SubscriptionHistory], day: dt.date, rates: Rates = None) -> int:
    """Rule 6: Σ subscriptions at the end of `day` (each line rounded to whole cents)."""
    instant = end_of_day(day)
    return sum(subscription_mrr(history, instant, rates) for history in subscriptions)


def customer_counted(
    subscriptions: Iterable[SubscriptionHistory], day: dt.date, mrr: int, first_paid: dt.date | None
) -> bool:
    """Rule 6: a customer counts (is Active) at the end of `day` with MRR > 0, or, having paid before, with a live
    subscription at $0: ChartMogul's free-customer handling keeps a paying customer who moves to $0 or a 100 %
    coupon Active (the default, and the only option for accounts opened since 2025-01-30: help.chartmogul.com
    "Free customer handling"; help.chartmogul.com/hc/en-us/articles/203299492)."""
    if mrr > 0:
        return True
    if first_paid is None or first_paid > day:
        return False  # never paid: a lead (free trials, free from the start)
    instant = end_of_day(day)
    return any(subscription_live(history, instant) for history in subscriptions)


def first_active_day(subscriptions: Sequence[SubscriptionHistory], rates: Rates = None) -> dt.date | None:
    """The first day at whose end the customer's MRR is > 0, i.e. it paid (MRR only rises on a day a line starts)."""
    start_days = sorted({line.start.date() for history in subscriptions for line in history.lines})
    for day in start_days:
        if customer_mrr(subscriptions, day, rates) > 0:
            return day
    return None


# ---- series and movements (rule 7) --------------------------------------------------------------------


MOVEMENTS = ("new_business", "expansion", "contraction", "churn", "reactivation")


@dataclass
class PeriodFigures:
    date: dt.date
    mrr: int = 0
    customers: int = 0
    new_customers: int = 0
    churned_customers: int = 0
    movements: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MOVEMENTS, 0))


def classify_movement(
    previous: int,
    current: int,
    was_active_before: bool,
    previously_counted: bool | None = None,
    counted: bool | None = None,
) -> str | None:
    """Rule 7 for one customer between two consecutive period ends.

    `previously_counted` / `counted` (default: MRR > 0) say whether the customer counted at each end: a counted
    customer moving to $0 contracts, it does not churn (customer_counted).
    """
    was = previous > 0 if previously_counted is None else previously_counted
    now = current > 0 if counted is None else counted
    if not was and now:
        return "reactivation" if was_active_before else "new_business"
    if was and not now:
        return "churn"
    if previous == current:
        return None
    return "expansion" if current > previous else "contraction"


def period_ends(start: dt.date, end: dt.date, interval: str) -> list[dt.date]:
    """The entry dates between start and end: each period's last day, the last one clipped to `end`."""
    dates: list[dt.date] = []
    cursor = start
    while cursor <= end:
        period_end = min(_period_last_day(cursor, interval), end)
        dates.append(period_end)
        cursor = period_end + dt.timedelta(days=1)
    return dates


def period_before(start: dt.date, interval: str) -> dt.date:
    """The last day of the period before the one that contains `start` (the first entry's comparison)."""
    return _period_first_day(start, interval) - dt.timedelta(days=1)


def _period_first_day(day: dt.date, interval: str) -> dt.date:
    if interval == "day":
        return day
    if interval == "week":
        return day - dt.timedelta(days=day.weekday())  # weeks run Monday to Sunday
    if interval == "month":
        return day.replace(day=1)
    if interval == "quarter":
        return dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    if interval == "year":
        return dt.date(day.year, 1, 1)
    raise ValueError(f"unknown interval {interval!r}")


def _period_last_day(day: dt.date, interval: str) -> dt.date:
    first = _period_first_day(day, interval)
    if interval == "day":
        return first
    if interval == "week":
        return first + dt.timedelta(days=6)
    months = {"month": 1, "quarter": 3, "year": 12}[interval]
    return (add_months(dt.datetime.combine(first, dt.time()), months) - dt.timedelta(days=1)).date()


def account_series(
    customers: dict[str, list[SubscriptionHistory]],
    start: dt.date,
    end: dt.date,
    interval: str = "month",
    rates: Rates = None,
) -> tuple[PeriodFigures, list[PeriodFigures]]:
    """The figures at the period before `start` (the baseline) and at each period end up to `end`."""
    dates = [period_before(start, interval), *period_ends(start, end, interval)]
    figures = [PeriodFigures(date) for date in dates]
    for subscriptions in customers.values():
        first_active = first_active_day(subscriptions, rates)
        values = [customer_mrr(subscriptions, date, rates) for date in dates]
        counted = [customer_counted(subscriptions, d, v, first_active) for d, v in zip(dates, values, strict=True)]
        for index, value in enumerate(values):
            period = figures[index]
            period.mrr += value
            period.customers += counted[index]
            if index == 0:
                continue
            previous = values[index - 1]
            was_active_before = first_active is not None and first_active <= dates[index - 1]
            movement = classify_movement(previous, value, was_active_before, counted[index - 1], counted[index])
            if movement is None:
                continue
            period.movements[movement] += value - previous
            period.new_customers += movement == "new_business"
            period.churned_customers += movement == "churn"
    return figures[0], figures[1:]
