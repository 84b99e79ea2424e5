"""The audit's verdict: "matches" only when every month, customer and object is equal to the cent."""

from localdev.audit import Audit, MonthFigures


def _month(chartmogul_mrr: int, truth_mrr: int, customers: tuple[int, int] = (5, 5)) -> MonthFigures:
    return MonthFigures("2026-01", chartmogul_mrr, truth_mrr, customers[0], customers[1])


def test_a_one_cent_month_difference_is_not_a_match():
    assert Audit(months=[_month(100_00, 100_00)]).matches
    off_by_a_cent = Audit(months=[_month(100_00, 100_00), _month(99_99, 100_00)])
    assert not off_by_a_cent.matches
    assert [m.mrr_difference for m in off_by_a_cent.month_differences] == [-1]


def test_a_customer_count_difference_is_not_a_match():
    assert not Audit(months=[_month(100_00, 100_00, customers=(4, 5))]).matches
