"""Which part of Stripe's data explains a numbers difference (audit/causes.py), pure: constructed Stripe customers,
the figure ChartMogul would show if the mapping counted one part of them otherwise, and the cause named."""

from __future__ import annotations

import datetime as dt

from chartmogul_sync.audit.causes import CauseFinder, cash_flow_cause
from chartmogul_sync.audit.mrr_rules import customer_mrr
from chartmogul_sync.audit.report import ADVICE, Cause
from chartmogul_sync.audit.stripe_figures import CashComponents, customer_figures
from tests.fixtures.stripe_objects import DAY, Line, SnapshotBuilder, at

JAN, FEB, MAR, APR = at(2026, 1, 1), at(2026, 2, 1), at(2026, 3, 1), at(2026, 4, 1)
AS_OF = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
END_OF_JAN, END_OF_FEB, END_OF_MAR, END_OF_APR = (
    dt.date(2026, 1, 31),
    dt.date(2026, 2, 28),
    dt.date(2026, 3, 31),
    dt.date(2026, 4, 30),
)


def monthly(builder: SnapshotBuilder, months: list[tuple[int, int]], **line: object) -> None:
    """A $100 monthly subscription (si_1), one paid invoice per period."""
    if not builder.prices:
        builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    for index, (start, end) in enumerate(months):
        builder.add_invoice(
            f"in_{index:04d}",
            [
                Line(
                    f"il_{index}",
                    10_000,
                    start,
                    end,
                    price_id="price_pro_m",
                    subscription_item="si_1",
                    subscription="sub_1",
                    **line,  # type: ignore[arg-type]
                )
            ],
            subscription="sub_1",
            pay_with=f"pi_{index}",
        )


def finder_and_mrr(builder: SnapshotBuilder, day: dt.date) -> tuple[CauseFinder, int]:
    snapshot = builder.snapshot()
    figures = customer_figures(snapshot, AS_OF)
    return CauseFinder(snapshot, AS_OF), customer_mrr(list(figures.subscriptions.values()), day)


def test_a_mapping_that_keeps_the_tax_in_mrr_is_named_tax() -> None:
    builder = SnapshotBuilder()
    builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1)], period=(JAN, FEB))
    monthly(builder, [(JAN, FEB)], taxes=[(2_000, "exclusive")])
    finder, expected = finder_and_mrr(builder, END_OF_JAN)
    assert expected == 10_000  # ChartMogul's rule: tax is not MRR

    cause, detail = finder.mrr(END_OF_JAN, expected, 12_000) or (None, "")
    assert cause is Cause.TAX and "120.00" in detail
    assert finder.mrr(END_OF_JAN, expected, 11_000) is None  # not the tax: the mapping, unexplained


def test_inclusive_tax_kept_in_mrr_is_named_tax_too() -> None:
    builder = SnapshotBuilder()
    builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1)], period=(JAN, FEB))
    monthly(builder, [(JAN, FEB)], taxes=[(1_667, "inclusive")])
    finder, expected = finder_and_mrr(builder, END_OF_JAN)
    assert expected == 10_000 - 1_667
    assert (finder.mrr(END_OF_JAN, expected, 10_000) or (None,))[0] is Cause.TAX


def test_a_customer_free_by_a_coupon_that_shows_mrr_is_named_free_customers() -> None:
    builder = SnapshotBuilder()
    builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1)], period=(JAN, FEB))
    monthly(builder, [(JAN, FEB)], discounts=[("di_free", 10_000)])
    finder, expected = finder_and_mrr(builder, END_OF_JAN)
    assert expected == 0

    assert (finder.mrr(END_OF_JAN, expected, 10_000) or (None,))[0] is Cause.FREE_CUSTOMERS


def test_a_coupon_that_leaves_a_price_to_pay_is_not_a_free_customer() -> None:
    builder = SnapshotBuilder()
    builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1)], period=(JAN, FEB))
    monthly(builder, [(JAN, FEB)], discounts=[("di_half", 5_000)])
    finder, expected = finder_and_mrr(builder, END_OF_JAN)
    assert expected == 5_000
    assert finder.mrr(END_OF_JAN, expected, 10_000) is None  # stays "mapping"


def test_prorations_dropped_or_taken_as_full_periods_are_named_proration_timing() -> None:
    builder = SnapshotBuilder()
    builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1)], period=(FEB, MAR))
    monthly(builder, [(JAN, FEB), (FEB, MAR)])
    # Mid-February: half a month more, billed as a proration line on the same item.
    middle = FEB + 14 * DAY
    builder.add_invoice(
        "in_prorate",
        [
            Line(
                "il_prorate",
                5_000,
                middle,
                MAR,
                price_id="price_pro_m",
                subscription_item="si_1",
                subscription="sub_1",
                proration=True,
            )
        ],
        subscription="sub_1",
        created=middle,
    )
    finder, expected = finder_and_mrr(builder, dt.date(2026, 2, 20))
    assert expected == 10_000 + 10_000  # the proration counts scaled up to a full month, within its window

    day = dt.date(2026, 2, 20)
    assert (finder.mrr(day, expected, 10_000) or (None,))[0] is Cause.PRORATION_TIMING  # dropped
    assert (finder.mrr(day, expected, 5_000) or (None,))[0] is Cause.PRORATION_TIMING  # taken as a base line


def test_a_cancellation_a_month_off_or_missing_is_named_churn_date() -> None:
    builder = SnapshotBuilder()
    builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    builder.add_subscription(
        "sub_1", [("si_1", "price_pro_m", 1)], status="canceled", period=(MAR, APR), canceled_at=APR, ended_at=APR
    )
    monthly(builder, [(JAN, FEB), (FEB, MAR), (MAR, APR)])
    finder, at_april = finder_and_mrr(builder, END_OF_APR)
    assert at_april == 0
    _, at_march = finder_and_mrr(builder, END_OF_MAR)
    assert at_march == 10_000

    # ChartMogul still counts April (the churn came a month late, or never): churn date.
    assert (finder.mrr(END_OF_APR, at_april, 10_000) or (None,))[0] is Cause.CHURN_DATE
    # ChartMogul churned it in March already (a month early).
    cause, detail = finder.mrr(END_OF_MAR, at_march, 0) or (None, "")
    assert cause is Cause.CHURN_DATE and "earlier" in detail


def test_cash_flow_differences_are_named_by_the_part_of_the_month_that_explains_them() -> None:
    month = CashComponents(refunds=3_000, one_time=1_500, exclusive_tax=2_000)
    # ChartMogul higher by the refunds: a refund missing there.
    cause, detail = cash_flow_cause(month, +3_000) or (None, "")
    assert cause is Cause.REFUNDS and "missing from" in detail
    assert (cash_flow_cause(month, -3_000) or (None, ""))[1].endswith("counted twice in ChartMogul's figure")
    assert (cash_flow_cause(month, -1_500) or (None,))[0] is Cause.ONE_TIME_CHARGES
    assert (cash_flow_cause(month, -2_000) or (None,))[0] is Cause.TAX
    assert cash_flow_cause(month, -777) is None
    assert cash_flow_cause(CashComponents(), -1_500) is None


def test_the_month_s_cash_components_come_from_stripe_s_json() -> None:
    builder = SnapshotBuilder()
    builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    builder.add_price("price_setup", "prod_setup", "Setup", 2_500, interval=None)
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1)], period=(JAN, FEB))
    builder.add_invoice(
        "in_0001",
        [
            Line("il_1", 10_000, JAN, FEB, price_id="price_pro_m", subscription_item="si_1", subscription="sub_1"),
            Line(
                "il_setup", 2_500, JAN, JAN, price_id="price_setup", invoice_item="ii_setup", taxes=[(500, "exclusive")]
            ),
        ],
        subscription="sub_1",
        pay_with="pi_1",
    )
    builder.add_refund("re_1", "ch_0001", "pi_1", 1_000, JAN + 5 * DAY)
    figures = customer_figures(builder.snapshot(), AS_OF)

    components = figures.cash_components[("2026-01", "USD")]
    assert (components.one_time, components.exclusive_tax, components.refunds) == (2_500, 500, 1_000)
    assert figures.cash_flow[("2026-01", "USD")] == 10_000 + 2_500 + 500 - 1_000


def test_every_cause_says_what_to_check() -> None:
    assert set(ADVICE) == set(Cause)
    assert all(advice and "\n" not in advice for advice in ADVICE.values())
