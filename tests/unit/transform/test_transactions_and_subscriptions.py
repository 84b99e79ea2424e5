"""Payments, refunds and credit notes as transactions; cancellations, pauses, unpaid and subscription ids."""

import datetime as dt

import pytest

from chartmogul_sync.models import SubscriptionLineItem, TransactionResult, TransactionType
from chartmogul_sync.transform import MappingConfig, MappingError, map_snapshot
from tests.fixtures.bundle_mrr import mrr_on
from tests.fixtures.stripe_objects import DAY, Line, SnapshotBuilder, at, moment

JAN, FEB, MAR, APR, MAY = (at(2025, month, 1) for month in range(1, 6))


def config(**data: object) -> MappingConfig:
    return MappingConfig.model_validate(data)


def monthly(builder: SnapshotBuilder, invoice_id: str, start: int, end: int, **options: object) -> None:
    line = Line(
        f"il_{invoice_id[3:]}",
        10_000,
        start,
        end,
        price_id="price_pro_m",
        subscription_item="si_1",
        subscription="sub_1",
    )
    builder.add_invoice(invoice_id, [line], subscription="sub_1", **options)  # type: ignore[arg-type]


def customer() -> SnapshotBuilder:
    builder = SnapshotBuilder()
    builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    return builder


def transactions(bundle, invoice_id: str):  # type: ignore[no-untyped-def]
    invoice = next(i for i in bundle.invoices if i.external_id == invoice_id)
    return [(t.external_id, t.type, t.result, t.date, t.amount_in_cents) for t in invoice.transactions]


# ---------------------------------------------------------------- payments


def test_failed_attempt_then_successful_payment() -> None:
    builder = customer()
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1)])
    monthly(builder, "in_0001", JAN, FEB, paid_at=JAN + 3 * DAY)
    builder.add_charge("ch_declined", "pi_1", 10_000, JAN + 3600, "failed")
    builder.add_payment("inpay_1", "in_0001", "pi_1", 10_000, JAN + 3 * DAY)

    assert transactions(map_snapshot(builder.snapshot()), "in_0001") == [
        ("ch_declined", TransactionType.PAYMENT, TransactionResult.FAILED, moment(JAN + 3600), 10_000),
        ("inpay_1", TransactionType.PAYMENT, TransactionResult.SUCCESSFUL, moment(JAN + 3 * DAY), 10_000),
    ]


def test_partial_payments_are_separate_transactions() -> None:
    builder = customer()
    monthly(builder, "in_0001", JAN, FEB, paid_at=JAN + 9 * DAY)
    builder.add_payment("inpay_a", "in_0001", "pi_a", 4_000, JAN + 2 * DAY)
    builder.add_payment("inpay_b", "in_0001", "pi_b", 6_000, JAN + 9 * DAY)
    builder.add_payment("inpay_c", "in_0001", "pi_c", 10_000, None, status="canceled")

    rows = transactions(map_snapshot(builder.snapshot()), "in_0001")

    assert [(row[0], row[4]) for row in rows] == [("inpay_a", 4_000), ("inpay_b", 6_000)]


def test_payment_outside_stripe_is_recorded_from_the_invoice() -> None:
    builder = customer()
    monthly(builder, "in_0001", JAN, FEB, paid_at=JAN + 5 * DAY)  # paid out of band: no invoice payment

    assert transactions(map_snapshot(builder.snapshot()), "in_0001") == [
        ("in_0001-paid", TransactionType.PAYMENT, TransactionResult.SUCCESSFUL, moment(JAN + 5 * DAY), 10_000)
    ]


def test_full_and_partial_refunds_are_refund_transactions_on_the_original_invoice() -> None:
    builder = customer()
    monthly(builder, "in_0001", JAN, FEB, pay_with="pi_1")
    monthly(builder, "in_0002", FEB, MAR, pay_with="pi_2")
    builder.add_refund("re_full", "ch_0001", "pi_1", 10_000, JAN + 10 * DAY)
    builder.add_refund("re_part", "ch_0002", None, 2_500, FEB + 10 * DAY)  # found through its charge
    builder.add_refund("re_pending", "ch_0002", "pi_2", 1_000, FEB + 11 * DAY, status="pending")

    bundle = map_snapshot(builder.snapshot())

    assert transactions(bundle, "in_0001")[-1] == (
        "re_full",
        TransactionType.REFUND,
        TransactionResult.SUCCESSFUL,
        moment(JAN + 10 * DAY),
        10_000,
    )
    assert transactions(bundle, "in_0002")[-1][0:2] == ("re_part", TransactionType.REFUND)
    assert transactions(bundle, "in_0002")[-1][4] == 2_500
    assert ("re_pending", "refund is pending: imported once it has succeeded") in {
        (s.source_object_id, s.reason) for s in bundle.skipped
    }
    # Refunds do not change MRR (docs/sources.md#stripe-source-settings, Refund handling).
    assert mrr_on(bundle, dt.date(2025, 1, 20)) == 10_000


def test_credit_note_after_payment_refunds_once_and_credit_stays_out() -> None:
    builder = customer()
    monthly(builder, "in_0001", JAN, FEB, pay_with="pi_1")
    builder.add_refund("re_1", "ch_0001", "pi_1", 3_000, JAN + 6 * DAY)
    builder.add_credit_note("cn_refund", "in_0001", 3_000, JAN + 6 * DAY, kind="post_payment", refund_id="re_1")
    builder.add_credit_note("cn_credit", "in_0001", 2_000, JAN + 7 * DAY, kind="post_payment")
    # A credit-note refund the snapshot has no refund object for still arrives, from the credit note.
    builder.add_credit_note("cn_other", "in_0001", 1_000, JAN + 8 * DAY, kind="post_payment", refund_id="re_2")

    bundle = map_snapshot(builder.snapshot())

    refunds = [(row[0], row[4]) for row in transactions(bundle, "in_0001") if row[1] is TransactionType.REFUND]
    assert refunds == [("re_1", 3_000), ("re_2", 1_000)]  # re_1 not counted twice
    assert bundle.invoices[0].line_items[0].amount_in_cents == 10_000  # credit notes change no line
    reasons = {s.source_object_id: s.reason for s in bundle.skipped}
    assert "cash-flow only" in reasons["cn_credit"] and "cn_refund" not in reasons


def test_credit_note_before_payment_leaves_lines_unchanged_and_says_so() -> None:
    builder = customer()
    monthly(builder, "in_0001", JAN, FEB, amount_paid=7_000, pay_with="pi_1")
    builder.add_credit_note("cn_pre", "in_0001", 3_000, JAN + 3000, kind="pre_payment")

    bundle = map_snapshot(builder.snapshot())

    assert bundle.invoices[0].line_items[0].amount_in_cents == 10_000
    assert [(row[0], row[4]) for row in transactions(bundle, "in_0001")] == [("inpay_0001", 7_000)]
    assert "pre-payment credit note" in {s.source_object_id: s.reason for s in bundle.skipped}["cn_pre"]


# ---------------------------------------------------------------- cancellations


def test_cancellation_at_period_end_uses_ended_at_not_canceled_at() -> None:
    builder = customer()
    builder.add_subscription(
        "sub_1",
        [("si_1", "price_pro_m", 1)],
        status="canceled",
        canceled_at=JAN + 10 * DAY,
        ended_at=FEB,
        cancel_at_period_end=True,
    )
    monthly(builder, "in_0001", JAN, FEB, pay_with="pi_1")

    bundle = map_snapshot(builder.snapshot())

    assert [(c.subscription_external_id, c.cancellation_dates) for c in bundle.cancellations] == [
        ("si_1", [moment(FEB)])
    ]
    assert (mrr_on(bundle, dt.date(2025, 1, 20)), mrr_on(bundle, dt.date(2025, 2, 1))) == (10_000, 0)


def test_immediate_cancellation_with_proration_credit() -> None:
    builder = customer()
    ended = JAN + 10 * DAY
    builder.add_subscription(
        "sub_1", [("si_1", "price_pro_m", 1)], status="canceled", canceled_at=ended, ended_at=ended
    )
    monthly(builder, "in_0001", JAN, FEB, pay_with="pi_1")
    builder.add_invoice(
        "in_0002",
        [
            Line(
                "il_credit",
                -6_774,
                ended,
                FEB,
                price_id="price_pro_m",
                subscription_item="si_1",
                subscription="sub_1",
                proration=True,
            )
        ],
        subscription="sub_1",
        created=ended,
        status="paid",
        amount_paid=0,
    )

    bundle = map_snapshot(builder.snapshot())

    assert [c.cancellation_dates for c in bundle.cancellations] == [[moment(ended)]]
    assert (mrr_on(bundle, dt.date(2025, 1, 10)), mrr_on(bundle, dt.date(2025, 1, 11))) == (10_000, 0)


def test_pending_cancel_at_period_end_sends_nothing_yet() -> None:
    builder = customer()
    builder.add_subscription(
        "sub_1", [("si_1", "price_pro_m", 1)], canceled_at=JAN + 10 * DAY, cancel_at_period_end=True
    )
    monthly(builder, "in_0001", JAN, FEB, pay_with="pi_1")

    assert map_snapshot(builder.snapshot()).cancellations == []


def test_reactivation_is_a_new_subscription_after_the_cancelled_one() -> None:
    builder = customer()
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1)], status="canceled", canceled_at=FEB, ended_at=FEB)
    builder.add_subscription("sub_2", [("si_2", "price_pro_m", 1)], created=APR, period=(APR, MAY))
    monthly(builder, "in_0001", JAN, FEB, pay_with="pi_1")
    builder.add_invoice(
        "in_0004",
        [Line("il_4", 10_000, APR, MAY, price_id="price_pro_m", subscription_item="si_2", subscription="sub_2")],
        subscription="sub_2",
        pay_with="pi_4",
    )

    bundle = map_snapshot(builder.snapshot())

    assert [c.subscription_external_id for c in bundle.cancellations] == ["si_1"]
    assert [mrr_on(bundle, dt.date(2025, m, 15)) for m in (1, 3, 4)] == [10_000, 0, 10_000]


def test_an_item_removed_from_a_subscription_ends_where_its_credit_starts() -> None:
    builder = customer()
    builder.add_price("price_seat", "prod_seat", "Extra seat", 2_000)
    removed = FEB + 14 * DAY
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1)], period=(MAR, APR))  # si_seat no longer there
    builder.add_invoice(
        "in_0002",
        [
            Line("il_p", 10_000, FEB, MAR, price_id="price_pro_m", subscription_item="si_1", subscription="sub_1"),
            Line("il_s", 2_000, FEB, MAR, price_id="price_seat", subscription_item="si_seat", subscription="sub_1"),
        ],
        subscription="sub_1",
        pay_with="pi_2",
    )
    builder.add_invoice(
        "in_0003",
        [
            Line("il_p3", 10_000, MAR, APR, price_id="price_pro_m", subscription_item="si_1", subscription="sub_1"),
            Line(
                "il_sc",
                -1_000,
                removed,
                MAR,
                price_id="price_seat",
                subscription_item="si_seat",
                subscription="sub_1",
                proration=True,
            ),
        ],
        subscription="sub_1",
        pay_with="pi_3",
    )

    bundle = map_snapshot(builder.snapshot())

    assert [(c.subscription_external_id, c.cancellation_dates) for c in bundle.cancellations] == [
        ("si_seat", [moment(removed)])
    ]
    assert [mrr_on(bundle, dt.date(2025, 2, 10)), mrr_on(bundle, dt.date(2025, 3, 10))] == [12_000, 10_000]


@pytest.mark.parametrize(
    ("status", "pause"),
    [("active", {"behavior": "keep_as_draft", "resumes_at": None}), ("paused", None)],
)
def test_pauses_change_nothing_and_mrr_continues(status: str, pause: dict[str, object] | None) -> None:
    builder = customer()
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1)], status=status, pause_collection=pause)
    monthly(builder, "in_0001", JAN, FEB, pay_with="pi_1")

    bundle = map_snapshot(builder.snapshot())

    assert bundle.cancellations == []
    assert mrr_on(bundle, dt.date(2025, 3, 15)) == 10_000  # as ChartMogul's native integration: still MRR


def unpaid_customer() -> SnapshotBuilder:
    builder = customer()
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1)], status="unpaid", latest_invoice="in_0002")
    monthly(builder, "in_0001", JAN, FEB, pay_with="pi_1")
    monthly(builder, "in_0002", FEB, MAR, status="open")
    builder.add_payment("inpay_2", "in_0002", "pi_2", 10_000, None, status="open")
    for day in (1, 4, 9):
        builder.add_charge(f"ch_fail_{day}", "pi_2", 10_000, FEB + day * DAY, "failed")
    return builder


def test_unpaid_keeps_mrr_by_default_and_churns_at_the_last_attempt_when_configured() -> None:
    keep = map_snapshot(unpaid_customer().snapshot())
    churn = map_snapshot(unpaid_customer().snapshot(), config(unpaid="churn"))

    assert keep.cancellations == []
    assert [len(transactions(keep, "in_0002"))] == [3]  # each failed attempt recorded
    assert [(c.subscription_external_id, c.cancellation_dates) for c in churn.cancellations] == [
        ("si_1", [moment(FEB + 9 * DAY)])
    ]
    assert (mrr_on(keep, dt.date(2025, 2, 20)), mrr_on(churn, dt.date(2025, 2, 20))) == (10_000, 0)


# ---------------------------------------------------------------- subscription ids


def test_subscription_id_mode_uses_the_stripe_subscription() -> None:
    builder = customer()
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1)], status="canceled", ended_at=FEB)
    monthly(builder, "in_0001", JAN, FEB, pay_with="pi_1")

    bundle = map_snapshot(builder.snapshot(), config(subscription_id="subscription"))

    [line] = bundle.invoices[0].line_items
    assert isinstance(line, SubscriptionLineItem)
    assert (line.subscription_external_id, line.subscription_set_external_id) == ("sub_1", None)
    assert [c.subscription_external_id for c in bundle.cancellations] == ["sub_1"]


def test_subscription_id_mode_refuses_multi_item_subscriptions() -> None:
    builder = customer()
    builder.add_price("price_seat", "prod_seat", "Extra seat", 2_000)
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1), ("si_2", "price_seat", 1)])
    builder.add_invoice(
        "in_0001",
        [
            Line("il_1", 10_000, JAN, FEB, price_id="price_pro_m", subscription_item="si_1", subscription="sub_1"),
            Line("il_2", 2_000, JAN, FEB, price_id="price_seat", subscription_item="si_2", subscription="sub_1"),
        ],
        subscription="sub_1",
    )

    with pytest.raises(MappingError) as raised:
        map_snapshot(builder.snapshot(), config(subscription_id="subscription"))

    assert (raised.value.object_id, raised.value.field) == ("sub_1", "items")
    assert "use subscription_id 'item'" in raised.value.reason


def test_an_invalid_object_deep_in_the_bundle_is_reported_as_itself() -> None:
    builder = customer()
    monthly(builder, "in_0001", JAN, FEB, pay_with="pi_1")
    builder.add_refund("re_odd", "ch_0001", "pi_1", -500, JAN + 10 * DAY)  # Stripe never sends this

    with pytest.raises(MappingError) as raised:
        map_snapshot(builder.snapshot())

    assert (raised.value.object_id, raised.value.field) == ("re_odd", "amount_in_cents")
    assert "greater than or equal to 0" in raised.value.reason
