"""The mapping on a generated Stripe account, end to end on the Stripe side: the scenario generator's account
served by the Stripe emulator on loopback, each customer's snapshot fetched by the exporter through the official
`stripe` client, mapped, and compared with the generator's ground truth — the ChartMogul objects a correct
import yields and the MRR per month (computed from the bundle by the ChartMogul emulator's MRR engine).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from chartmogul_sync.config import Settings
from chartmogul_sync.models import CustomerBundle
from chartmogul_sync.sources.stripe.client import RetryPolicy, StripeApi, TimeBudget, make_stripe_client
from chartmogul_sync.sources.stripe.snapshots import Catalog, fetch_customer_snapshot
from chartmogul_sync.transform import map_snapshot
from localdev.chartmogul_emulator.metrics import subscription_mrr
from localdev.scenarios import generate_account, profiles
from localdev.scenarios.calendar import DAY, months_between
from localdev.stripe_emulator import start
from tests.fixtures.bundle_mrr import histories

KEY = "sk_test_transform_generated_account"


@pytest.fixture(scope="module")
def mapped() -> Iterator[tuple[dict[str, Any], dict[str, CustomerBundle], list[tuple[str, int]]]]:
    # Every profile once (the generator gives the first customers one profile each), a year of history.
    account = generate_account(customers=len(profiles.PROFILES) + 4, months=12, seed=11)
    truth = account.ground_truth()
    with start(account, rate_limit=None) as emulator:
        api = StripeApi(
            make_stripe_client(Settings(stripe_api_base=emulator.base_url), KEY),
            TimeBudget.of_seconds(300),
            RetryPolicy(max_attempts=3, base_wait_s=0.01, max_wait_s=0.05, reserve_s=0.0),
        )
        catalog = Catalog(api)
        bundles = {
            customer_id: map_snapshot(fetch_customer_snapshot(api, catalog, customer_id))
            for customer_id in sorted(truth["customers"])
        }
    now = account.store.now
    # As the truth: each month is evaluated at its end, the month holding the clock at the end of its day.
    end_of_today = (now // DAY + 1) * DAY
    yield (
        truth,
        bundles,
        [(label, min(end, end_of_today)) for label, end in months_between(account.spec.window_start, now)],
    )


def _comparable(mine: dict[str, Any], expected: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both invoices, minus a subscription line's `description` (Stripe's text, e.g. "Remaining time on Pro
    after …"): the truth states descriptions of one-off lines only. Every other field must match, the discount
    code included (the exporter expands invoice discounts).
    """
    expected_lines = {line["external_id"]: line for line in expected["line_items"]}
    lines = []
    for line in mine["line_items"]:
        wanted = expected_lines.get(line["external_id"], {})
        line = {k: v for k, v in line.items() if k != "description" or k in wanted}
        lines.append(line)
    return {**mine, "line_items": lines}, expected


def test_every_customer_maps_to_the_truths_invoices_lines_and_transactions(mapped: Any) -> None:
    truth, bundles, _ = mapped
    compared = 0
    for customer_id, expected in truth["customers"].items():
        mine = {i.external_id: i.model_dump(mode="json", exclude_none=True) for i in bundles[customer_id].invoices}
        assert sorted(mine) == sorted(i["external_id"] for i in expected["invoices"]), customer_id
        for invoice in expected["invoices"]:
            got, want = _comparable(mine[invoice["external_id"]], invoice)
            assert got == want, (customer_id, expected["scenarios"])
            compared += 1
    assert compared > 100  # the account is not trivially empty


def test_customers_plans_and_cancellations_match_the_truth(mapped: Any) -> None:
    truth, bundles, _ = mapped
    truth_plans = {plan["external_id"]: plan for plan in truth["plans"]}
    for customer_id, expected in truth["customers"].items():
        bundle = bundles[customer_id]
        customer = bundle.customer.model_dump(mode="json", exclude_none=True)
        fields = ("external_id", "name", "email", "country", "lead_created_at", "free_trial_started_at")
        if "deleted_customer" in "".join(expected["scenarios"]):
            fields = ("external_id", "name", "email", "country", "free_trial_started_at")  # personal data scrubbed
            assert customer["attributes"].get("custom", []) == []
        assert {k: customer.get(k) for k in fields} == {k: expected["customer"].get(k) for k in fields}
        assert customer["attributes"]["tags"] == expected["customer"]["attributes"]["tags"]
        for plan in bundle.plans:
            assert plan.model_dump(mode="json") == truth_plans[plan.external_id]
        invoiced = bundle.subscription_external_ids()
        want = [c for c in expected["cancellations"] if c["subscription_external_id"] in invoiced]
        got = [c.model_dump(mode="json") for c in bundle.cancellations]
        assert sorted(got, key=str) == sorted(want, key=str), (customer_id, expected["scenarios"])


def test_mrr_per_month_equals_the_truth(mapped: Any) -> None:
    truth, bundles, months = mapped
    for customer_id, expected in truth["customers"].items():
        subscriptions = histories(bundles[customer_id]).values()
        for label, instant_seconds in months:
            instant = datetime.fromtimestamp(instant_seconds, UTC)
            mrr = sum(subscription_mrr(history, instant) for history in subscriptions)
            # docs/mapping-decisions.md: at most 1 cent per subscription (rounding of prorations).
            assert abs(round(mrr) - expected["mrr"][label]) <= max(1, len(subscriptions)), (
                customer_id,
                expected["scenarios"],
                label,
            )


def test_an_item_level_coupon_keeps_its_discount_code(mapped: Any) -> None:
    """The coupon of one subscription item is on its lines' own `discounts`, not the invoice's: the exporter
    expands those too (`data.lines.data.discounts`), so ChartMogul gets the code (issue: item-level discounts)."""
    truth, bundles, _ = mapped
    customer_id = next(c for c, expected in truth["customers"].items() if "coupon_item_level" in expected["scenarios"])
    discounted = [
        line
        for invoice in bundles[customer_id].invoices
        for line in invoice.line_items
        if line.discount_amount_in_cents
    ]
    assert discounted and {line.discount_code for line in discounted} == {"FOREVER10"}
