"""Customers (metadata → attributes, tags, trials, deletion) and plans (intervals, names, merging, exclusions)."""

import pytest

from chartmogul_sync.models import CustomAttributeType, CustomerSnapshot, IntervalUnit
from chartmogul_sync.transform import CustomerExcluded, MappingConfig, MappingError, map_snapshot
from tests.fixtures.stripe_objects import DAY, Line, SnapshotBuilder, at, moment

JAN, FEB, MAR = at(2025, 1, 1), at(2025, 2, 1), at(2025, 3, 1)


def config(**data: object) -> MappingConfig:
    return MappingConfig.model_validate(data)


def one_subscription(builder: SnapshotBuilder, price_id: str = "price_pro_m", amount: int = 10_000) -> None:
    builder.add_subscription("sub_1", [("si_1", price_id, 1)], period=(JAN, FEB))
    builder.add_invoice(
        "in_0001",
        [Line("il_1", amount, JAN, FEB, price_id=price_id, subscription_item="si_1", subscription="sub_1")],
        subscription="sub_1",
        pay_with="pi_1",
    )


def test_customer_fields_and_every_metadata_key_as_a_string_attribute() -> None:
    builder = SnapshotBuilder(metadata={"crm-id": "4711", "segment": "enterprise"})
    builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    one_subscription(builder)

    customer = map_snapshot(builder.snapshot()).customer

    assert (customer.external_id, customer.name, customer.email) == ("cus_Q1", "Ada Lovelace", "ada@example.com")
    assert (customer.country, customer.city, customer.zip) == ("GB", "London", "SW1Y 4LB")
    assert customer.lead_created_at == moment(builder.created)
    # Keys become ChartMogul-safe (letters, digits, underscores); values stay text, as Stripe's integration does.
    assert [(a.key, a.type, a.value) for a in customer.attributes.custom] == [
        ("crm_id", CustomAttributeType.STRING, "4711"),
        ("segment", CustomAttributeType.STRING, "enterprise"),
    ]
    assert customer.attributes.tags == []


def test_configured_metadata_types_keys_and_tags() -> None:
    builder = SnapshotBuilder(metadata={"seats": "25", "vip": "yes", "segment": "enterprise", "note": "x" * 400})
    builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    one_subscription(builder)
    mapping = config(
        customers={
            "attributes": {
                "from_metadata": "listed",
                "metadata": {"seats": {"type": "Integer"}, "vip": {"key": "is_vip", "type": "Boolean"}, "note": {}},
            },
            "tags": {"static": ["stripe"], "from_metadata": ["segment"]},
        }
    )

    customer = map_snapshot(builder.snapshot(), mapping).customer

    values = {a.key: a.value for a in customer.attributes.custom}
    assert values == {"is_vip": True, "note": "x" * 255, "seats": 25}  # String attributes hold 255 characters
    assert customer.attributes.tags == ["enterprise", "stripe"]


def test_metadata_that_does_not_fit_its_configured_type_names_the_key() -> None:
    builder = SnapshotBuilder(metadata={"seats": "twenty"})
    builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    one_subscription(builder)

    with pytest.raises(MappingError) as raised:
        map_snapshot(builder.snapshot(), config(customers={"attributes": {"metadata": {"seats": {"type": "Integer"}}}}))

    assert (raised.value.object_id, raised.value.field) == ("cus_Q1", "metadata.seats")
    assert "'twenty' is not a Integer" in raised.value.reason


def test_earliest_trial_start_is_the_free_trial_start() -> None:
    builder = SnapshotBuilder()
    builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    builder.add_subscription("sub_old", [("si_old", "price_pro_m", 1)], trial=(JAN + 2 * DAY, JAN + 16 * DAY))
    builder.add_subscription("sub_new", [("si_new", "price_pro_m", 1)], trial=(MAR, MAR + 14 * DAY))

    customer = map_snapshot(builder.snapshot()).customer

    assert customer.free_trial_started_at == moment(JAN + 2 * DAY)


@pytest.mark.parametrize(
    ("interval", "count", "unit", "chartmogul_count", "label"),
    [
        ("month", 1, IntervalUnit.MONTH, 1, "monthly"),
        ("month", 3, IntervalUnit.MONTH, 3, "quarterly"),
        ("month", 6, IntervalUnit.MONTH, 6, "every 6 months"),
        ("year", 1, IntervalUnit.YEAR, 1, "yearly"),
        # ChartMogul has no week: day × 7 (docs/sources.md#stripe-mrr-rules)
        ("week", 1, IntervalUnit.DAY, 7, "weekly"),
        ("week", 2, IntervalUnit.DAY, 14, "every 2 weeks"),
        ("day", 10, IntervalUnit.DAY, 10, "every 10 days"),
    ],
)
def test_one_plan_per_recurring_price_with_its_interval(
    interval: str, count: int, unit: IntervalUnit, chartmogul_count: int, label: str
) -> None:
    builder = SnapshotBuilder()
    builder.add_price("price_x", "prod_pro", "Pro", 10_000, interval=interval, interval_count=count)
    one_subscription(builder, "price_x")

    [plan] = map_snapshot(builder.snapshot()).plans

    assert (plan.external_id, plan.interval_unit, plan.interval_count) == ("price_x", unit, chartmogul_count)
    assert plan.name == f"Pro ({label})"


def test_plan_name_template_rename_and_merge_of_prices() -> None:
    builder = SnapshotBuilder()
    builder.add_price("price_legacy", "prod_pro", "Pro", 9_000, nickname="2023 list price")
    builder.add_price("price_current", "prod_pro", "Pro", 10_000, nickname="2025 list price")
    builder.add_price("price_team", "prod_team", "Team", 30_000, currency="usd")
    builder.add_subscription("sub_1", [("si_1", "price_current", 1), ("si_2", "price_team", 1)], period=(FEB, MAR))
    builder.add_invoice(
        "in_0001",
        [Line("il_a", 9_000, JAN, FEB, price_id="price_legacy", subscription_item="si_1", subscription="sub_1")],
        subscription="sub_1",
    )
    builder.add_invoice(
        "in_0002",
        [
            Line("il_b", 10_000, FEB, MAR, price_id="price_current", subscription_item="si_1", subscription="sub_1"),
            Line("il_c", 30_000, FEB, MAR, price_id="price_team", subscription_item="si_2", subscription="sub_1"),
        ],
        subscription="sub_1",
    )
    mapping = config(
        plans={
            "name_template": "{product} · {nickname} ({currency})",
            "overrides": {
                "price_legacy": {"external_id": "pro-monthly", "name": "Pro monthly"},
                "price_current": {"external_id": "pro-monthly"},
            },
        }
    )

    bundle = map_snapshot(builder.snapshot(), mapping)

    assert [(p.external_id, p.name) for p in bundle.plans] == [
        ("price_team", "Team · (USD)"),
        ("pro-monthly", "Pro monthly"),
    ]
    plans_by_line = {line.external_id: line.plan_external_id for i in bundle.invoices for line in i.line_items}
    assert plans_by_line == {"il_a": "pro-monthly", "il_b": "pro-monthly", "il_c": "price_team"}


def test_merging_prices_of_different_intervals_is_refused_naming_the_override() -> None:
    builder = SnapshotBuilder()
    builder.add_price("price_m", "prod_pro", "Pro", 10_000)
    builder.add_price("price_y", "prod_pro", "Pro", 100_000, interval="year")
    builder.add_subscription("sub_1", [("si_1", "price_y", 1)])
    builder.add_invoice(
        "in_0001",
        [Line("il_a", 10_000, JAN, FEB, price_id="price_m", subscription_item="si_1", subscription="sub_1")],
    )
    builder.add_invoice(
        "in_0002",
        [
            Line(
                "il_b",
                100_000,
                FEB,
                FEB + 365 * DAY,
                price_id="price_y",
                subscription_item="si_1",
                subscription="sub_1",
            )
        ],
    )
    mapping = config(plans={"overrides": {"price_m": {"external_id": "pro"}, "price_y": {"external_id": "pro"}}})

    with pytest.raises(MappingError) as raised:
        map_snapshot(builder.snapshot(), mapping)

    assert raised.value.object_id == "price_y"
    assert raised.value.field == "plans.overrides.price_y.external_id"


def test_excluded_products_and_prices_leave_their_lines_out_with_a_reason() -> None:
    builder = SnapshotBuilder()
    builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    builder.add_price("price_internal", "prod_internal", "Internal", 500)
    builder.add_price("price_addon", "prod_addon", "Add-on", 2_000)
    builder.add_subscription(
        "sub_1", [("si_1", "price_pro_m", 1), ("si_2", "price_internal", 1), ("si_3", "price_addon", 1)]
    )
    builder.add_invoice(
        "in_0001",
        [
            Line("il_1", 10_000, JAN, FEB, price_id="price_pro_m", subscription_item="si_1", subscription="sub_1"),
            Line("il_2", 500, JAN, FEB, price_id="price_internal", subscription_item="si_2", subscription="sub_1"),
            Line("il_3", 2_000, JAN, FEB, price_id="price_addon", subscription_item="si_3", subscription="sub_1"),
        ],
        subscription="sub_1",
    )
    builder.add_invoice(
        "in_0002",
        [Line("il_4", 500, FEB, MAR, price_id="price_internal", subscription_item="si_2", subscription="sub_1")],
    )

    bundle = map_snapshot(
        builder.snapshot(), config(exclude={"products": ["prod_internal"], "prices": ["price_addon"]})
    )

    assert [line.external_id for i in bundle.invoices for line in i.line_items] == ["il_1"]
    assert [p.external_id for p in bundle.plans] == ["price_pro_m"]
    assert {(s.source_object_id, s.reason) for s in bundle.skipped} == {
        ("il_2", "product prod_internal excluded by the mapping config (exclude.products)"),
        ("il_3", "price price_addon excluded by the mapping config (exclude.prices)"),
        ("il_4", "product prod_internal excluded by the mapping config (exclude.products)"),
        ("in_0002", "no line of the invoice is left to import (each line says why)"),
    }


def test_an_excluded_customer_is_not_mapped_at_all() -> None:
    builder = SnapshotBuilder(customer_id="cus_internal")

    with pytest.raises(CustomerExcluded) as raised:
        map_snapshot(builder.snapshot(), config(exclude={"customers": ["cus_internal"]}))

    assert "exclude.customers" in raised.value.reason


def deleted_customer_with_active_subscription() -> SnapshotBuilder:
    builder = SnapshotBuilder(deleted=True, deleted_at=FEB + 10 * DAY)
    builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1)], period=(FEB, MAR))
    builder.add_invoice(
        "in_0001",
        [Line("il_1", 10_000, FEB, MAR, price_id="price_pro_m", subscription_item="si_1", subscription="sub_1")],
        subscription="sub_1",
        pay_with="pi_1",
    )
    return builder


def test_deleted_customer_is_kept_tagged_and_its_subscriptions_end_at_the_deletion() -> None:
    bundle = map_snapshot(deleted_customer_with_active_subscription().snapshot())

    assert bundle.deleted_in_source is False  # kept: the uploader must not delete it
    assert bundle.customer.attributes.tags == ["deleted-in-stripe"]
    assert [i.external_id for i in bundle.invoices] == ["in_0001"]
    assert [(c.subscription_external_id, c.cancellation_dates) for c in bundle.cancellations] == [
        ("si_1", [moment(FEB + 10 * DAY)])
    ]


def test_a_deleted_customers_personal_data_is_scrubbed_unless_configured_to_keep() -> None:
    # Deletion in Stripe is often a GDPR erasure; ChartMogul's own "include deleted customers" removes personal data.
    # A recent deletion: the exporter's stub carries the `customer.deleted` event's object, details included.
    builder = deleted_customer_with_active_subscription()
    builder.deleted = False
    raw = builder.raw()
    raw["customer"] = {**raw["customer"], "deleted": True, "deleted_at": FEB + 10 * DAY, "metadata": {"plan": "x"}}
    raw["deleted"] = True
    snapshot = CustomerSnapshot.model_validate(raw)
    scrubbed = map_snapshot(snapshot)
    customer = scrubbed.customer
    assert (customer.name, customer.email, customer.company, customer.country, customer.city) == (
        "",
        "",
        "",
        None,
        None,
    )
    assert customer.attributes.custom == [] and customer.attributes.tags == ["deleted-in-stripe"]
    assert customer.lead_created_at is not None and scrubbed.mapping_version == "1.1.0"
    kept = map_snapshot(snapshot, config(customers={"deleted_personal_data": "keep"})).customer
    assert (kept.name, kept.email) == ("Ada Lovelace", "ada@example.com")
    assert [a.key for a in kept.attributes.custom] == ["plan"]


def test_deleted_customer_with_delete_config_leaves_chartmogul() -> None:
    bundle = map_snapshot(deleted_customer_with_active_subscription().snapshot(), config(deleted_customers="delete"))

    assert bundle.deleted_in_source is True
    assert bundle.invoices == [] and bundle.plans == [] and bundle.cancellations == []
    assert [(s.source_object_id, s.reason) for s in bundle.skipped] == [
        ("in_0001", "customer deleted in Stripe and deleted_customers is 'delete'")
    ]


def test_a_customer_head_maps_to_the_customer_alone_as_its_whole_snapshot_maps_it() -> None:
    """A backfill's customer head (docs/architecture.md "Customer heads"): the customer object without its history.
    It maps to the customer its whole snapshot maps to, less the trial start only subscriptions tell."""
    builder = SnapshotBuilder(metadata={"crm-id": "4711"})
    builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    builder.add_subscription("sub_1", [("si_1", "price_pro_m", 1)], trial=(JAN, JAN + 14 * DAY))
    whole = builder.snapshot()
    head = CustomerSnapshot(api_version=whole.api_version, customer=whole.customer, customer_only=True)

    bundle = map_snapshot(head, snapshot_time=moment(MAR))

    assert bundle.customer_only and bundle.snapshot_time == moment(MAR)
    assert not (bundle.invoices or bundle.plans or bundle.cancellations or bundle.subscription_events)
    from_whole = map_snapshot(whole).customer
    assert from_whole.free_trial_started_at == moment(JAN) and bundle.customer.free_trial_started_at is None
    assert bundle.customer == from_whole.model_copy(update={"free_trial_started_at": None})


def test_a_customer_head_carries_nothing_but_the_customer() -> None:
    builder = SnapshotBuilder()
    builder.add_price("price_pro_m", "prod_pro", "Pro", 10_000)
    one_subscription(builder)
    whole = builder.snapshot()
    with pytest.raises(ValueError, match="customer object alone, not subscriptions, invoices"):
        CustomerSnapshot.model_validate({**whole.model_dump(), "customer_only": True})
