"""Stripe's parameter encoding and list pagination as pure functions (no HTTP)."""

from __future__ import annotations

import pytest

from localdev.stripe_emulator import records as r
from localdev.stripe_emulator.errors import StripeApiError
from localdev.stripe_emulator.listing import CreatedRange, Page, paginate, parse_params
from localdev.stripe_emulator.store import StripeStore


def test_bracket_parameters_decode_like_stripe() -> None:
    params = parse_params(
        [
            ("created[gte]", "10"),
            ("created[lt]", "20"),
            ("expand[0]", "data.customer"),
            ("expand[1]", "data.payments"),
            ("types[]", "invoice.paid"),
            ("types[]", "customer.deleted"),
            ("payment[payment_intent]", "pi_1"),
            ("limit", "3"),
        ]
    )
    assert params == {
        "created": {"gte": "10", "lt": "20"},
        "expand": ["data.customer", "data.payments"],
        "types": ["invoice.paid", "customer.deleted"],
        "payment": {"payment_intent": "pi_1"},
        "limit": "3",
    }


def test_created_bounds_normalise_to_inclusive() -> None:
    assert CreatedRange.parse({"gt": "5", "lt": "9"}) == CreatedRange(6, 8)
    assert CreatedRange.parse("7") == CreatedRange(7, 7)
    with pytest.raises(StripeApiError) as bad:
        CreatedRange.parse({"after": "1"})
    assert bad.value.status == 400
    with pytest.raises(StripeApiError):
        CreatedRange.parse({"gte": "yesterday"})


def _store(count: int) -> StripeStore:
    store = StripeStore(now=10_000)
    for n in range(count):
        store.customers.add(r.Customer(f"cus_{n:03d}", 1_000 + n // 2, "n", "e", "US", "P"))  # pairs share a second
    return store


def test_pages_are_newest_first_and_cursors_walk_both_ways() -> None:
    store = _store(9)
    view = store.customers.newest_first()
    first, more = paginate(store.customers, view, Page.parse({"limit": "4"}), lambda c: True, "customer")
    assert [c.id for c in first] == ["cus_008", "cus_007", "cus_006", "cus_005"] and more
    second, more = paginate(
        store.customers, view, Page.parse({"limit": "4", "starting_after": "cus_005"}), lambda c: True, "customer"
    )
    assert [c.id for c in second] == ["cus_004", "cus_003", "cus_002", "cus_001"] and more
    back, more = paginate(
        store.customers, view, Page.parse({"limit": "2", "ending_before": "cus_004"}), lambda c: True, "customer"
    )
    assert [c.id for c in back] == ["cus_006", "cus_005"] and more
    ranged, more = paginate(
        store.customers, view, Page.parse({"created": {"gte": "1001", "lte": "1002"}}), lambda c: True, "customer"
    )
    assert [c.id for c in ranged] == ["cus_005", "cus_004", "cus_003", "cus_002"] and not more


def test_limits_and_unknown_cursors_are_refused() -> None:
    store = _store(3)
    for limit in ("0", "101", "ten"):
        with pytest.raises(StripeApiError):
            Page.parse({"limit": limit})
    with pytest.raises(StripeApiError) as missing:
        paginate(
            store.customers,
            store.customers.newest_first(),
            Page.parse({"starting_after": "cus_zzz"}),
            lambda c: True,
            "customer",
        )
    assert missing.value.status == 404 and missing.value.param == "starting_after"
