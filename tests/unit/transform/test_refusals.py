"""What the transform refuses instead of mapping silently wrong (docs/mapping-decisions.md, "What is refused").

Each refusal names the object and the field: the bad-records queue shows them to the user. Property tests
(hypothesis) generate such input across every field of its kind.
"""

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from chartmogul_sync.config import STRIPE_API_VERSION
from chartmogul_sync.models import CustomerSnapshot, RawMessage, UploadMessage
from chartmogul_sync.models.common import MAX_UNIX_SECONDS
from chartmogul_sync.transform import MappingError, map_snapshot
from chartmogul_sync.transform.config import MappingConfigError, describe_validation_error, parse_mapping_config
from tests.fixtures.stripe_objects import DAY, Line, SnapshotBuilder, at
from tests.unit.upload.bundles import customer_bundle

JAN, FEB = at(2025, 1, 1), at(2025, 2, 1)


def paid_customer(customer_id: str = "cus_R1") -> SnapshotBuilder:
    builder = SnapshotBuilder(customer_id=customer_id)
    builder.add_price("price_m", "prod_pro", "Pro", 10_000)
    builder.add_subscription("sub_1", [("si_1", "price_m", 1)])
    builder.add_invoice(
        "in_1",
        [Line("il_1", 10_000, JAN, FEB, price_id="price_m", subscription_item="si_1", subscription="sub_1")],
        subscription="sub_1",
        pay_with="pi_1",
    )
    return builder


def refusal(raw: dict[str, Any]) -> MappingError:
    with pytest.raises(MappingError) as refused:
        map_snapshot(CustomerSnapshot.model_validate(raw))
    return refused.value


def test_the_base_snapshot_maps() -> None:
    assert [invoice.external_id for invoice in map_snapshot(paid_customer().snapshot()).invoices] == ["in_1"]


# ---------------------------------------------------------------- API version


def test_a_snapshot_in_another_stripe_api_version_is_refused_naming_the_field() -> None:
    raw = paid_customer().raw() | {"api_version": "2025-03-31.basil"}

    with pytest.raises(ValidationError) as refused:
        CustomerSnapshot.model_validate(raw)

    [problem] = describe_validation_error(refused.value)
    assert problem.startswith("api_version: ")
    assert "'2025-03-31.basil'" in problem and STRIPE_API_VERSION in problem


# ---------------------------------------------------------------- times and amounts

TIME_FIELDS = [
    ("in_1", lambda raw: raw["invoices"][0], "created"),
    ("in_1", lambda raw: raw["invoices"][0]["status_transitions"], "status_transitions.paid_at"),
    ("in_1", lambda raw: raw["invoices"][0]["lines"]["data"][0]["period"], "lines.data.0.period.start"),
    ("sub_1", lambda raw: raw["subscriptions"][0], "created"),
    ("cus_R1", lambda raw: raw["customer"], "created"),
]


@settings(max_examples=60, deadline=None)
@given(
    where=st.sampled_from(TIME_FIELDS),
    value=st.one_of(st.integers(min_value=MAX_UNIX_SECONDS, max_value=2**62), st.integers(max_value=-1)),
)
def test_an_implausible_unix_time_is_refused_naming_the_object_and_field(where: Any, value: int) -> None:
    object_id, container, field = where
    raw = paid_customer().raw()
    container(raw)[field.rsplit(".", 1)[-1]] = value

    error = refusal(raw)

    assert (error.object_id, error.field) == (object_id, field)
    if value >= MAX_UNIX_SECONDS:
        assert "not a plausible Unix time in seconds" in error.reason


def test_a_time_in_milliseconds_is_refused_with_the_hint() -> None:
    raw = paid_customer().raw()
    raw["invoices"][0]["created"] = JAN * 1000

    error = refusal(raw)

    assert (error.object_id, error.field) == ("in_1", "created")
    assert error.reason == f"{JAN * 1000} is not a plausible Unix time in seconds (after 2100: milliseconds?)"


AMOUNT_FIELDS = [
    ("in_1", lambda raw: raw["invoices"][0], "total"),
    ("in_1", lambda raw: raw["invoices"][0]["lines"]["data"][0], "lines.data.0.amount"),
    ("in_1", lambda raw: raw["invoices"][0]["lines"]["data"][0], "lines.data.0.quantity"),
    ("in_1", lambda raw: raw["invoices"][0], "amount_paid"),
]


@settings(max_examples=60, deadline=None)
@given(
    where=st.sampled_from(AMOUNT_FIELDS),
    value=st.one_of(st.booleans(), st.floats(allow_nan=False), st.text(max_size=5), st.just("10000")),
)
def test_an_amount_or_count_that_is_not_a_json_integer_is_refused(where: Any, value: Any) -> None:
    object_id, container, field = where
    raw = paid_customer().raw()
    container(raw)[field.rsplit(".", 1)[-1]] = value

    error = refusal(raw)

    assert (error.object_id, error.field) == (object_id, field)
    assert "is not an integer" in error.reason


# ---------------------------------------------------------------- consistency across objects


@settings(max_examples=30, deadline=None)
@given(
    which=st.sampled_from(["invoices", "subscriptions", "charges"]),
    other=st.from_regex(r"cus_[A-Za-z0-9]{1,12}", fullmatch=True).filter(lambda c: c != "cus_R1"),
)
def test_an_object_of_another_customer_is_refused(which: str, other: str) -> None:
    raw = paid_customer().raw()
    target = raw[which][0]
    target["customer"] = other if target["id"] != "ch_1" else {"id": other, "object": "customer"}

    error = refusal(raw)

    assert (error.object_id, error.field) == (target["id"], "customer")
    assert error.reason == f"belongs to customer {other}, not to the snapshot's cus_R1"


def test_refunds_beyond_what_was_paid_are_refused_naming_the_refund() -> None:
    builder = paid_customer()
    builder.add_refund("re_1", "ch_1", "pi_1", 6_000, FEB)
    builder.add_refund("re_2", "ch_1", "pi_1", 5_000, FEB + DAY)  # together 11,000 of the 10,000 paid

    error = refusal(builder.raw())

    assert (error.object_id, error.field) == ("re_2", "amount")
    assert error.reason == "refunds of invoice in_1 reach 11000 with this one, more than the 10000 paid on it"


def test_a_refund_within_the_payment_maps() -> None:
    builder = paid_customer()
    builder.add_refund("re_1", "ch_1", "pi_1", 10_000, FEB)
    [invoice] = map_snapshot(builder.snapshot()).invoices
    assert [(t.external_id, t.amount_in_cents) for t in invoice.transactions] == [("inpay_1", 10_000), ("re_1", 10_000)]


@settings(max_examples=30, deadline=None)
@given(delta=st.integers(min_value=-100_000, max_value=100_000).filter(lambda d: d != 0))
def test_an_invoice_whose_lines_do_not_add_up_to_its_total_is_refused(delta: int) -> None:
    raw = paid_customer().raw()
    raw["invoices"][0]["total"] += delta

    error = refusal(raw)

    assert (error.object_id, error.field) == ("in_1", "total")
    assert "add up to 10000" in error.reason and f"its total is {10_000 + delta}" in error.reason


# ---------------------------------------------------------------- envelopes


def raw_message(**changes: Any) -> dict[str, Any]:
    message = {
        "schema_version": 1,
        "kind": "customer_snapshot",
        "customer_external_id": "cus_R1",
        "snapshot_time": "2025-02-02T00:00:00Z",
        "correlation_id": "run-1",
        "payload": paid_customer().raw(),
    }
    return message | changes


def problems(model: Any, body: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as refused:
        model.model_validate_json(json.dumps(body))
    return describe_validation_error(refused.value)


@pytest.mark.parametrize("version", [1.0, True, 2, "1", 0])
def test_a_schema_version_other_than_exactly_1_is_refused(version: Any) -> None:
    [problem] = problems(RawMessage, raw_message(schema_version=version))
    assert problem.startswith("schema_version: ")


def test_an_envelope_whose_customer_differs_from_its_snapshots_is_refused() -> None:
    [problem] = problems(RawMessage, raw_message(customer_external_id="cus_R2"))
    assert problem == (
        "payload: Value error, customer_external_id 'cus_R2' differs from the payload's customer.id 'cus_R1'"
    )


def test_an_upload_envelope_whose_customer_differs_from_its_bundles_is_refused() -> None:
    bundle = json.loads(customer_bundle("cus_alice").model_dump_json())
    body = {
        "kind": "customer_bundle",
        "customer_external_id": "cus_bob",
        "snapshot_time": "2026-01-10T12:00:00Z",
        "correlation_id": "run-1",
        "payload": bundle,
    }
    [problem] = problems(UploadMessage, body)
    assert "customer_external_id 'cus_bob' differs from the payload's customer.external_id 'cus_alice'" in problem


def test_a_deeply_nested_body_is_refused_as_invalid_json_not_a_recursion_error() -> None:
    body = '{"a":' * 100_000 + "1" + "}" * 100_000
    with pytest.raises(ValidationError) as refused:
        RawMessage.model_validate_json(body)
    assert "recursion limit exceeded" in describe_validation_error(refused.value)[0]


# ---------------------------------------------------------------- the mapping config


def test_a_duplicate_key_in_the_mapping_config_is_an_error_with_its_line() -> None:
    text = "invoices:\n  void: include\n  uncollectible: exclude\n  void: exclude\n"

    with pytest.raises(MappingConfigError) as refused:
        parse_mapping_config(text, "mapping.yaml")

    assert refused.value.problems == ["line 4, column 3: not valid YAML (duplicate key 'void' (first given on line 2))"]
