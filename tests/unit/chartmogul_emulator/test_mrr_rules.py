"""The MRR rules of docs/mapping-decisions.md, on hand-computed cases (no server)."""

from __future__ import annotations

import datetime as dt

import pytest

from localdev.chartmogul_emulator import metrics
from localdev.chartmogul_emulator.metrics import SubscriptionHistory, SubscriptionLine


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def line(start: str, end: str, amount: int, *, tax: int = 0, currency: str = "USD", prorated: bool = False,
         unit: str = "month", count: int = 1) -> SubscriptionLine:  # fmt: skip
    return SubscriptionLine(at(start), at(end), amount, tax, currency, prorated, unit, count)


def mrr(history: SubscriptionHistory, day: str) -> int:
    return metrics.customer_mrr([history], dt.date.fromisoformat(day))


def test_months_factor_per_interval() -> None:
    assert metrics.months_factor("month", 1) == 1
    assert metrics.months_factor("month", 3) == pytest.approx(1 / 3)
    assert metrics.months_factor("year", 1) == pytest.approx(1 / 12)
    assert metrics.months_factor("day", 7) == pytest.approx(365.25 / 12 / 7)


def test_chartmogul_prorated_upgrade_example() -> None:
    """$100/month, upgraded at half-period to $250: lines −$50 and +$125 over the second half → 250."""
    history = SubscriptionHistory(
        [
            line("2024-04-01", "2024-05-01", 10000),
            line("2024-04-16", "2024-05-01", -5000, prorated=True),
            line("2024-04-16", "2024-05-01", 12500, prorated=True),
        ]
    )
    assert mrr(history, "2024-04-10") == 10000
    assert mrr(history, "2024-04-16") == 25000  # 100 + (125 − 50) × 30/15
    assert mrr(history, "2024-04-30") == 25000
    assert mrr(history, "2024-05-01") == 10000  # the prorations ended; no renewal line yet, base keeps


def test_renewal_line_replaces_base_and_keeps_it_past_its_period() -> None:
    history = SubscriptionHistory([line("2024-01-01", "2024-02-01", 10000), line("2024-02-01", "2024-03-01", 25000)])
    assert mrr(history, "2023-12-31") == 0  # rule 5: nothing before the first line
    assert mrr(history, "2024-01-31") == 10000
    assert mrr(history, "2024-02-01") == 25000
    assert mrr(history, "2024-06-30") == 25000  # rule 3: past-due keeps MRR until cancelled


def test_two_base_lines_with_one_start_overwrite_each_other() -> None:
    history = SubscriptionHistory([line("2024-01-01", "2024-02-01", 10000), line("2024-01-01", "2024-02-01", 4000)])
    assert mrr(history, "2024-01-15") == 4000  # the line imported last wins


def test_tax_is_excluded_and_yearly_and_quarterly_plans_are_monthly() -> None:
    yearly = SubscriptionHistory([line("2024-01-01", "2025-01-01", 120000 + 24000, tax=24000, unit="year")])
    assert mrr(yearly, "2024-01-15") == 10000
    quarterly = SubscriptionHistory([line("2024-01-01", "2024-04-01", 30000, count=3)])
    assert mrr(quarterly, "2024-02-01") == 10000


def test_foreign_currency_converts_with_the_rate_table() -> None:
    eur = SubscriptionHistory([line("2024-01-01", "2024-02-01", 10000, currency="EUR")])
    assert mrr(eur, "2024-01-01") == 11000  # DEFAULT_RATES EUR 1.10
    assert metrics.customer_mrr([eur], dt.date(2024, 1, 1), {"EUR": 2.0}) == 20000


def test_day_plan_uses_the_documented_constant() -> None:
    weekly = SubscriptionHistory([line("2024-01-01", "2024-01-08", 700, unit="day", count=7)])
    assert mrr(weekly, "2024-01-02") == round(700 * 365.25 / 12 / 7)


def test_cancellation_takes_effect_at_the_end_of_its_day_and_a_new_line_reactivates() -> None:
    history = SubscriptionHistory(
        [line("2024-01-01", "2024-02-01", 10000), line("2024-05-01", "2024-06-01", 8000)],
        cancellations=[at("2024-01-20T15:00:00")],
    )
    assert mrr(history, "2024-01-19") == 10000
    assert mrr(history, "2024-01-20") == 0  # cancellations at or before the end of D have taken effect
    assert mrr(history, "2024-04-30") == 0
    assert mrr(history, "2024-05-01") == 8000


def test_prorated_full_interval_uses_calendar_months() -> None:
    """A 10-day credit ending 2024-03-01 on a monthly plan: full = Feb 2024 = 29 days."""
    history = SubscriptionHistory(
        [line("2024-02-01", "2024-03-01", 2900), line("2024-02-20", "2024-03-01", 1000, prorated=True)]
    )
    assert mrr(history, "2024-02-25") == round(2900 + 1000 * 29 / 10)


def test_mrr_is_rounded_per_line_item_as_chartmogul_documents() -> None:
    # dev.chartmogul.com/docs/how-mrr-is-calculated-from-prorated-invoices: each line's MRR "is rounded to the
    # closest integer value, in cents" — so three quarterly $1 lines make 3 × 33 = 99 cents, not 100.
    thirds = [SubscriptionHistory([line("2024-01-01", "2024-04-01", 100, count=3)]) for _ in range(3)]
    assert metrics.customer_mrr(thirds, dt.date(2024, 1, 1)) == 99
    two_halves = SubscriptionHistory([line("2024-01-01", "2024-03-01", 101, count=2)])  # 50.5 → 51 (half up)
    assert metrics.customer_mrr([two_halves], dt.date(2024, 1, 1)) == 51


def test_a_paying_customer_moving_to_zero_stays_counted_and_contracts() -> None:
    # ChartMogul's free-customer handling (default; the only option for accounts opened since 2025-01-30).
    paying_then_free = [
        SubscriptionHistory([line("2024-01-01", "2024-02-01", 5000), line("2024-02-01", "2024-03-01", 0)])
    ]
    free_from_start = [SubscriptionHistory([line("2024-01-01", "2024-02-01", 0)])]
    free_then_cancelled = [
        SubscriptionHistory(
            [line("2024-01-01", "2024-02-01", 5000), line("2024-02-01", "2024-03-01", 0)],
            cancellations=[at("2024-03-10")],
        )
    ]
    customers = {"a": paying_then_free, "b": free_from_start, "c": free_then_cancelled}
    _baseline, periods = metrics.account_series(customers, dt.date(2024, 1, 1), dt.date(2024, 3, 31), "month")
    assert [p.customers for p in periods] == [2, 2, 1]  # b never counts; c churns only when cancelled
    assert (periods[1].movements["contraction"], periods[1].movements["churn"]) == (-10000, 0)
    assert periods[2].churned_customers == 1 and periods[2].movements["churn"] == 0


@pytest.mark.parametrize(
    ("previous", "current", "was_active", "movement"),
    [
        (0, 100, False, "new_business"),
        (0, 100, True, "reactivation"),
        (100, 0, True, "churn"),
        (100, 150, True, "expansion"),
        (150, 100, True, "contraction"),
        (100, 100, True, None),
    ],
)
def test_movement_classification(previous: int, current: int, was_active: bool, movement: str | None) -> None:
    assert metrics.classify_movement(previous, current, was_active) == movement


def test_account_series_movements_by_month() -> None:
    customers = {
        "a": [SubscriptionHistory([line("2024-01-10", "2024-02-10", 10000), line("2024-02-10", "2024-03-10", 15000)])],
        "b": [
            SubscriptionHistory(
                [line("2024-01-05", "2024-02-05", 5000), line("2024-04-01", "2024-05-01", 5000)],
                cancellations=[at("2024-02-15")],
            )
        ],
    }
    baseline, periods = metrics.account_series(customers, dt.date(2024, 1, 1), dt.date(2024, 4, 15), "month")
    assert baseline.date == dt.date(2023, 12, 31) and baseline.mrr == 0
    assert [p.date.isoformat() for p in periods] == ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-15"]
    assert [p.mrr for p in periods] == [15000, 15000, 15000, 20000]
    assert [p.customers for p in periods] == [2, 1, 1, 2]
    assert periods[0].movements["new_business"] == 15000
    assert (periods[1].movements["expansion"], periods[1].movements["churn"]) == (5000, -5000)
    assert periods[3].movements["reactivation"] == 5000


def test_period_ends_by_interval() -> None:
    start, end = dt.date(2024, 1, 15), dt.date(2024, 7, 10)
    assert metrics.period_ends(start, end, "quarter") == [
        dt.date(2024, 3, 31),
        dt.date(2024, 6, 30),
        dt.date(2024, 7, 10),
    ]
    assert metrics.period_ends(dt.date(2024, 1, 1), dt.date(2024, 1, 14), "week") == [
        dt.date(2024, 1, 7),
        dt.date(2024, 1, 14),
    ]
    assert metrics.period_before(start, "year") == dt.date(2023, 12, 31)
