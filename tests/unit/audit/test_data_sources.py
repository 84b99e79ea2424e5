"""Two data sources of one ChartMogul account compared per customer and month (audit/data_sources.py), pure."""

from __future__ import annotations

import datetime as dt

from chartmogul_sync.audit.chartmogul_side import ChartMogulCustomer, ChartMogulView
from chartmogul_sync.audit.data_sources import compare_views

NOW = dt.datetime(2026, 3, 10, tzinfo=dt.UTC)
MONTHS = [("2026-01", dt.date(2026, 1, 31)), ("2026-02", dt.date(2026, 2, 28)), ("2026-03", dt.date(2026, 3, 10))]


def customer(external_id: str, *movements: tuple[dt.date, int]) -> ChartMogulCustomer:
    return ChartMogulCustomer(f"cus_uuid_{external_id}", external_id, {}, activities={"si_1": list(movements)})


def view(*customers: ChartMogulCustomer) -> ChartMogulView:
    return ChartMogulView("ds_x", customers={c.external_id: c for c in customers})


def test_customers_only_in_one_source_and_months_whose_mrr_differs() -> None:
    jan = dt.date(2026, 1, 5)
    ours = view(customer("cus_same", (jan, 10_000)), customer("cus_up", (jan, 10_000)), customer("cus_ours", (jan, 1)))
    # The other source saw cus_up's upgrade in February (ours did not) and holds a customer ours lacks.
    theirs = view(
        customer("cus_same", (jan, 10_000)),
        customer("cus_up", (jan, 10_000), (dt.date(2026, 2, 14), 20_000)),
        customer("cus_theirs", (jan, 5_000)),
    )

    comparison = compare_views(ours, theirs, MONTHS, names=("ours", "native"), now=NOW)

    assert [(d.customer, d.problem, d.month, d.ours, d.theirs) for d in comparison.differences] == [
        ("cus_ours", "only in ours", None, None, None),
        ("cus_theirs", "only in theirs", None, None, None),
        ("cus_up", "MRR", "2026-02", 10_000, 20_000),
        ("cus_up", "MRR", "2026-03", 10_000, 20_000),
    ]
    assert comparison.customers_in_both == 2 and not comparison.matches
    assert [(m.ours_mrr, m.theirs_mrr) for m in comparison.months] == [
        (20_001, 25_000),
        (20_001, 35_000),
        (20_001, 35_000),
    ]


def test_the_same_customers_with_the_same_mrr_match_and_a_customer_filter_holds() -> None:
    jan = dt.date(2026, 1, 5)
    ours = view(customer("cus_a", (jan, 10_000)), customer("cus_b", (jan, 3_000)))
    theirs = view(customer("cus_a", (jan, 10_000)))
    assert not compare_views(ours, theirs, MONTHS, names=("ours", "native"), now=NOW).matches
    only_a = compare_views(ours, theirs, MONTHS, names=("ours", "native"), now=NOW, customers={"cus_a"})
    assert only_a.matches and only_a.summary()["differences"] == {}
