"""Invoices and their line items: amounts, taxes, discounts, prorations, one-offs, statuses, metered, currency.

MRR is checked with the ChartMogul emulator's engine (tests/fixtures/bundle_mrr.py): the number a user sees.
"""

import datetime as dt

import pytest

from chartmogul_sync.models import OneTimeLineItem, SubscriptionLineItem, TransactionResult
from chartmogul_sync.transform import MappingConfig, MappingError, map_snapshot
from tests.fixtures.bundle_mrr import mrr_on
from tests.fixtures.stripe_objects import DAY, Line, SnapshotBuilder, at, coupon, discount, moment

JAN, FEB, MAR, APR = at(2025, 1, 1), at(2025, 2, 1), at(2025, 3, 1), at(2025, 4, 1)
MID_FEB = at(2025, 2, 15)


def config(**data: object) -> MappingConfig:
    return MappingConfig.model_validate(data)


def pro_customer(**customer: object) -> SnapshotBuilder:
    builder = SnapshotBuilder(**customer)  # type: ignore[arg-type]
    builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    builder.add_price("price_biz_m", "prod_biz", "Business", 25_000)
    builder.add_price("price_setup", "prod_setup", "Onboarding", 50_000, interval=None)
    return builder


def sub_line(line_id: str, amount: int, start: int, end: int, price_id: str = "price_pro_m", **more: object) -> Line:
    return Line(line_id, amount, start, end, price_id=price_id, subscription_item="si_1", subscription="sub_1", **more)  # type: ignore[arg-type]


def lines_of(bundle, invoice_id: str):  # type: ignore[no-untyped-def]
    return next(i for i in bundle.invoices if i.external_id == invoice_id).line_items


def test_subscription_line_with_quantity_discount_and_exclusive_tax() -> None:
    builder = pro_customer()
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 3)], period=(JAN, FEB))
    # 3 seats × $100, 20 % off (−$60), then 10 % exclusive tax on $240 = $24: the customer pays $264.
    coupon_20 = coupon("SPRING20", name="Spring 20 %", percent_off=20)
    builder.add_invoice(
        "in_0001",
        [sub_line("il_1", 30_000, JAN, FEB, quantity=3, discounts=[("di_1", 6_000)], taxes=[(2_400, "exclusive")])],
        subscription="sub_1",
        pay_with="pi_1",
        discounts=[discount("di_1", coupon_20, subscription="sub_1")],
    )

    bundle = map_snapshot(builder.snapshot())

    [line] = lines_of(bundle, "in_0001")
    assert isinstance(line, SubscriptionLineItem)
    assert (line.amount_in_cents, line.tax_amount_in_cents) == (26_400, 2_400)
    assert (line.discount_amount_in_cents, line.discount_code) == (6_000, "SPRING20")
    assert (line.quantity, line.prorated, line.plan_external_id) == (3, False, "price_pro_m")
    assert (line.service_period_start, line.service_period_end) == (moment(JAN), moment(FEB))
    assert (line.subscription_external_id, line.subscription_set_external_id) == ("si_1", "sub_1")
    assert bundle.invoices[0].transactions[0].amount_in_cents == 26_400  # Σ lines == what Stripe charged
    assert mrr_on(bundle, dt.date(2025, 1, 15)) == 24_000  # net of discount, without tax


def test_inclusive_tax_is_inside_the_amount_and_still_reported() -> None:
    builder = pro_customer()
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1)], period=(JAN, FEB))
    builder.add_invoice("in_0001", [sub_line("il_1", 12_000, JAN, FEB, taxes=[(2_000, "inclusive")])], pay_with="pi_1")

    bundle = map_snapshot(builder.snapshot())

    [line] = lines_of(bundle, "in_0001")
    assert (line.amount_in_cents, line.tax_amount_in_cents) == (12_000, 2_000)
    assert mrr_on(bundle, dt.date(2025, 1, 15)) == 10_000


def upgrade_at_half_period(builder: SnapshotBuilder) -> None:
    """ChartMogul's own example (docs/sources.md#stripe-mrr-rules): $100/month upgraded to $250 at half-period gives
    −$50 and +$125."""
    half = FEB + 14 * DAY  # February has 28 days
    builder.add_subscription("sub_1", [("si_1", "price_biz_m", 1)], period=(MAR, APR), latest_invoice="in_0003")
    builder.add_invoice("in_0001", [sub_line("il_1", 10_000, FEB, MAR)], subscription="sub_1", pay_with="pi_1")
    builder.add_invoice(
        "in_0002",
        [
            sub_line("il_credit", -5_000, half, MAR, proration=True, description="Unused time on Pro"),
            sub_line("il_debit", 12_500, half, MAR, price_id="price_biz_m", proration=True),
        ],
        subscription="sub_1",
        created=half,
        pay_with="pi_2",
    )
    builder.add_invoice(
        "in_0003", [sub_line("il_3", 25_000, MAR, APR, price_id="price_biz_m")], subscription="sub_1", pay_with="pi_3"
    )


def test_upgrade_prorations_are_prorated_lines_and_mrr_follows_the_plan() -> None:
    builder = pro_customer()
    upgrade_at_half_period(builder)

    bundle = map_snapshot(builder.snapshot())

    credit, debit = lines_of(bundle, "in_0002")
    assert isinstance(credit, SubscriptionLineItem) and isinstance(debit, SubscriptionLineItem)
    assert (credit.amount_in_cents, credit.prorated, credit.plan_external_id) == (-5_000, True, "price_pro_m")
    assert (debit.amount_in_cents, debit.prorated, debit.plan_external_id) == (12_500, True, "price_biz_m")
    assert credit.subscription_external_id == debit.subscription_external_id == "si_1"
    assert credit.service_period_start == moment(FEB + 14 * DAY)
    assert [mrr_on(bundle, dt.date(2025, 2, d)) for d in (10, 20)] + [mrr_on(bundle, dt.date(2025, 3, 10))] == [
        10_000,
        25_000,
        25_000,
    ]


def test_invoice_item_prorations_are_linked_to_their_subscription_item() -> None:
    builder = pro_customer()
    builder.add_subscription("sub_1", [("si_1", "price_biz_m", 1)], period=(FEB, MAR))
    builder.add_invoice("in_0001", [sub_line("il_1", 10_000, FEB, MAR)], subscription="sub_1", pay_with="pi_1")
    # Prorations created as pending invoice items, invoiced on their own: the lines name only the invoice item.
    builder.add_invoice(
        "in_0002",
        [
            Line(
                "il_c",
                -5_000,
                MID_FEB,
                MAR,
                price_id="price_pro_m",
                invoice_item="ii_c",
                subscription="sub_1",
                proration=True,
            ),
            Line("il_d", 12_500, MID_FEB, MAR, price_id="price_biz_m", invoice_item="ii_d", proration=True),
        ],
        created=MID_FEB,
        pay_with="pi_2",
    )
    builder.add_invoice_item("ii_c", "in_0002", subscription="sub_1", subscription_item="si_1", proration=True)
    builder.add_invoice_item("ii_d", "in_0002", subscription="sub_1", subscription_item="si_1", proration=True)

    credit, debit = lines_of(map_snapshot(builder.snapshot()), "in_0002")

    assert isinstance(credit, SubscriptionLineItem) and isinstance(debit, SubscriptionLineItem)
    assert (credit.subscription_external_id, credit.subscription_set_external_id, credit.prorated) == (
        "si_1",
        "sub_1",
        True,
    )
    assert (debit.subscription_external_id, debit.subscription_set_external_id, debit.prorated) == (
        "si_1",
        "sub_1",
        True,
    )


def test_an_invoice_item_proration_that_cannot_be_linked_names_the_line() -> None:
    builder = pro_customer()
    builder.add_invoice(
        "in_0002",
        [Line("il_c", -5_000, MID_FEB, MAR, price_id="price_pro_m", invoice_item="ii_gone", proration=True)],
    )

    with pytest.raises(MappingError) as raised:
        map_snapshot(builder.snapshot())

    assert (raised.value.object_id, raised.value.field) == ("il_c", "parent.invoice_item_details.invoice_item")
    assert "ii_gone" in raised.value.reason


def test_one_off_items_are_one_time_lines_without_mrr() -> None:
    builder = pro_customer()
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1)], period=(JAN, FEB))
    builder.add_invoice(
        "in_0001",
        [
            sub_line("il_1", 10_000, JAN, FEB),
            Line(
                "il_setup",
                50_000,
                JAN,
                JAN,
                price_id="price_setup",
                invoice_item="ii_setup",
                description="Onboarding",
                taxes=[(5_000, "exclusive")],
            ),
            Line("il_fee", 1_500, JAN, JAN, invoice_item="ii_fee", description="Late fee"),
        ],
        subscription="sub_1",
        pay_with="pi_1",
    )

    bundle = map_snapshot(builder.snapshot())

    _, setup, fee = lines_of(bundle, "in_0001")
    assert isinstance(setup, OneTimeLineItem) and isinstance(fee, OneTimeLineItem)
    assert (setup.amount_in_cents, setup.tax_amount_in_cents, setup.description) == (55_000, 5_000, "Onboarding")
    assert (fee.amount_in_cents, fee.description) == (1_500, "Late fee")
    assert [p.external_id for p in bundle.plans] == ["price_pro_m"]  # one-off prices make no plan
    assert mrr_on(bundle, dt.date(2025, 1, 15)) == 10_000


def test_zero_amount_trial_invoice_is_imported_and_makes_no_mrr() -> None:
    builder = pro_customer()
    trial_end = JAN + 14 * DAY
    builder.add_subscription(
        "sub_1", [("si_1", "price_pro_m", 1)], trial=(JAN, trial_end), period=(trial_end, trial_end + 31 * DAY)
    )
    builder.add_invoice(
        "in_0001", [sub_line("il_trial", 0, JAN, trial_end, description="Trial period for Pro")], subscription="sub_1"
    )
    builder.add_invoice(
        "in_0002", [sub_line("il_1", 10_000, trial_end, trial_end + 31 * DAY)], subscription="sub_1", pay_with="pi_1"
    )

    bundle = map_snapshot(builder.snapshot())

    [trial_line] = lines_of(bundle, "in_0001")
    assert (trial_line.amount_in_cents, trial_line.type) == (0, "subscription")
    assert bundle.invoices[0].transactions == []
    assert bundle.customer.free_trial_started_at == moment(JAN)
    assert (mrr_on(bundle, dt.date(2025, 1, 5)), mrr_on(bundle, dt.date(2025, 1, 20))) == (0, 10_000)


def test_draft_invoices_are_skipped_with_a_reason() -> None:
    builder = pro_customer()
    builder.add_invoice("in_draft", [sub_line("il_1", 10_000, FEB, MAR)], status="draft")

    bundle = map_snapshot(builder.snapshot())

    assert bundle.invoices == [] and bundle.removed_invoice_external_ids == []
    assert [(s.source_object_id, s.reason) for s in bundle.skipped] == [
        ("in_draft", "draft invoice: only finalized invoices are imported")
    ]


def void_and_uncollectible(builder: SnapshotBuilder) -> None:
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1)])
    builder.add_invoice("in_void", [sub_line("il_v", 10_000, JAN, FEB)], status="void", voided_at=JAN + 5 * DAY)
    builder.add_invoice(
        "in_bad", [sub_line("il_u", 10_000, FEB, MAR)], status="uncollectible", marked_uncollectible_at=FEB + 20 * DAY
    )


def test_void_excluded_and_removed_uncollectible_included_with_a_failed_attempt_by_default() -> None:
    builder = pro_customer()
    void_and_uncollectible(builder)

    bundle = map_snapshot(builder.snapshot())

    assert [i.external_id for i in bundle.invoices] == ["in_bad"]
    assert bundle.removed_invoice_external_ids == ["in_void"]  # imported while open? it leaves ChartMogul now
    [attempt] = bundle.invoices[0].transactions
    assert (attempt.result, attempt.date, attempt.amount_in_cents) == (
        TransactionResult.FAILED,
        moment(FEB + 20 * DAY),
        10_000,
    )
    assert ("in_void", "void invoice: excluded (invoices.void is 'exclude')") in {
        (s.source_object_id, s.reason) for s in bundle.skipped
    }


def test_void_and_uncollectible_handling_is_configurable() -> None:
    builder = pro_customer()
    void_and_uncollectible(builder)

    bundle = map_snapshot(builder.snapshot(), config(invoices={"void": "include", "uncollectible": "exclude"}))

    assert [i.external_id for i in bundle.invoices] == ["in_void"]
    assert bundle.removed_invoice_external_ids == ["in_bad"]


def test_metered_lines_get_their_own_plan_with_the_usage_period() -> None:
    builder = pro_customer()
    builder.add_price("price_api", "prod_api", "API calls", 2, usage_type="metered")
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1), ("si_api", "price_api", None)], period=(FEB, MAR))
    builder.add_invoice(
        "in_0002",
        [
            sub_line("il_1", 10_000, FEB, MAR),
            Line(
                "il_usage",
                2_468,
                JAN,
                FEB,
                price_id="price_api",
                subscription_item="si_api",
                subscription="sub_1",
                quantity=1_234,
            ),
        ],
        subscription="sub_1",
        pay_with="pi_1",
    )

    in_mrr = map_snapshot(builder.snapshot())
    out_of_mrr = map_snapshot(builder.snapshot(), config(metered="one_time"))

    usage = lines_of(in_mrr, "in_0002")[1]
    assert isinstance(usage, SubscriptionLineItem)
    assert (usage.plan_external_id, usage.subscription_external_id, usage.quantity) == ("price_api", "si_api", 1_234)
    assert (usage.service_period_start, usage.service_period_end) == (moment(JAN), moment(FEB))  # arrears
    assert isinstance(lines_of(out_of_mrr, "in_0002")[1], OneTimeLineItem)
    assert [p.external_id for p in out_of_mrr.plans] == ["price_pro_m"]


def test_currencies_are_kept_native_and_upper_cased() -> None:
    builder = pro_customer()
    builder.add_price("price_pro_eur", "prod_pro", "Pro", 9_000, currency="eur")
    builder.add_subscription("sub_1", [("si_1", "price_pro_eur", 1)])
    builder.add_invoice(
        "in_0001", [sub_line("il_1", 9_000, JAN, FEB, price_id="price_pro_eur")], currency="eur", pay_with="pi_1"
    )

    bundle = map_snapshot(builder.snapshot())

    assert bundle.invoices[0].currency == "EUR"
    assert bundle.invoices[0].line_items[0].amount_in_cents == 9_000  # not converted
    assert mrr_on(bundle, dt.date(2025, 1, 15)) == 9_900  # the emulator converts at its fixed rate (1.10)


def test_an_unknown_currency_names_the_invoice_and_field() -> None:
    builder = pro_customer()
    builder.add_invoice("in_0001", [sub_line("il_1", 9_000, JAN, FEB)], currency="xyz")

    with pytest.raises(MappingError) as raised:
        map_snapshot(builder.snapshot())

    assert (raised.value.object_id, raised.value.field) == ("in_0001", "currency")


def test_invoice_date_is_finalization_and_manual_collection_is_kept() -> None:
    builder = pro_customer()
    builder.add_invoice("in_0001", [sub_line("il_1", 9_000, JAN, FEB)], status="open", collection_method="send_invoice")

    [invoice] = map_snapshot(builder.snapshot()).invoices

    assert (invoice.date, invoice.due_date, invoice.collection_method) == (
        moment(JAN + 3600),
        moment(JAN + 30 * DAY),
        "manual",
    )
    assert invoice.transactions == []  # open: issued, not paid


def test_a_line_s_discount_code_is_its_own_coupon_first_else_the_first_known_one() -> None:
    """Item-level discounts come first on a line (stripe/_invoice_line_item.py `discounts`): expanded on the line,
    the item's coupon is the code; not expanded (a snapshot of an older export), the invoice's is, not none."""
    builder = pro_customer()
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1)], period=(JAN, FEB))
    builder.add_invoice(
        "in_0001",
        [sub_line("il_1", 10_000, JAN, FEB, discounts=[("di_item", 1_000), ("di_sub", 1_800)])],
        subscription="sub_1",
        pay_with="pi_1",
        discounts=[discount("di_sub", coupon("SPRING20", percent_off=20), subscription="sub_1")],
    )
    snapshot = builder.snapshot()

    [unexpanded] = lines_of(map_snapshot(snapshot), "in_0001")
    line_json = snapshot.invoices[0]["lines"]["data"][0]
    line_json["discounts"] = [discount("di_item", coupon("SEATS10", percent_off=10)), "di_sub"]
    [expanded] = lines_of(map_snapshot(snapshot), "in_0001")

    assert (unexpanded.discount_amount_in_cents, unexpanded.discount_code) == (2_800, "SPRING20")
    assert (expanded.discount_amount_in_cents, expanded.discount_code) == (2_800, "SEATS10")
