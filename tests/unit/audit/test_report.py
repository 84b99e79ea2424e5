"""The audit's verdict and its months, pure: what decides `matches` (and so the exit code and AuditMatches)."""

import datetime as dt

from chartmogul_sync.audit.report import AuditReport, Cause, Difference, MonthFigures
from chartmogul_sync.audit.service import month_days

NOW = dt.datetime(2026, 12, 10, 9, 0, tzinfo=dt.UTC)


def report(*causes: Cause) -> AuditReport:
    differences = [
        Difference(check="numbers", customer=f"cus_{i}", problem="MRR", cause=c) for i, c in enumerate(causes)
    ]
    return AuditReport(generated_at=NOW, data_source="ds", differences=differences)


def test_only_differences_by_design_still_match() -> None:
    assert report().matches
    assert report(Cause.FX).matches
    assert report(Cause.FX).customers_differing == []


def test_any_drift_is_a_mismatch_naming_its_customer() -> None:
    for cause in set(Cause) - {Cause.FX}:
        drifted = report(Cause.FX, cause)
        assert not drifted.matches, cause
        assert drifted.customers_differing == ["cus_1"]


def test_months_are_read_at_their_last_day_and_this_month_today() -> None:
    assert month_days("2026-01", "2026-02", NOW) == [
        ("2026-01", dt.date(2026, 1, 31)),
        ("2026-02", dt.date(2026, 2, 28)),
    ]
    assert month_days("2026-11", "2026-12", NOW)[-1] == ("2026-12", dt.date(2026, 12, 10))
    assert month_days("2025-12", "2026-01", NOW)[0] == ("2025-12", dt.date(2025, 12, 31))


def test_the_mrr_difference_is_over_the_customers_compared() -> None:
    # ChartMogul's account total includes a customer billed in a currency without a rate; the difference does not.
    month = MonthFigures(
        month="2026-12",
        chartmogul_mrr=15_000,
        stripe_mrr=10_000,
        chartmogul_customers=2,
        stripe_customers=1,
        chartmogul_mrr_compared=10_000,
    )
    assert month.mrr_difference == 0
